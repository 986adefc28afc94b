"""scheduling.k8s.io/v1 PriorityClasses."""

from __future__ import annotations

from typing import Final

from google.protobuf.message import Message

from pilothouse.gen.k8s.scheduling.v1 import scheduling_pb2
from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.strategies._common import KindStrategy, set_default
from pilothouse.services.apiserver.strategies.pods import SYSTEM_PRIORITIES
from pilothouse.services.apiserver.strategy import StrategyContext, register_strategy
from pilothouse.services.apiserver.validation import forbidden, immutable, not_supported

HIGHEST_USER_DEFINABLE_PRIORITY: Final = 1_000_000_000
SYSTEM_PREFIX: Final = "system-"
PREEMPTION_POLICIES: Final = ("PreemptLowerPriority", "Never")


def _system_class_error(pc: scheduling_pb2.PriorityClass) -> str | None:
    name = pc.metadata.name
    value = SYSTEM_PRIORITIES.get(name)
    if value is None:
        return f"{name} is not a known system priority class"
    if pc.value != value:
        return f"value of {name} PriorityClass must be {value}"
    if pc.globalDefault:
        return f"globalDefault of {name} PriorityClass must be false"
    return None


@register_strategy("scheduling.k8s.io", "priorityclasses")
class PriorityClassStrategy(KindStrategy):
    def default(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, scheduling_pb2.PriorityClass)
        set_default(obj, "preemptionPolicy", "PreemptLowerPriority")

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, scheduling_pb2.PriorityClass)
        causes: list[Cause] = []
        if obj.metadata.name.startswith(SYSTEM_PREFIX):
            error = _system_class_error(obj)
            if error:
                causes.append(forbidden(
                    "metadata.name", f"priority class names with '{SYSTEM_PREFIX}' prefix are "
                    f"reserved for system use only. error: {error}"))
        elif obj.value > HIGHEST_USER_DEFINABLE_PRIORITY:
            causes.append(forbidden("value", "maximum allowed value of a user defined priority "
                                             f"is {HIGHEST_USER_DEFINABLE_PRIORITY}"))
        if obj.preemptionPolicy not in PREEMPTION_POLICIES:
            causes.append(not_supported("preemptionPolicy", obj.preemptionPolicy,
                                        PREEMPTION_POLICIES))
        return causes

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(new, scheduling_pb2.PriorityClass)
        assert isinstance(old, scheduling_pb2.PriorityClass)
        causes = self.validate(new, ctx)
        if new.value != old.value:
            causes.append(forbidden("value", "may not be changed in an update."))
        if new.preemptionPolicy != old.preemptionPolicy:
            causes.append(immutable("preemptionPolicy", new.preemptionPolicy))
        return causes
