"""Run one plugin the way the framework would, over a snapshot built from objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.scheduler.framework import (
    CycleState,
    Handle,
    NodeInfo,
    PodInfo,
    Snapshot,
    Status,
)


def setup(plugin_cls: Any, nodes: Sequence[core_pb2.Node], pods: Sequence[core_pb2.Pod] = (),
          args: Mapping[str, Any] | None = None, **handle_kwargs: Any,
          ) -> tuple[Any, Snapshot, Handle]:
    snap = Snapshot.from_objects(nodes, pods)
    handle = Handle(snapshot=snap, **handle_kwargs)
    return plugin_cls(args, handle), snap, handle


def filter_all(plugin_cls: Any, pod: core_pb2.Pod, nodes: Sequence[core_pb2.Node],
               pods: Sequence[core_pb2.Pod] = (), args: Mapping[str, Any] | None = None,
               **handle_kwargs: Any) -> dict[str, Status | None]:
    """node name -> the plugin's Filter verdict (PreFilter first, Skip honoured)."""
    plugin, snap, _ = setup(plugin_cls, nodes, pods, args, **handle_kwargs)
    state = CycleState()
    pi = PodInfo(pod)
    if hasattr(plugin, "pre_filter"):
        result, status = plugin.pre_filter(state, pi, snap.list())
        if status is not None and status.is_skip():
            return {n.name: None for n in snap.list()}
        if status is not None:
            return {n.name: status for n in snap.list()}
        if result is not None and result.node_names is not None:
            out: dict[str, Status | None] = {}
            for n in snap.list():
                out[n.name] = (plugin.filter(state, pi, n) if n.name in result.node_names
                               else Status.unresolvable("not in PreFilterResult"))
            return out
    out = {n.name: plugin.filter(state, pi, n) for n in snap.list()}
    if hasattr(plugin, "filter_many"):
        many = plugin.filter_many(state, pi, snap.list())
        assert dict(zip(out, many, strict=True)) == out, "filter_many and filter disagree"
    if hasattr(plugin, "filter_column"):
        check_filter_column(plugin, state, pi, snap, out)
    return out


def check_filter_column(plugin: Any, state: CycleState, pi: PodInfo, snap: Snapshot,
                        expected: Mapping[str, Status | None]) -> None:
    """The plugin's verdict column (built on the shape's second use) says what
    ``filter`` says for every node, and its pass mask and failure count agree."""
    col = None
    for _ in range(3):
        col = plugin.filter_column(state, pi, snap)
        if col is not None:
            break
    assert col is not None, "no filter column for a repeated shape"
    for ni in snap.list():
        want = expected[ni.name]
        if want is not None and want.is_success():
            want = None
        got = col.values[snap.slot_of[ni.name]]
        assert got == want, f"filter_column and filter disagree on {ni.name}"
    assert list(col.passed) == [1 if v is None else 0 for v in col.values]
    assert col.failed == sum(1 for v in col.values if v is not None)


def reasons(verdicts: Mapping[str, Status | None]) -> dict[str, str]:
    """node -> "" (fits) or the joined reasons."""
    return {n: "" if s is None else s.message() for n, s in verdicts.items()}


def score_all(plugin_cls: Any, pod: core_pb2.Pod, nodes: Sequence[core_pb2.Node],
              pods: Sequence[core_pb2.Pod] = (), args: Mapping[str, Any] | None = None,
              **handle_kwargs: Any) -> dict[str, int] | None:
    """node name -> normalized score (None when PreScore skips)."""
    plugin, snap, _ = setup(plugin_cls, nodes, pods, args, **handle_kwargs)
    state = CycleState()
    pi = PodInfo(pod)
    feasible: list[NodeInfo] = snap.list()
    if hasattr(plugin, "pre_score"):
        status = plugin.pre_score(state, pi, feasible)
        if status is not None and status.is_skip():
            return None
        assert status is None, status
    if hasattr(plugin, "score_nodes"):
        scores = plugin.score_nodes(state, pi, feasible)
        slow = [plugin.score(state, pi, n) for n in feasible]
        assert scores == slow, "score_nodes and score disagree"
        if hasattr(plugin, "score_column"):
            column = None
            for _ in range(3):
                column = plugin.score_column(state, pi, snap)
                if column is not None:
                    break
            assert column is not None, "no score column for a repeated shape"
            assert [column[snap.slot_of[n.name]] for n in feasible] == slow, \
                "score_column and score disagree"
    else:
        scores = [plugin.score(state, pi, n) for n in feasible]
    if hasattr(plugin, "normalize_score"):
        assert plugin.normalize_score(state, pi, feasible, scores) is None
    return {n.name: s for n, s in zip(feasible, scores, strict=True)}
