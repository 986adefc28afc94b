"""apps/v1: Deployments, ReplicaSets, StatefulSets, DaemonSets.

Defaults follow ``k8s.io/kubernetes/pkg/apis/apps/v1/defaults.go``; the pod
template gets the pod-spec defaults. Status is cleared on create (the
controllers own it); the selector is immutable on update (apps/v1).
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf.message import Message

from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.intstr.intstr_pb2 import IntOrString
from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.strategies._common import KindStrategy, set_default
from pilothouse.services.apiserver.strategies.workloads import (
    default_template,
    selector_immutable,
    validate_counts,
    validate_selector_and_template,
    validate_template,
)
from pilothouse.services.apiserver.strategy import StrategyContext, register_strategy
from pilothouse.services.apiserver.validation import (
    forbidden,
    invalid,
    not_supported,
    required,
    validate_dns1123_label,
    validate_int_or_percent,
)

DEPLOYMENT_STRATEGIES: Final = ("Recreate", "RollingUpdate")
STATEFULSET_STRATEGIES: Final = ("OnDelete", "RollingUpdate")
DAEMONSET_STRATEGIES: Final = ("OnDelete", "RollingUpdate")
POD_MANAGEMENT_POLICIES: Final = ("OrderedReady", "Parallel")
PVC_RETENTION: Final = ("Retain", "Delete")


def _percent(text: str) -> IntOrString:
    return IntOrString(type=1, strVal=text)


def _int(value: int) -> IntOrString:
    return IntOrString(type=0, intVal=value)


def _is_zero(value: IntOrString) -> bool:
    if value.type == 1:
        return value.strVal in ("0%", "0")
    return value.intVal == 0


def _validate_rolling(rolling: Any, path: str, *, surge_name: str = "maxSurge") -> list[Cause]:
    causes: list[Cause] = []
    unavailable, surge = rolling.maxUnavailable, getattr(rolling, surge_name)
    causes.extend(validate_int_or_percent(unavailable, f"{path}.maxUnavailable"))
    causes.extend(validate_int_or_percent(surge, f"{path}.{surge_name}"))
    if not causes and _is_zero(surge) and _is_zero(unavailable):
        shown: Any = unavailable.strVal if unavailable.type == 1 else unavailable.intVal
        causes.append(invalid(f"{path}.maxUnavailable", shown,
                              f"may not be 0 when `{surge_name}` is 0"))
    return causes


class _Workload(KindStrategy):
    """Status cleared on create; selector immutable; template valid."""

    clears_status_on_create = True
    word = "deployment"

    def validate_spec(self, obj: Any) -> list[Cause]:
        spec = obj.spec
        causes = validate_counts(spec, "spec", ("replicas", "minReadySeconds",
                                                "revisionHistoryLimit"))
        causes.extend(validate_selector_and_template(spec, "spec", self.word))
        causes.extend(validate_template(spec.template, "spec.template"))
        return causes

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        return self.validate_spec(obj)

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        causes = self.validate_spec(new)
        causes.extend(selector_immutable(new.spec, old.spec, "spec"))  # type: ignore[attr-defined]
        return causes


@register_strategy("apps", "deployments")
class DeploymentStrategy(_Workload):
    def default(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, apps_pb2.Deployment)
        spec = obj.spec
        set_default(spec, "replicas", 1)
        strategy = spec.strategy
        if not strategy.type:
            strategy.type = "RollingUpdate"
        if strategy.type == "RollingUpdate":
            rolling = strategy.rollingUpdate
            if not rolling.HasField("maxUnavailable"):
                rolling.maxUnavailable.CopyFrom(_percent("25%"))
            if not rolling.HasField("maxSurge"):
                rolling.maxSurge.CopyFrom(_percent("25%"))
        set_default(spec, "revisionHistoryLimit", 10)
        set_default(spec, "progressDeadlineSeconds", 600)
        default_template(spec.template)

    def validate_spec(self, obj: Any) -> list[Cause]:
        causes = super().validate_spec(obj)
        spec = obj.spec
        strategy = spec.strategy
        if strategy.type not in DEPLOYMENT_STRATEGIES:
            causes.append(not_supported("spec.strategy.type", strategy.type,
                                        DEPLOYMENT_STRATEGIES))
        elif strategy.type == "Recreate" and strategy.HasField("rollingUpdate"):
            causes.append(forbidden("spec.strategy.rollingUpdate",
                                    "may not be specified when strategy `type` is 'Recreate'"))
        elif strategy.type == "RollingUpdate":
            causes.extend(_validate_rolling(strategy.rollingUpdate,
                                            "spec.strategy.rollingUpdate"))
        if spec.HasField("progressDeadlineSeconds"):
            more = validate_counts(spec, "spec", ("progressDeadlineSeconds",))
            causes.extend(more)
            if not more and spec.progressDeadlineSeconds <= spec.minReadySeconds:
                causes.append(invalid("spec.progressDeadlineSeconds",
                                      spec.progressDeadlineSeconds,
                                      "must be greater than minReadySeconds"))
        return causes


@register_strategy("apps", "replicasets")
class ReplicaSetStrategy(_Workload):
    def default(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, apps_pb2.ReplicaSet)
        set_default(obj.spec, "replicas", 1)
        default_template(obj.spec.template)

    def field_set(self, obj: Message) -> dict[str, str]:
        assert isinstance(obj, apps_pb2.ReplicaSet)
        return {"metadata.name": obj.metadata.name,
                "metadata.namespace": obj.metadata.namespace,
                "status.replicas": str(obj.status.replicas)}


STATEFULSET_UPDATABLE: Final = (
    "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', "
    "'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
    "'minReadySeconds' are forbidden"
)


def _with_claim_volumes(obj: Any) -> Any:
    """``obj`` as the template's volume mounts see it: each volumeClaimTemplate is a
    volume of the pod (the controller adds it to every pod it makes), so a mount may
    name a claim the template's own volumes lack."""
    spec = obj.spec
    names = {v.name for v in spec.template.spec.volumes}
    missing = [c.metadata.name for c in spec.volumeClaimTemplates
               if c.metadata.name and c.metadata.name not in names]
    if not missing:
        return obj
    view = type(obj)()
    view.CopyFrom(obj)
    for name in missing:
        volume = view.spec.template.spec.volumes.add(name=name)
        volume.volumeSource.persistentVolumeClaim.claimName = name
    return view


@register_strategy("apps", "statefulsets")
class StatefulSetStrategy(_Workload):
    word = "statefulset"

    def default(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, apps_pb2.StatefulSet)
        spec = obj.spec
        set_default(spec, "podManagementPolicy", "OrderedReady")
        update = spec.updateStrategy
        if not update.type:
            update.type = "RollingUpdate"
            update.rollingUpdate.SetInParent()
        if update.type == "RollingUpdate" and update.HasField("rollingUpdate"):
            set_default(update.rollingUpdate, "partition", 0)
        retention = spec.persistentVolumeClaimRetentionPolicy
        set_default(retention, "whenDeleted", "Retain")
        set_default(retention, "whenScaled", "Retain")
        set_default(spec, "replicas", 1)
        set_default(spec, "revisionHistoryLimit", 10)
        set_default(spec, "serviceName", "")
        for claim in spec.volumeClaimTemplates:
            set_default(claim.spec, "volumeMode", "Filesystem")
            set_default(claim.status, "phase", "Pending")
        default_template(spec.template)

    def validate_spec(self, obj: Any) -> list[Cause]:
        causes = super().validate_spec(_with_claim_volumes(obj))
        spec = obj.spec
        if spec.podManagementPolicy not in POD_MANAGEMENT_POLICIES:
            causes.append(not_supported("spec.podManagementPolicy", spec.podManagementPolicy,
                                        POD_MANAGEMENT_POLICIES))
        update = spec.updateStrategy
        if update.type not in STATEFULSET_STRATEGIES:
            causes.append(not_supported("spec.updateStrategy.type", update.type,
                                        STATEFULSET_STRATEGIES))
        elif update.type == "OnDelete" and update.HasField("rollingUpdate"):
            causes.append(invalid("spec.updateStrategy.rollingUpdate", "",
                                  "only allowed for updateStrategy 'RollingUpdate'"))
        elif update.HasField("rollingUpdate"):
            causes.extend(validate_counts(update.rollingUpdate,
                                          "spec.updateStrategy.rollingUpdate", ("partition",)))
        retention = spec.persistentVolumeClaimRetentionPolicy
        for name in ("whenDeleted", "whenScaled"):
            value = getattr(retention, name)
            if value not in PVC_RETENTION:
                causes.append(not_supported(
                    f"spec.persistentVolumeClaimRetentionPolicy.{name}", value, PVC_RETENTION))
        if spec.serviceName:
            causes.extend(validate_dns1123_label(spec.serviceName, "spec.serviceName"))
        for i, claim in enumerate(spec.volumeClaimTemplates):
            if not claim.metadata.name:
                causes.append(required(f"spec.volumeClaimTemplates[{i}].metadata.name"))
        return causes

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(new, apps_pb2.StatefulSet) and isinstance(old, apps_pb2.StatefulSet)
        causes = self.validate_spec(new)
        rest_new, rest_old = apps_pb2.StatefulSetSpec(), apps_pb2.StatefulSetSpec()
        rest_new.CopyFrom(new.spec)
        rest_old.CopyFrom(old.spec)
        for name in ("replicas", "ordinals", "template", "updateStrategy",
                     "persistentVolumeClaimRetentionPolicy", "minReadySeconds"):
            rest_new.ClearField(name)
            rest_old.ClearField(name)
        if rest_new != rest_old:
            causes.append(forbidden("spec", STATEFULSET_UPDATABLE.removeprefix(
                "spec: Forbidden: ")))
        return causes


@register_strategy("apps", "daemonsets")
class DaemonSetStrategy(_Workload):
    word = "daemonset"

    def default(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, apps_pb2.DaemonSet)
        spec = obj.spec
        update = spec.updateStrategy
        if not update.type:
            update.type = "RollingUpdate"
        if update.type == "RollingUpdate":
            rolling = update.rollingUpdate
            if not rolling.HasField("maxUnavailable"):
                rolling.maxUnavailable.CopyFrom(_int(1))
            if not rolling.HasField("maxSurge"):
                rolling.maxSurge.CopyFrom(_int(0))
        set_default(spec, "revisionHistoryLimit", 10)
        default_template(spec.template)

    def validate_spec(self, obj: Any) -> list[Cause]:
        spec = obj.spec
        causes = validate_counts(spec, "spec", ("minReadySeconds", "revisionHistoryLimit"))
        causes.extend(validate_selector_and_template(spec, "spec", self.word))
        causes.extend(validate_template(spec.template, "spec.template"))
        update = spec.updateStrategy
        if update.type not in DAEMONSET_STRATEGIES:
            causes.append(not_supported("spec.updateStrategy.type", update.type,
                                        DAEMONSET_STRATEGIES))
        elif update.type == "RollingUpdate":
            causes.extend(_validate_rolling(update.rollingUpdate,
                                            "spec.updateStrategy.rollingUpdate"))
        return causes
