"""coordination.k8s.io/v1 Leases (leader election, node heartbeats)."""

from __future__ import annotations

from google.protobuf.message import Message

from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.strategies._common import KindStrategy
from pilothouse.services.apiserver.strategy import StrategyContext, register_strategy
from pilothouse.services.apiserver.validation import (
    invalid,
    validate_nonnegative,
    validate_positive,
)


@register_strategy("coordination.k8s.io", "leases")
class LeaseStrategy(KindStrategy):
    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, coordination_pb2.Lease)
        spec = obj.spec
        causes: list[Cause] = []
        if spec.HasField("leaseDurationSeconds"):
            causes.extend(validate_positive(spec.leaseDurationSeconds,
                                            "spec.leaseDurationSeconds"))
        if spec.HasField("leaseTransitions"):
            causes.extend(validate_nonnegative(spec.leaseTransitions, "spec.leaseTransitions"))
        if spec.preferredHolder and not spec.strategy:
            causes.append(invalid("spec.preferredHolder", spec.preferredHolder,
                                  "may only be specified if `strategy` is defined"))
        return causes
