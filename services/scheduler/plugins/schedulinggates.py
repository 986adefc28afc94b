"""SchedulingGates: a pod with ``spec.schedulingGates`` waits outside the active queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilothouse.services.scheduler.framework import ClusterEvent, Handle, PodInfo, Status
from pilothouse.services.scheduler.plugins.names import SCHEDULING_GATES

__all__ = ["SchedulingGates"]


class SchedulingGates:
    name = SCHEDULING_GATES

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        pass

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent("Pod", "Update")]

    def pre_enqueue(self, pod: PodInfo) -> Status | None:
        gates = [g.name for g in pod.pod.spec.schedulingGates]
        if not gates:
            return None
        return Status.unresolvable(f"waiting for scheduling gates: [{' '.join(gates)}]",
                                   plugin=self.name)
