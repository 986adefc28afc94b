"""Per-kind behaviour of the registry: defaulting, validation, status split.

The registry (``registry.py``) is generic: it stores, versions and watches any
kind. What differs between kinds lives in a ``Strategy``, as in Kubernetes'
``pkg/registry/<group>/<kind>/strategy.go``:

- ``default``: fill in what Kubernetes defaults (restartPolicy, ports'
  protocol, a Deployment's strategy, ...). Runs on create and update, before
  validation, on the decoded object.
- ``prepare_for_create`` / ``prepare_for_update``: reset what a client may not
  set through this endpoint (status on the main resource; spec on ``/status``).
- ``validate`` / ``validate_update``: return causes (field path + message);
  the registry turns a non-empty list into a 422 Invalid.
- ``field_set``: the field-selector fields of an object
  (``metadata.name``, ``spec.nodeName``, ...).

``Strategy`` itself is the behaviour of a kind with nothing special; kinds
register subclasses with ``register_strategy``. Hooks get a ``StrategyContext``
with the clock and allocators, so they stay testable without a server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from google.protobuf.message import Message

from pilothouse.api.kinds import Kind
from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.validation import NameValidator, name_is_dns_subdomain


class Allocator(Protocol):
    """Hands out values from a range (Service cluster IPs, node ports)."""

    def allocate(self, requested: str = "") -> str:
        """Reserve ``requested`` (or any free value when empty); ValueError when taken/full."""
        ...

    def release(self, value: str) -> None:
        """Free a value; releasing a free value is a no-op."""
        ...


@dataclass
class StrategyContext:
    """What a strategy may use besides the objects: time and allocators."""

    now: Callable[[], datetime]
    allocators: dict[str, Allocator] = field(default_factory=dict)


def meta_fields(obj: Message) -> dict[str, str]:
    meta: Any = obj.metadata  # type: ignore[attr-defined]
    return {"metadata.name": meta.name, "metadata.namespace": meta.namespace}


class Strategy:
    """The behaviour of a kind with no special rules."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.has_status = "status" in kind.subresources
        self.namespaced = kind.namespaced

    # Whether PUT of a missing object creates it (Kubernetes allows it for a few kinds).
    allow_create_on_update = False
    # The kind's rule for metadata.name (most kinds: a DNS-1123 subdomain).
    name_validator: NameValidator = staticmethod(name_is_dns_subdomain)

    def default(self, obj: Message, ctx: StrategyContext) -> None:
        """Fill in defaults in place. Must be idempotent."""

    def prepare_for_create(self, obj: Message, ctx: StrategyContext) -> None:
        """Reset what a create may not set; by default the status of status-split kinds
        is kept as sent (Kubernetes clears it for most workloads; see subclasses)."""

    def prepare_for_update(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        """A main-resource update cannot change status (kinds with a status subresource)."""
        if self.has_status and _has_field(new, "status"):
            new.status.CopyFrom(old.status)  # type: ignore[attr-defined]
            if not _present(old, "status"):
                new.ClearField("status")

    def prepare_for_status_update(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        """A /status update changes only status: everything else comes from ``old``."""
        status = None
        if _present(new, "status"):
            status = type(new.status)()  # type: ignore[attr-defined]
            status.CopyFrom(new.status)  # type: ignore[attr-defined]
        new.CopyFrom(old)
        new.ClearField("status")
        if status is not None:
            new.status.CopyFrom(status)  # type: ignore[attr-defined]

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        """Causes that make ``obj`` invalid on create (metadata is checked by the registry)."""
        return []

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        """Causes that make this update invalid (immutable fields, ...); by default the
        object must be valid as on create."""
        return self.validate(new, ctx)

    def spec_changed(self, new: Message, old: Message) -> bool:
        """Whether the update changes the desired state (bumps metadata.generation).

        Everything but metadata and status counts as spec, as for most kinds.
        """
        for fd in new.DESCRIPTOR.fields:
            if fd.name in ("metadata", "status"):
                continue
            if getattr(new, fd.name) != getattr(old, fd.name):
                return True
            if (fd.message_type is not None and not fd.is_repeated
                    and new.HasField(fd.name) != old.HasField(fd.name)):
                return True
        return False

    def field_set(self, obj: Message) -> dict[str, str]:
        """The fields a field selector can match for this kind."""
        return meta_fields(obj)

    def on_delete(self, obj: Message, ctx: StrategyContext) -> None:
        """Called after an object is removed from storage (release allocations)."""

    def abort_create(self, obj: Message, ctx: StrategyContext) -> None:
        """A prepared create was not stored (invalid, exists, dry run): undo allocations."""

    def abort_update(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        """A prepared update was not stored (invalid, conflict, dry run): undo allocations."""

    def after_update(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        """A prepared update was stored: release what ``old`` held and ``new`` does not."""

    def prepare_for_finalize(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        """The namespaces/finalize subresource: only spec.finalizers may change."""
        self.prepare_for_status_update(new, old, ctx)

    def graceful_delete_seconds(self, obj: Message, requested: int | None) -> int:
        """Grace period for a delete: 0 deletes at once (most kinds); pods wait for
        the kubelet."""
        return 0


def _has_field(msg: Message, name: str) -> bool:
    return name in msg.DESCRIPTOR.fields_by_name


def _present(msg: Message, name: str) -> bool:
    return _has_field(msg, name) and msg.HasField(name)


_STRATEGIES: dict[tuple[str, str], Callable[[Kind], Strategy]] = {}


def register_strategy(group: str, plural: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: use this strategy for ``plural`` in ``group`` (every version)."""

    def wrap(cls: type[Strategy]) -> type[Strategy]:
        _STRATEGIES[(group, plural)] = cls
        return cls

    return wrap


def strategy_for(kind: Kind) -> Strategy:
    factory = _STRATEGIES.get((kind.group, kind.plural), Strategy)
    return factory(kind)
