"""NodeResourcesBalancedAllocation: favour nodes whose resources stay evenly used.

Score: 100 * (1 - the standard deviation of requested/allocatable fractions)
over the configured resources (cpu and memory by default), counting the
pod's and the node's actual requests (no non-zero defaults).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from pilothouse.services.scheduler.framework import (
    ClusterEvent,
    Column,
    ColumnStore,
    CycleState,
    Handle,
    NodeInfo,
    PodInfo,
    Status,
)
from pilothouse.services.scheduler.framework.snapshot import Snapshot
from pilothouse.services.scheduler.plugins.names import NODE_RESOURCES_BALANCED_ALLOCATION
from pilothouse.services.scheduler.plugins.noderesources.scorers import (
    ScoreMemo,
    balanced_score,
    node_allocatable_requested,
    parse_resources,
)

__all__ = ["BalancedAllocation"]

NAME: Final = NODE_RESOURCES_BALANCED_ALLOCATION
_KEY: Final = "PreScore" + NAME


class BalancedAllocation:
    name = NAME
    #: Scores in [0, 100] by construction (the framework skips its range check).
    SCORES_IN_RANGE: Final = True

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        args = dict(args or {})
        self.resources = parse_resources(args.get("resources"))
        self._fast = [r.name for r in self.resources] == ["cpu", "memory"]
        self._memo = ScoreMemo()
        self._columns: ColumnStore[Column[int]] = ColumnStore(Column)

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent("AssignedPod", "Delete"), ClusterEvent("Node", "Add"),
                ClusterEvent("Node", "Update")]

    def _pod_requests(self, pod: PodInfo) -> tuple[int, ...]:
        out = []
        for r in self.resources:
            if r.name == "cpu":
                out.append(pod.req_cpu)
            elif r.name == "memory":
                out.append(pod.req_mem)
            elif r.name == "ephemeral-storage":
                out.append(pod.req_eph)
            else:
                out.append(pod.req_scalar.get(r.name, 0))
        return tuple(out)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        state.write(_KEY, self._pod_requests(pod))
        return None

    def score(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> int:
        reqs = state.get(_KEY) or self._pod_requests(pod)
        requested, allocatable = [], []
        for spec, req in zip(self.resources, reqs, strict=True):
            alloc, total = node_allocatable_requested(ni, spec.name, req, True)
            requested.append(total if alloc else 0)
            allocatable.append(alloc)
        return balanced_score(requested, allocatable)

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        if not self._fast:
            return [self.score(state, pod, ni) for ni in nodes]
        reqs = state.get(_KEY) or self._pod_requests(pod)
        one = _cpu_mem_scorer(reqs)
        table = self._memo.table(reqs)
        out = []
        for ni in nodes:
            e = table.get(ni.name)
            if e is not None and e[0] == ni.generation:
                out.append(e[1])
                continue
            score = one(ni)
            table[ni.name] = (ni.generation, score)
            out.append(score)
        return out

    def score_column(self, state: CycleState, pod: PodInfo,
                     snapshot: Snapshot) -> list[int] | None:
        reqs = state.get(_KEY) or self._pod_requests(pod)

        def make() -> Callable[[NodeInfo], int]:
            if self._fast:
                return _cpu_mem_scorer(reqs)
            return lambda ni: self.score(state, pod, ni)
        col = self._columns.get(snapshot, reqs, make)
        return col.values if col is not None else None


def _cpu_mem_scorer(reqs: tuple[int, ...]) -> Callable[[NodeInfo], int]:
    """The score over cpu and memory for one request vector."""
    pc, pm = reqs

    def one(ni: NodeInfo) -> int:
        ac, am = ni.alloc_cpu, ni.alloc_mem
        if ac and am:
            fc = (ni.req_cpu + pc) / ac
            fm = (ni.req_mem + pm) / am
            fc = fc if fc < 1.0 else 1.0
            fm = fm if fm < 1.0 else 1.0
            return int((1 - abs((fc - fm) / 2)) * 100)
        return 100  # one fraction or none: no deviation
    return one


def new(args: Mapping[str, Any] | None, handle: Handle) -> BalancedAllocation:
    return BalancedAllocation(args, handle)
