"""NodeResourcesFit: does the node have room for the pod's requests; score by allocation.

Filter: the node must have a free pod slot, and for every resource the pod
requests, allocatable minus what the node's pods already request must cover
it ("Insufficient cpu"). When the request exceeds the node's whole allocatable,
no preemption can help: UNSCHEDULABLE_AND_UNRESOLVABLE.

Score: ``scoringStrategy`` LeastAllocated (default: spread), MostAllocated
(bin-pack) or RequestedToCapacityRatio (a shape), over weighted resources
(cpu and memory, weight 1 each, by default), using the non-zero requests
(a container without a cpu/memory request counts as 100m / 200Mi).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pilothouse.services.scheduler.framework import (
    ClusterEvent,
    Column,
    ColumnStore,
    CycleState,
    FilterColumn,
    Handle,
    NodeInfo,
    PodInfo,
    Status,
)
from pilothouse.services.scheduler.framework.snapshot import Snapshot
from pilothouse.services.scheduler.plugins.names import NODE_RESOURCES_FIT
from pilothouse.services.scheduler.plugins.noderesources.scorers import (
    ScoreMemo,
    ScoringStrategy,
    node_allocatable_requested,
    parse_resources,
    parse_shape,
)

__all__ = ["Fit", "InsufficientResource", "fits", "insufficient_resources"]

NAME: Final = NODE_RESOURCES_FIT
_PRE_SCORE_KEY: Final = "PreScore" + NAME


@dataclass(frozen=True, slots=True)
class InsufficientResource:
    resource: str
    reason: str
    requested: int
    used: int
    capacity: int
    unresolvable: bool


def _status(reasons: tuple[str, ...], unresolvable: bool) -> Status:
    if unresolvable:
        return Status.unresolvable(*reasons, plugin=NAME)
    return Status.unschedulable(*reasons, plugin=NAME)


# The common single-reason verdicts, shared (no allocation per failing node).
_SINGLE: Final = {
    (name, unres): _status((reason,), unres)
    for name, reason in (("cpu", "Insufficient cpu"), ("memory", "Insufficient memory"),
                         ("pods", "Too many pods"),
                         ("ephemeral-storage", "Insufficient ephemeral-storage"))
    for unres in (False, True)
}


def insufficient_resources(pod: PodInfo, ni: NodeInfo, *,
                           ignored: frozenset[str] = frozenset(),
                           ignored_groups: frozenset[str] = frozenset(),
                           ) -> list[InsufficientResource]:
    """Every resource the node lacks for the pod (empty: it fits). Kubernetes' ``fitsRequest``."""
    out: list[InsufficientResource] = []
    n = len(ni.pods)
    if n + 1 > ni.alloc_pods:
        out.append(InsufficientResource("pods", "Too many pods", 1, n, ni.alloc_pods, False))
    cpu = pod.req_cpu
    if cpu > 0 and cpu > ni.alloc_cpu - ni.req_cpu:
        out.append(InsufficientResource("cpu", "Insufficient cpu", cpu, ni.req_cpu,
                                        ni.alloc_cpu, cpu > ni.alloc_cpu))
    mem = pod.req_mem
    if mem > 0 and mem > ni.alloc_mem - ni.req_mem:
        out.append(InsufficientResource("memory", "Insufficient memory", mem, ni.req_mem,
                                        ni.alloc_mem, mem > ni.alloc_mem))
    eph = pod.req_eph
    if eph > 0 and eph > ni.alloc_eph - ni.req_eph:
        out.append(InsufficientResource("ephemeral-storage", "Insufficient ephemeral-storage",
                                        eph, ni.req_eph, ni.alloc_eph, eph > ni.alloc_eph))
    for name, req in pod.req_scalar.items():
        if req == 0 or name in ignored:
            continue
        if ignored_groups and name.partition("/")[0] in ignored_groups:
            continue
        alloc = ni.alloc_scalar.get(name, 0)
        used = ni.req_scalar.get(name, 0)
        if req > alloc - used:
            out.append(InsufficientResource(name, f"Insufficient {name}", req, used, alloc,
                                            req > alloc))
    return out


def fits(pod: PodInfo, ni: NodeInfo) -> bool:
    """Whether the node has room for the pod's requests."""
    return not insufficient_resources(pod, ni)


@dataclass(slots=True)
class _PreScoreState:
    pod_requests: tuple[int, ...]


class Fit:
    """Kubernetes' NodeResourcesFit plugin."""

    name = NAME
    #: Scores in [0, 100] by construction (the framework skips its range check).
    SCORES_IN_RANGE: Final = True

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        args = dict(args or {})
        self.ignored = frozenset(args.get("ignoredResources") or ())
        self.ignored_groups = frozenset(args.get("ignoredResourceGroups") or ())
        strategy = args.get("scoringStrategy") or {}
        if not isinstance(strategy, Mapping):
            raise ValueError("scoringStrategy must be an object")
        kind = strategy.get("type", "LeastAllocated")
        resources = parse_resources(strategy.get("resources"))
        shape: list[tuple[int, int]] = []
        if kind == "RequestedToCapacityRatio":
            shape = parse_shape((strategy.get("requestedToCapacityRatio") or {}).get("shape"))
        self.strategy = ScoringStrategy(kind, resources, shape)
        self._fast_cpu_mem = (kind in ("LeastAllocated", "MostAllocated") and
                              [r.name for r in resources] == ["cpu", "memory"])
        self._memo = ScoreMemo()
        self._filter_columns: ColumnStore[FilterColumn] = ColumnStore(FilterColumn)
        self._score_columns: ColumnStore[Column[int]] = ColumnStore(Column)

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent("AssignedPod", "Delete"), ClusterEvent("Node", "Add"),
                ClusterEvent("Node", "Update")]

    # -- Filter ----------------------------------------------------------------------

    def filter(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> Status | None:
        # The common case inline: cpu and memory only, and they fit.
        if len(ni.pods) < ni.alloc_pods and not pod.req_eph and not pod.req_scalar:
            cpu, mem = pod.req_cpu, pod.req_mem
            cpu_bad = cpu > 0 and cpu > ni.alloc_cpu - ni.req_cpu
            mem_bad = mem > 0 and mem > ni.alloc_mem - ni.req_mem
            if not cpu_bad and not mem_bad:
                return None
            if cpu_bad != mem_bad:
                if cpu_bad:
                    return _SINGLE["cpu", cpu > ni.alloc_cpu]
                return _SINGLE["memory", mem > ni.alloc_mem]
        missing = insufficient_resources(pod, ni, ignored=self.ignored,
                                         ignored_groups=self.ignored_groups)
        if not missing:
            return None
        unresolvable = any(r.unresolvable for r in missing)
        if len(missing) == 1 and (missing[0].resource, unresolvable) in _SINGLE:
            return _SINGLE[missing[0].resource, unresolvable]
        return _status(tuple(r.reason for r in missing), unresolvable)

    def filter_many(self, state: CycleState, pod: PodInfo,
                    nodes: list[NodeInfo]) -> list[Status | None]:
        f = self.filter
        if pod.req_eph or pod.req_scalar:
            return [f(state, pod, ni) for ni in nodes]
        cpu, mem = pod.req_cpu, pod.req_mem
        return [None if (len(ni.pods) < ni.alloc_pods and
                         (not cpu or cpu <= ni.alloc_cpu - ni.req_cpu) and
                         (not mem or mem <= ni.alloc_mem - ni.req_mem))
                else f(state, pod, ni) for ni in nodes]

    def filter_column(self, state: CycleState, pod: PodInfo,
                      snapshot: Snapshot) -> FilterColumn | None:
        # The verdict depends on the pod's requests only (the state is not read).
        key = (pod.req_cpu, pod.req_mem, pod.req_eph, tuple(sorted(pod.req_scalar.items())))

        def make() -> Any:
            f = self.filter
            return lambda ni: f(state, pod, ni)
        return self._filter_columns.get(snapshot, key, make)

    # -- Score -----------------------------------------------------------------------

    def _pod_requests(self, pod: PodInfo) -> tuple[int, ...]:
        out = []
        for r in self.strategy.resources:
            if r.name == "cpu":
                out.append(pod.nz_cpu)
            elif r.name == "memory":
                out.append(pod.nz_mem)
            elif r.name == "ephemeral-storage":
                out.append(pod.req_eph)
            else:
                out.append(pod.req_scalar.get(r.name, 0))
        return tuple(out)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        state.write(_PRE_SCORE_KEY, _PreScoreState(self._pod_requests(pod)))
        return None

    def score(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> int:
        s: _PreScoreState | None = state.get(_PRE_SCORE_KEY)
        reqs = s.pod_requests if s is not None else self._pod_requests(pod)
        return resource_score(self.strategy, ni, reqs, use_requested=False)

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        s: _PreScoreState | None = state.get(_PRE_SCORE_KEY)
        reqs = s.pod_requests if s is not None else self._pod_requests(pod)
        if not self._fast_cpu_mem:
            return [resource_score(self.strategy, ni, reqs, use_requested=False) for ni in nodes]
        one = self._cpu_mem_scorer(reqs)
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

    def _cpu_mem_scorer(self, reqs: tuple[int, ...]) -> Callable[[NodeInfo], int]:
        """LeastAllocated/MostAllocated over cpu and memory for one request vector."""
        pc, pm = reqs
        wc, wm = self.strategy.weights
        least = self.strategy.kind == "LeastAllocated"

        def one(ni: NodeInfo) -> int:
            ac, am = ni.alloc_cpu, ni.alloc_mem
            rc, rm = ni.nz_cpu + pc, ni.nz_mem + pm
            total = wsum = 0
            if ac:
                if least:
                    total += ((ac - rc) * 100 // ac if rc <= ac else 0) * wc
                else:
                    total += (min(rc, ac) * 100 // ac) * wc
                wsum += wc
            if am:
                if least:
                    total += ((am - rm) * 100 // am if rm <= am else 0) * wm
                else:
                    total += (min(rm, am) * 100 // am) * wm
                wsum += wm
            return total // wsum if wsum else 0
        return one

    def score_column(self, state: CycleState, pod: PodInfo,
                     snapshot: Snapshot) -> list[int] | None:
        s: _PreScoreState | None = state.get(_PRE_SCORE_KEY)
        reqs = s.pod_requests if s is not None else self._pod_requests(pod)

        def make() -> Callable[[NodeInfo], int]:
            if self._fast_cpu_mem:
                return self._cpu_mem_scorer(reqs)
            strategy = self.strategy
            return lambda ni: resource_score(strategy, ni, reqs, use_requested=False)
        col = self._score_columns.get(snapshot, reqs, make)
        return col.values if col is not None else None


def resource_score(strategy: ScoringStrategy, ni: NodeInfo, pod_requests: tuple[int, ...],
                   *, use_requested: bool) -> int:
    requested: list[int] = []
    allocatable: list[int] = []
    for spec, req in zip(strategy.resources, pod_requests, strict=True):
        alloc, total = node_allocatable_requested(ni, spec.name, req, use_requested)
        if alloc == 0:
            requested.append(0)
            allocatable.append(0)
            continue
        requested.append(total)
        allocatable.append(alloc)
    return strategy.score(requested, allocatable)


def new(args: Mapping[str, Any] | None, handle: Handle) -> Fit:
    return Fit(args, handle)


