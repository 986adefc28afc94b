"""NodeUnschedulable: cordoned nodes (``spec.unschedulable``) take only pods that tolerate
the ``node.kubernetes.io/unschedulable:NoSchedule`` taint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pilothouse.services.scheduler.framework import (
    ClusterEvent,
    ColumnStore,
    CycleState,
    FilterColumn,
    Handle,
    NodeInfo,
    PodInfo,
    Status,
)
from pilothouse.services.scheduler.framework.snapshot import Snapshot
from pilothouse.services.scheduler.framework.types import Taint
from pilothouse.services.scheduler.plugins.names import NODE_UNSCHEDULABLE

__all__ = ["NodeUnschedulable", "fits"]

ERR_REASON_UNSCHEDULABLE: Final = "node(s) were unschedulable"
UNSCHEDULABLE_TAINT: Final = Taint("node.kubernetes.io/unschedulable", "", "NoSchedule")
_REJECT: Final = Status.unresolvable(ERR_REASON_UNSCHEDULABLE, plugin=NODE_UNSCHEDULABLE)


def fits(pod: PodInfo, ni: NodeInfo) -> bool:
    if not ni.unschedulable:
        return True
    return any(t.tolerates(UNSCHEDULABLE_TAINT) for t in pod.tolerations)


class NodeUnschedulable:
    name = NODE_UNSCHEDULABLE

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        self._columns: ColumnStore[FilterColumn] = ColumnStore(FilterColumn)

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent("Node", "Add"), ClusterEvent("Node", "Update")]

    def filter(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> Status | None:
        if not ni.unschedulable or fits(pod, ni):
            return None
        return _REJECT

    def filter_many(self, state: CycleState, pod: PodInfo,
                    nodes: list[NodeInfo]) -> list[Status | None]:
        return [None if not ni.unschedulable or fits(pod, ni) else _REJECT for ni in nodes]

    def filter_column(self, state: CycleState, pod: PodInfo,
                      snapshot: Snapshot) -> FilterColumn | None:
        tolerated = any(t.tolerates(UNSCHEDULABLE_TAINT) for t in pod.tolerations)

        def make() -> Any:
            return lambda ni: None if not ni.unschedulable or tolerated else _REJECT
        return self._columns.get(snapshot, tolerated, make)
