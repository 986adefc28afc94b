"""apiextensions.k8s.io/v1 CustomResourceDefinitions.

Checked here: the name is ``<plural>.<group>``, the names, the scope, and that
exactly one served-or-not version is the storage version. ``status.storedVersions``
records every version ever used for storage. The Established/NamesAccepted
conditions are the registry's business (it knows the other CRDs' names).
"""

from __future__ import annotations

from typing import Final

from google.protobuf.message import Message

from pilothouse.gen.k8s.apiextensions.v1 import apiextensions_pb2
from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.strategies._common import KindStrategy
from pilothouse.services.apiserver.strategies.workloads import _Shown
from pilothouse.services.apiserver.strategy import StrategyContext, register_strategy
from pilothouse.services.apiserver.validation import (
    duplicate,
    each,
    immutable,
    invalid,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    not_supported,
    required,
)

SCOPES: Final = ("Cluster", "Namespaced")
CONVERSION_STRATEGIES: Final = ("None", "Webhook")
CRD = apiextensions_pb2.CustomResourceDefinition


def storage_version(crd: CRD) -> str | None:
    for version in crd.spec.versions:
        if version.storage:
            return version.name
    return None


def _record_storage_version(crd: CRD) -> None:
    name = storage_version(crd)
    if name and name not in crd.status.storedVersions:
        crd.status.storedVersions.append(name)


@register_strategy("apiextensions.k8s.io", "customresourcedefinitions")
class CustomResourceDefinitionStrategy(KindStrategy):
    def default(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, CRD)
        names = obj.spec.names
        if not names.singular and names.kind:
            names.singular = names.kind.lower()
        if not names.listKind and names.kind:
            names.listKind = names.kind + "List"
        if not obj.spec.conversion.strategy:
            obj.spec.conversion.strategy = "None"

    def prepare_for_create(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, CRD)
        super().prepare_for_create(obj, ctx)
        obj.ClearField("status")
        _record_storage_version(obj)

    def prepare_for_update(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        assert isinstance(new, CRD) and isinstance(old, CRD)
        super().prepare_for_update(new, old, ctx)
        _record_storage_version(new)

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, CRD)
        spec, names = obj.spec, obj.spec.names
        causes: list[Cause] = []
        if obj.metadata.name != f"{names.plural}.{spec.group}":
            causes.append(invalid("metadata.name", obj.metadata.name,
                                  'must be spec.names.plural+"."+spec.group'))
        if not spec.group:
            causes.append(required("spec.group"))
        else:
            causes.extend(each("spec.group", spec.group, is_dns1123_subdomain(spec.group)))
            if "." not in spec.group:
                causes.append(invalid("spec.group", spec.group,
                                      "should be a domain with at least one dot"))
        if spec.scope not in SCOPES:
            if not spec.scope:
                causes.append(required("spec.scope"))
            else:
                causes.append(not_supported("spec.scope", spec.scope, SCOPES))
        for field in ("plural", "singular"):
            value = getattr(names, field)
            if not value:
                causes.append(required(f"spec.names.{field}"))
            else:
                causes.extend(each(f"spec.names.{field}", value, is_dns1123_label(value)))
        for field in ("kind", "listKind"):
            value = getattr(names, field)
            if not value:
                causes.append(required(f"spec.names.{field}"))
            else:
                causes.extend(each(f"spec.names.{field}", value,
                                   is_dns1035_label(value.lower())))
        if names.kind and names.kind == names.listKind:
            causes.append(invalid("spec.names.listKind", names.listKind,
                                  "kind and listKind may not be the same"))
        for i, short in enumerate(names.shortNames):
            causes.extend(each(f"spec.names.shortNames[{i}]", short, is_dns1123_label(short)))
        if spec.conversion.strategy not in CONVERSION_STRATEGIES:
            causes.append(not_supported("spec.conversion.strategy", spec.conversion.strategy,
                                        CONVERSION_STRATEGIES))
        if not spec.versions:
            causes.append(invalid("spec.versions", _Shown("[]apiextensions."
                                                          "CustomResourceDefinitionVersion{}"),
                                  "must have exactly one version marked as storage version"))
        seen: set[str] = set()
        for i, version in enumerate(spec.versions):
            path = f"spec.versions[{i}].name"
            if not version.name:
                causes.append(required(path))
            else:
                causes.extend(each(path, version.name, is_dns1035_label(version.name)))
            if version.name in seen:
                causes.append(duplicate(path, version.name))
            seen.add(version.name)
        storage = [v.name for v in spec.versions if v.storage]
        if spec.versions and len(storage) != 1:
            causes.append(invalid("spec.versions", _Shown(f"[{' '.join(storage)}]"),
                                  "must have exactly one version marked as storage version"))
        if spec.versions and not any(v.served for v in spec.versions):
            causes.append(invalid("spec.versions", _Shown("[]"),
                                  "must have at least one version marked as served"))
        return causes

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(new, CRD) and isinstance(old, CRD)
        causes = self.validate(new, ctx)
        if new.spec.group != old.spec.group:
            causes.append(immutable("spec.group", new.spec.group))
        if new.spec.scope != old.spec.scope:
            causes.append(immutable("spec.scope", new.spec.scope))
        if new.spec.names.plural != old.spec.names.plural:
            causes.append(immutable("spec.names.plural", new.spec.names.plural))
        return causes
