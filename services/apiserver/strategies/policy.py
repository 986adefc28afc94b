"""policy/v1 PodDisruptionBudgets."""

from __future__ import annotations

from typing import Final

from google.protobuf.message import Message

from pilothouse.gen.k8s.policy.v1 import policy_pb2
from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.strategies._common import KindStrategy
from pilothouse.services.apiserver.strategy import StrategyContext, register_strategy
from pilothouse.services.apiserver.validation import (
    invalid,
    not_supported,
    validate_int_or_percent,
    validate_label_selector,
)

UNHEALTHY_POD_EVICTION_POLICIES: Final = ("AlwaysAllow", "IfHealthyBudget")


@register_strategy("policy", "poddisruptionbudgets")
class PodDisruptionBudgetStrategy(KindStrategy):
    clears_status_on_create = True

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, policy_pb2.PodDisruptionBudget)
        spec = obj.spec
        causes: list[Cause] = []
        if spec.HasField("minAvailable") and spec.HasField("maxUnavailable"):
            causes.append(invalid("spec", "", "minAvailable and maxUnavailable cannot be both "
                                              "set"))
        for name in ("minAvailable", "maxUnavailable"):
            if spec.HasField(name):
                causes.extend(validate_int_or_percent(getattr(spec, name), f"spec.{name}"))
        if spec.HasField("selector"):
            causes.extend(validate_label_selector(spec.selector, "spec.selector"))
        policy = spec.unhealthyPodEvictionPolicy
        if policy and policy not in UNHEALTHY_POD_EVICTION_POLICIES:
            causes.append(not_supported("spec.unhealthyPodEvictionPolicy", policy,
                                        UNHEALTHY_POD_EVICTION_POLICIES))
        return causes
