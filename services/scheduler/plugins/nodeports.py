"""NodePorts: a pod's host ports must be free on the node.

A port bound on 0.0.0.0 conflicts with the same protocol/port on any address;
one bound on a specific address conflicts with that address and with 0.0.0.0.
"""

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
    PreFilterResult,
    Status,
)
from pilothouse.services.scheduler.framework.snapshot import Snapshot
from pilothouse.services.scheduler.plugins.names import NODE_PORTS

__all__ = ["NodePorts", "fits_ports"]

ERR_REASON: Final = "node(s) didn't have free ports for the requested pod ports"
_REJECT: Final = Status.unschedulable(ERR_REASON, plugin=NODE_PORTS)
ANY_IP: Final = "0.0.0.0"


def fits_ports(wanted: tuple[tuple[str, str, int], ...],
               used: set[tuple[str, str, int]]) -> bool:
    if not used:
        return True
    for ip, proto, port in wanted:
        if ip == ANY_IP:
            if any(p == port and pr == proto for _, pr, p in used):
                return False
        elif (ip, proto, port) in used or (ANY_IP, proto, port) in used:
            return False
    return True


class NodePorts:
    name = NODE_PORTS

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        self._columns: ColumnStore[FilterColumn] = ColumnStore(FilterColumn)

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent("AssignedPod", "Delete"), ClusterEvent("Node", "Add")]

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                   ) -> tuple[PreFilterResult | None, Status | None]:
        if not pod.ports:
            return None, Status.skip()
        return None, None

    def filter(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> Status | None:
        return None if fits_ports(pod.ports, ni.used_ports) else _REJECT

    def filter_column(self, state: CycleState, pod: PodInfo,
                      snapshot: Snapshot) -> FilterColumn | None:
        wanted = pod.ports

        def make() -> Any:
            return lambda ni: None if fits_ports(wanted, ni.used_ports) else _REJECT
        return self._columns.get(snapshot, wanted, make)
