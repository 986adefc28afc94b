"""TaintToleration: NoSchedule/NoExecute taints the pod does not tolerate exclude a node;
untolerated PreferNoSchedule taints lower its score (fewer is better)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pilothouse.services.scheduler.framework import (
    MAX_NODE_SCORE,
    ClusterEvent,
    ColumnStore,
    CycleState,
    FilterColumn,
    Handle,
    NodeInfo,
    PodInfo,
    Status,
)
from pilothouse.services.scheduler.framework.columns import Column
from pilothouse.services.scheduler.framework.snapshot import Snapshot
from pilothouse.services.scheduler.framework.types import Taint, Toleration
from pilothouse.services.scheduler.plugins.helpers import default_normalize_score
from pilothouse.services.scheduler.plugins.names import TAINT_TOLERATION

__all__ = ["TaintToleration", "untolerated_taint"]

_KEY: Final = "PreScore" + TAINT_TOLERATION


def untolerated_taint(pod: PodInfo, ni: NodeInfo) -> Taint | None:
    """The first NoSchedule/NoExecute taint of the node the pod does not tolerate."""
    tolerations = pod.tolerations
    for taint in ni.schedule_taints:
        if not any(t.tolerates(taint) for t in tolerations):
            return taint
    return None


class TaintToleration:
    name = TAINT_TOLERATION
    #: Scores in [0, 100] by construction (the framework skips its range check).
    SCORES_IN_RANGE: Final = True

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        self._statuses: dict[Taint, Status] = {}
        self._filter_columns: ColumnStore[FilterColumn] = ColumnStore(FilterColumn)
        self._score_columns: ColumnStore[Column[int]] = ColumnStore(Column)

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent("Node", "Add"), ClusterEvent("Node", "Update"),
                ClusterEvent("Pod", "Update")]

    def filter(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> Status | None:
        if not ni.schedule_taints:
            return None
        taint = untolerated_taint(pod, ni)
        if taint is None:
            return None
        status = self._statuses.get(taint)
        if status is None:
            status = Status.unresolvable(
                f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}",
                plugin=self.name)
            self._statuses[taint] = status
        return status

    def filter_many(self, state: CycleState, pod: PodInfo,
                    nodes: list[NodeInfo]) -> list[Status | None]:
        f = self.filter
        return [None if not ni.schedule_taints else f(state, pod, ni) for ni in nodes]

    def filter_column(self, state: CycleState, pod: PodInfo,
                      snapshot: Snapshot) -> FilterColumn | None:
        # The verdict depends on the pod's tolerations only (the state is not read).
        def make() -> Any:
            f = self.filter
            return lambda ni: None if not ni.schedule_taints else f(state, pod, ni)
        return self._filter_columns.get(snapshot, pod.tolerations, make)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        state.write(_KEY, tuple(t for t in pod.tolerations
                                if not t.effect or t.effect == "PreferNoSchedule"))
        return None

    def score(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> int:
        if not ni.prefer_no_schedule_taints:
            return 0
        tolerations: tuple[Toleration, ...] = state.get(_KEY, pod.tolerations)
        return sum(1 for taint in ni.prefer_no_schedule_taints
                   if not any(t.tolerates(taint) for t in tolerations))

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        f = self.score
        return [0 if not ni.prefer_no_schedule_taints else f(state, pod, ni) for ni in nodes]

    def score_column(self, state: CycleState, pod: PodInfo,
                     snapshot: Snapshot) -> list[int] | None:
        tolerations: tuple[Toleration, ...] = state.get(_KEY, pod.tolerations)

        def make() -> Any:
            def count(ni: NodeInfo) -> int:
                if not ni.prefer_no_schedule_taints:
                    return 0
                return sum(1 for taint in ni.prefer_no_schedule_taints
                           if not any(t.tolerates(taint) for t in tolerations))
            return count
        col = self._score_columns.get(snapshot, tolerations, make)
        return col.values if col is not None else None

    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                        scores: list[int]) -> Status | None:
        return default_normalize_score(MAX_NODE_SCORE, True, scores)
