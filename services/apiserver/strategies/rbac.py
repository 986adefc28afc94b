"""rbac.authorization.k8s.io/v1: Roles, ClusterRoles and their bindings.

Names need only be one URL path segment (``system:controller:foo`` is fine);
``roleRef`` cannot change once a binding exists.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf.message import Message

from pilothouse.gen.k8s.rbac.v1 import rbac_pb2
from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.strategies._common import KindStrategy
from pilothouse.services.apiserver.strategies.workloads import _Shown
from pilothouse.services.apiserver.strategy import StrategyContext, register_strategy
from pilothouse.services.apiserver.validation import (
    each,
    invalid,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_path_segment_name,
    not_supported,
    required,
    validate_label_selector,
)

GROUP: Final = "rbac.authorization.k8s.io"
SUBJECT_KINDS: Final = ("ServiceAccount", "User", "Group")


def validate_rules(rules: Any, *, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    for i, rule in enumerate(rules):
        path = f"rules[{i}]"
        if not rule.verbs:
            causes.append(required(f"{path}.verbs", "verbs must contain at least one value"))
        if rule.nonResourceURLs:
            urls = list(rule.nonResourceURLs)
            if namespaced:
                causes.append(invalid(f"{path}.nonResourceURLs", urls,
                                      "namespaced rules cannot apply to non-resource URLs"))
            if rule.apiGroups or rule.resources or rule.resourceNames:
                causes.append(invalid(f"{path}.nonResourceURLs", urls,
                                      "rules cannot apply to both regular resources and "
                                      "non-resource URLs"))
            continue
        if not rule.apiGroups:
            causes.append(required(f"{path}.apiGroups",
                                   "resource rules must supply at least one api group"))
        if not rule.resources:
            causes.append(required(f"{path}.resources",
                                   "resource rules must supply at least one resource"))
    return causes


def _default_binding(binding: Any) -> None:
    if not binding.roleRef.apiGroup:
        binding.roleRef.apiGroup = GROUP
    for subject in binding.subjects:
        if not subject.HasField("apiGroup") or not subject.apiGroup:
            subject.apiGroup = "" if subject.kind == "ServiceAccount" else GROUP


def _validate_binding(binding: Any, *, role_kinds: tuple[str, ...],
                      namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    ref = binding.roleRef
    if ref.apiGroup != GROUP:
        causes.append(not_supported("roleRef.apiGroup", ref.apiGroup, (GROUP,)))
    if ref.kind not in role_kinds:
        causes.append(not_supported("roleRef.kind", ref.kind, role_kinds))
    if not ref.name:
        causes.append(required("roleRef.name"))
    else:
        causes.extend(each("roleRef.name", ref.name, is_valid_path_segment_name(ref.name)))
    for i, subject in enumerate(binding.subjects):
        path = f"subjects[{i}]"
        if not subject.name:
            causes.append(required(f"{path}.name"))
        if subject.kind == "ServiceAccount":
            if subject.name:
                causes.extend(each(f"{path}.name", subject.name,
                                   is_dns1123_subdomain(subject.name)))
            if subject.apiGroup:
                causes.append(not_supported(f"{path}.apiGroup", subject.apiGroup, ("",)))
            if not namespaced and not subject.namespace:
                causes.append(required(f"{path}.namespace"))
            elif subject.namespace:
                causes.extend(each(f"{path}.namespace", subject.namespace,
                                   is_dns1123_label(subject.namespace)))
        elif subject.kind in ("User", "Group"):
            if subject.apiGroup != GROUP:
                causes.append(not_supported(f"{path}.apiGroup", subject.apiGroup, (GROUP,)))
        else:
            causes.append(not_supported(f"{path}.kind", subject.kind, SUBJECT_KINDS))
    return causes


def _role_ref_changed(new: Any, old: Any) -> list[Cause]:
    if new.roleRef != old.roleRef:
        ref = new.roleRef
        shown = _Shown(f"rbac.RoleRef{{APIGroup:{ref.apiGroup!r}, Kind:{ref.kind!r}, "
                       f"Name:{ref.name!r}}}".replace("'", '"'))
        return [invalid("roleRef", shown, "cannot change roleRef")]
    return []


class _RBAC(KindStrategy):
    name_validator = staticmethod(is_valid_path_segment_name)


@register_strategy(GROUP, "roles")
class RoleStrategy(_RBAC):
    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, rbac_pb2.Role)
        return validate_rules(obj.rules, namespaced=True)


@register_strategy(GROUP, "clusterroles")
class ClusterRoleStrategy(_RBAC):
    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, rbac_pb2.ClusterRole)
        causes = validate_rules(obj.rules, namespaced=False)
        if obj.HasField("aggregationRule"):
            selectors = obj.aggregationRule.clusterRoleSelectors
            if not selectors:
                causes.append(required("aggregationRule.clusterRoleSelectors",
                                       "at least one clusterRoleSelector required if "
                                       "aggregationRule is non-nil"))
            for i, selector in enumerate(selectors):
                causes.extend(validate_label_selector(
                    selector, f"aggregationRule.clusterRoleSelectors[{i}]"))
        return causes


@register_strategy(GROUP, "rolebindings")
class RoleBindingStrategy(_RBAC):
    def default(self, obj: Message, ctx: StrategyContext) -> None:
        _default_binding(obj)

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, rbac_pb2.RoleBinding)
        return _validate_binding(obj, role_kinds=("Role", "ClusterRole"), namespaced=True)

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        return self.validate(new, ctx) + _role_ref_changed(new, old)


@register_strategy(GROUP, "clusterrolebindings")
class ClusterRoleBindingStrategy(_RBAC):
    def default(self, obj: Message, ctx: StrategyContext) -> None:
        _default_binding(obj)

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, rbac_pb2.ClusterRoleBinding)
        return _validate_binding(obj, role_kinds=("ClusterRole",), namespaced=False)

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        return self.validate(new, ctx) + _role_ref_changed(new, old)
