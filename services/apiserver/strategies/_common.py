"""Small helpers the per-kind strategies share (not part of any kind's contract)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from google.protobuf.message import Message

from pilothouse.api.codec import message_to_dict
from pilothouse.gen.k8s.meta.v1 import meta_pb2
from pilothouse.services.apiserver.strategy import Strategy, StrategyContext
from pilothouse.services.apiserver.validation import (
    NameValidator,
    name_is_dns_subdomain,
)


class KindStrategy(Strategy):
    """Base of the strategies in this package.

    ``name_validator`` is the kind's name rule for ``validate_object_meta`` (most
    kinds: a DNS-1123 subdomain; Services a DNS-1035 label; Namespaces a DNS-1123
    label; RBAC objects a path segment). ``clears_status_on_create``: workloads
    start with an empty status, whatever the client sent.

    The prepare hooks apply the defaults first (defaulting is idempotent): in
    Kubernetes the object is defaulted when decoded, before PrepareForCreate, and
    the hooks here (QoS class, allocation) rely on defaulted fields whatever order
    the registry calls them in.
    """

    name_validator: NameValidator = staticmethod(name_is_dns_subdomain)
    clears_status_on_create = False

    def prepare_for_create(self, obj: Message, ctx: StrategyContext) -> None:
        self.default(obj, ctx)
        if self.clears_status_on_create and "status" in obj.DESCRIPTOR.fields_by_name:
            obj.ClearField("status")

    def prepare_for_update(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        self.default(new, ctx)
        super().prepare_for_update(new, old, ctx)

    def abort_create(self, obj: Message, ctx: StrategyContext) -> None:
        """The create prepared for ``obj`` was not stored (invalid, exists, dry run):
        give back what ``prepare_for_create`` took. Idempotent."""

    def abort_update(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        """The update prepared for ``new`` was not stored (invalid, conflict retry, dry
        run): give back what ``prepare_for_update`` took beyond ``old``. Idempotent."""

    def after_update(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        """The update is stored: free what ``old`` held and ``new`` no longer does."""


def set_default(msg: Any, name: str, value: Any) -> None:
    """Set a scalar field when the client left it unset (proto2 presence)."""
    if not msg.HasField(name):
        setattr(msg, name, value)


def to_time(when: datetime) -> meta_pb2.Time:
    return meta_pb2.Time(seconds=int(when.timestamp()))


def set_bool_str(value: bool) -> str:
    return "true" if value else "false"


def diff_paths(new: Message, old: Message, path: str) -> list[str]:
    """Readable differences between two messages, one line per changed leaf."""
    out: list[str] = []
    _diff(message_to_dict(new), message_to_dict(old), path, out)
    return out


def _diff(new: Any, old: Any, path: str, out: list[str]) -> None:
    if isinstance(new, dict) and isinstance(old, dict):
        for key in sorted(set(new) | set(old)):
            _diff(new.get(key), old.get(key), f"{path}.{key}", out)
        return
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            _diff(a, b, f"{path}[{i}]", out)
        return
    if new != old:
        out.append(f"{path}: {_short(old)} -> {_short(new)}")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if value is not None else "<unset>"
    return text if len(text) <= 120 else text[:117] + "..."
