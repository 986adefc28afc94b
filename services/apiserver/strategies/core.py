"""core/v1 kinds with small rules: Namespaces, Nodes, ConfigMaps, Secrets,
ServiceAccounts, Events."""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Final

from google.protobuf.message import Message

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.strategies._common import KindStrategy, set_bool_str
from pilothouse.services.apiserver.strategies.pods import TAINT_EFFECTS
from pilothouse.services.apiserver.strategy import StrategyContext, register_strategy
from pilothouse.services.apiserver.validation import (
    duplicate,
    each,
    forbidden,
    immutable,
    invalid,
    is_config_map_key,
    is_label_value,
    is_qualified_name,
    name_is_dns_label,
    not_supported,
    required,
    too_long,
)

LABEL_METADATA_NAME: Final = "kubernetes.io/metadata.name"
FINALIZER_KUBERNETES: Final = "kubernetes"
STANDARD_FINALIZERS: Final = frozenset({FINALIZER_KUBERNETES, "orphan", "foregroundDeletion"})
MAX_SECRET_SIZE: Final = 1024 * 1024
IMMUTABLE_SET: Final = "field is immutable when `immutable` is set"


# -- namespaces -------------------------------------------------------------------------------

@register_strategy("", "namespaces")
class NamespaceStrategy(KindStrategy):
    """A new namespace is Active with the ``kubernetes`` finalizer; its
    ``kubernetes.io/metadata.name`` label always equals its name. ``spec.finalizers``
    change only through the ``finalize`` subresource."""

    name_validator = staticmethod(name_is_dns_label)

    def default(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, core_pb2.Namespace)
        if obj.metadata.name:
            obj.metadata.labels[LABEL_METADATA_NAME] = obj.metadata.name

    def prepare_for_create(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, core_pb2.Namespace)
        super().prepare_for_create(obj, ctx)
        obj.ClearField("status")
        obj.status.phase = "Active"
        if FINALIZER_KUBERNETES not in obj.spec.finalizers:
            obj.spec.finalizers.append(FINALIZER_KUBERNETES)

    def prepare_for_update(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        assert isinstance(new, core_pb2.Namespace) and isinstance(old, core_pb2.Namespace)
        super().prepare_for_update(new, old, ctx)
        new.spec.CopyFrom(old.spec)
        new.status.CopyFrom(old.status)

    def prepare_for_finalize(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        """The ``finalize`` subresource: only ``spec.finalizers`` comes from the request."""
        assert isinstance(new, core_pb2.Namespace) and isinstance(old, core_pb2.Namespace)
        finalizers = list(new.spec.finalizers)
        new.CopyFrom(old)
        del new.spec.finalizers[:]
        new.spec.finalizers.extend(finalizers)

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, core_pb2.Namespace)
        causes: list[Cause] = []
        for i, name in enumerate(obj.spec.finalizers):
            path = f"spec.finalizers[{i}]"
            errs = is_qualified_name(name)
            causes.extend(each(path, name, errs))
            if not errs and "/" not in name and name not in STANDARD_FINALIZERS:
                causes.append(invalid(path, name, "name is neither a standard finalizer name "
                                                  "nor is it fully qualified"))
        return causes

    def field_set(self, obj: Message) -> dict[str, str]:
        assert isinstance(obj, core_pb2.Namespace)
        return {"metadata.name": obj.metadata.name, "status.phase": obj.status.phase}


# -- nodes --------------------------------------------------------------------------------------

def validate_taints(taints: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(taints):
        tpath = f"{path}[{i}]"
        if not taint.key:
            causes.append(required(f"{tpath}.key"))
        else:
            causes.extend(each(f"{tpath}.key", taint.key, is_qualified_name(taint.key)))
        causes.extend(each(f"{tpath}.value", taint.value, is_label_value(taint.value)))
        if not taint.effect:
            causes.append(required(f"{tpath}.effect"))
        elif taint.effect not in TAINT_EFFECTS:
            causes.append(not_supported(f"{tpath}.effect", taint.effect, TAINT_EFFECTS))
        key = (taint.key, taint.effect)
        if key in seen:
            causes.append(Cause("FieldValueDuplicate",
                                duplicate(tpath, f"{taint.key}:{taint.effect}").message
                                + ": taints must be unique by key and effect pair", tpath))
        seen.add(key)
    return causes


@register_strategy("", "nodes")
class NodeStrategy(KindStrategy):
    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, core_pb2.Node)
        causes = validate_taints(obj.spec.taints, "spec.taints")
        cidrs = list(obj.spec.podCIDRs) or ([obj.spec.podCIDR] if obj.spec.podCIDR else [])
        for i, cidr in enumerate(cidrs):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                causes.append(invalid(f"spec.podCIDRs[{i}]", cidr,
                                      "must be a valid CIDR value, (e.g. 10.9.8.0/24 or "
                                      "2001:db8::/64)"))
        return causes

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(new, core_pb2.Node) and isinstance(old, core_pb2.Node)
        causes = self.validate(new, ctx)
        if old.spec.podCIDRs and list(new.spec.podCIDRs) != list(old.spec.podCIDRs):
            causes.append(forbidden("spec.podCIDRs",
                                    'node updates may not change podCIDR except from "" to '
                                    "valid"))
        if old.spec.providerID and new.spec.providerID != old.spec.providerID:
            causes.append(forbidden("spec.providerID",
                                    'node updates may not change providerID except from "" to '
                                    "valid"))
        return causes

    def field_set(self, obj: Message) -> dict[str, str]:
        assert isinstance(obj, core_pb2.Node)
        return {"metadata.name": obj.metadata.name,
                "spec.unschedulable": set_bool_str(obj.spec.unschedulable)}


# -- configmaps and secrets ---------------------------------------------------------------------

def _validate_keys(keys: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for key in sorted(keys):
        causes.extend(each(f"{path}[{key}]", key, is_config_map_key(key)))
    return causes


def _immutable_update(new: Any, old: Any, data_fields: tuple[str, ...]) -> list[Cause]:
    if not (old.HasField("immutable") and old.immutable):
        return []
    causes: list[Cause] = []
    if not new.immutable:
        causes.append(forbidden("immutable", IMMUTABLE_SET))
    for name in data_fields:
        if dict(getattr(new, name)) != dict(getattr(old, name)):
            causes.append(forbidden(name, IMMUTABLE_SET))
    return causes


@register_strategy("", "configmaps")
class ConfigMapStrategy(KindStrategy):
    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, core_pb2.ConfigMap)
        causes = _validate_keys(obj.data, "data")
        causes.extend(_validate_keys(obj.binaryData, "binaryData"))
        for key in sorted(obj.binaryData):
            if key in obj.data:
                causes.append(invalid(f"binaryData[{key}]", key,
                                      "duplicate of key present in data"))
        size = sum(len(k) + len(v.encode()) for k, v in obj.data.items())
        size += sum(len(k) + len(v) for k, v in obj.binaryData.items())
        if size > MAX_SECRET_SIZE:
            causes.append(too_long("", MAX_SECRET_SIZE))
        return causes

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        return self.validate(new, ctx) + _immutable_update(new, old, ("data", "binaryData"))


SECRET_TYPE_SA_TOKEN: Final = "kubernetes.io/service-account-token"


def _required_keys(secret: core_pb2.Secret, *keys: str) -> list[Cause]:
    return [required(f"data[{k}]") for k in keys if k not in secret.data]


def _validate_secret_type(secret: core_pb2.Secret) -> list[Cause]:
    kind = secret.type
    if kind == SECRET_TYPE_SA_TOKEN:
        key = "kubernetes.io/service-account.name"
        if not secret.metadata.annotations.get(key):
            return [required(f"metadata.annotations[{key}]")]
    elif kind == "kubernetes.io/dockercfg":
        return _required_keys(secret, ".dockercfg") or _json_key(secret, ".dockercfg")
    elif kind == "kubernetes.io/dockerconfigjson":
        return _required_keys(secret, ".dockerconfigjson") or \
            _json_key(secret, ".dockerconfigjson")
    elif kind == "kubernetes.io/basic-auth":
        if "username" not in secret.data and "password" not in secret.data:
            return [required("data[username]"), required("data[password]")]
    elif kind == "kubernetes.io/ssh-auth":
        return _required_keys(secret, "ssh-privatekey")
    elif kind == "kubernetes.io/tls":
        return _required_keys(secret, "tls.crt", "tls.key")
    return []


def _json_key(secret: core_pb2.Secret, key: str) -> list[Cause]:
    try:
        json.loads(secret.data[key])
    except ValueError as exc:
        return [invalid(f"data[{key}]", "<secret contents redacted>", str(exc))]
    return []


@register_strategy("", "secrets")
class SecretStrategy(KindStrategy):
    """``stringData`` is write-only: merged into ``data`` (winning over it) on every write."""

    def default(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, core_pb2.Secret)
        if not obj.type:
            obj.type = "Opaque"
        for key, value in obj.stringData.items():
            obj.data[key] = value.encode()
        obj.ClearField("stringData")

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, core_pb2.Secret)
        causes = _validate_keys(obj.data, "data")
        size = sum(len(v) for v in obj.data.values())
        if size > MAX_SECRET_SIZE:
            causes.append(too_long("data", MAX_SECRET_SIZE))
        causes.extend(_validate_secret_type(obj))
        return causes

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(new, core_pb2.Secret) and isinstance(old, core_pb2.Secret)
        causes = self.validate(new, ctx)
        if new.type != old.type:
            causes.append(immutable("type", new.type))
        return causes + _immutable_update(new, old, ("data",))

    def field_set(self, obj: Message) -> dict[str, str]:
        assert isinstance(obj, core_pb2.Secret)
        return {"metadata.name": obj.metadata.name,
                "metadata.namespace": obj.metadata.namespace, "type": obj.type}


@register_strategy("", "serviceaccounts")
class ServiceAccountStrategy(KindStrategy):
    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, core_pb2.ServiceAccount)
        causes: list[Cause] = []
        for i, ref in enumerate(obj.imagePullSecrets):
            if not ref.name:
                causes.append(required(f"imagePullSecrets[{i}].name"))
        return causes


# -- events -------------------------------------------------------------------------------------

EVENT_FIELDS: Final = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion",
                       "fieldPath")


@register_strategy("", "events")
class EventStrategy(KindStrategy):
    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, core_pb2.Event)
        involved = obj.involvedObject.namespace
        namespace = obj.metadata.namespace
        if (involved and involved != namespace) or \
                (not involved and namespace not in ("", "default")):
            return [invalid("involvedObject.namespace", involved,
                            "does not match event.namespace")]
        return []

    def field_set(self, obj: Message) -> dict[str, str]:
        assert isinstance(obj, core_pb2.Event)
        out = {"metadata.name": obj.metadata.name,
               "metadata.namespace": obj.metadata.namespace}
        for name in EVENT_FIELDS:
            out[f"involvedObject.{name}"] = getattr(obj.involvedObject, name)
        out["reason"] = obj.reason
        out["reportingComponent"] = obj.reportingComponent
        out["source"] = obj.source.component
        out["type"] = obj.type
        return out
