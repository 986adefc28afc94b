"""The in-tree plugins, and the registry that maps a plugin name to its factory.

A factory is called as ``factory(args, handle)``; the plugin classes are their
own factories. Out-of-tree plugins register through the Python entry point
group ``pilothouse.scheduler.plugins`` (entry point name = plugin name, object
= factory); ``load_registry()`` merges them over the in-tree ones.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib import metadata
from typing import Any, Final

from pilothouse.services.scheduler.plugins import names
from pilothouse.services.scheduler.plugins.defaultbinder import DefaultBinder
from pilothouse.services.scheduler.plugins.defaultpreemption import DefaultPreemption
from pilothouse.services.scheduler.plugins.imagelocality import ImageLocality
from pilothouse.services.scheduler.plugins.interpodaffinity import InterPodAffinity
from pilothouse.services.scheduler.plugins.nodeaffinity import NodeAffinity
from pilothouse.services.scheduler.plugins.nodename import NodeName
from pilothouse.services.scheduler.plugins.nodeports import NodePorts
from pilothouse.services.scheduler.plugins.noderesources.balanced_allocation import (
    BalancedAllocation,
)
from pilothouse.services.scheduler.plugins.noderesources.fit import Fit
from pilothouse.services.scheduler.plugins.nodeunschedulable import NodeUnschedulable
from pilothouse.services.scheduler.plugins.podtopologyspread import PodTopologySpread
from pilothouse.services.scheduler.plugins.queuesort import PrioritySort
from pilothouse.services.scheduler.plugins.schedulinggates import SchedulingGates
from pilothouse.services.scheduler.plugins.tainttoleration import TaintToleration

__all__ = ["DEFAULT_MULTI_POINT", "ENTRY_POINT_GROUP", "IN_TREE_REGISTRY", "load_registry"]

log = logging.getLogger("pilothouse.scheduler.plugins")

ENTRY_POINT_GROUP: Final = "pilothouse.scheduler.plugins"

IN_TREE_REGISTRY: Final[Mapping[str, Any]] = {
    names.SCHEDULING_GATES: SchedulingGates,
    names.PRIORITY_SORT: PrioritySort,
    names.NODE_UNSCHEDULABLE: NodeUnschedulable,
    names.NODE_NAME: NodeName,
    names.TAINT_TOLERATION: TaintToleration,
    names.NODE_AFFINITY: NodeAffinity,
    names.NODE_PORTS: NodePorts,
    names.NODE_RESOURCES_FIT: Fit,
    names.POD_TOPOLOGY_SPREAD: PodTopologySpread,
    names.INTER_POD_AFFINITY: InterPodAffinity,
    names.DEFAULT_PREEMPTION: DefaultPreemption,
    names.NODE_RESOURCES_BALANCED_ALLOCATION: BalancedAllocation,
    names.IMAGE_LOCALITY: ImageLocality,
    names.DEFAULT_BINDER: DefaultBinder,
}

#: Kubernetes 1.32's default plugins (multiPoint, in order) with their score weights.
DEFAULT_MULTI_POINT: Final[tuple[tuple[str, int], ...]] = (
    (names.SCHEDULING_GATES, 0),
    (names.PRIORITY_SORT, 0),
    (names.NODE_UNSCHEDULABLE, 0),
    (names.NODE_NAME, 0),
    (names.TAINT_TOLERATION, 3),
    (names.NODE_AFFINITY, 2),
    (names.NODE_PORTS, 0),
    (names.NODE_RESOURCES_FIT, 1),
    (names.POD_TOPOLOGY_SPREAD, 2),
    (names.INTER_POD_AFFINITY, 2),
    (names.DEFAULT_PREEMPTION, 0),
    (names.NODE_RESOURCES_BALANCED_ALLOCATION, 1),
    (names.IMAGE_LOCALITY, 1),
    (names.DEFAULT_BINDER, 0),
)


def load_registry(*, entry_points: bool = True) -> dict[str, Any]:
    """In-tree factories plus the out-of-tree ones from entry points (which may not
    shadow an in-tree name)."""
    registry = dict(IN_TREE_REGISTRY)
    if not entry_points:
        return registry
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in IN_TREE_REGISTRY:
            raise ValueError(f"out-of-tree plugin {ep.name!r} ({ep.value}) shadows an in-tree "
                             "plugin")
        try:
            registry[ep.name] = ep.load()
        except Exception as exc:
            raise ValueError(f"cannot load scheduler plugin {ep.name!r} from {ep.value}: "
                             f"{exc}") from exc
    return registry
