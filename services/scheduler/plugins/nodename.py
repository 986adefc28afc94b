"""NodeName: a pod that names a node (``spec.nodeName``) fits only there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pilothouse.services.scheduler.framework import (
    ClusterEvent,
    CycleState,
    Handle,
    NodeInfo,
    PodInfo,
    PreFilterResult,
    Status,
)
from pilothouse.services.scheduler.plugins.names import NODE_NAME

__all__ = ["NodeName", "fits"]

ERR_REASON: Final = "node(s) didn't match the requested node name"
_REJECT: Final = Status.unresolvable(ERR_REASON, plugin=NODE_NAME)


def fits(pod: PodInfo, ni: NodeInfo) -> bool:
    return not pod.node_name or pod.node_name == ni.name


class NodeName:
    name = NODE_NAME

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        pass

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent("Node", "Add")]

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                   ) -> tuple[PreFilterResult | None, Status | None]:
        # Most pods name no node: skip the per-node Filter entirely then.
        if not pod.node_name:
            return None, Status.skip()
        return None, None

    def filter(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> Status | None:
        return None if fits(pod, ni) else _REJECT
