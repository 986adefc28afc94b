"""``Framework``: one profile's plugins, run per extension point.

Built from a resolved profile (which plugins at which extension point, score
weights, plugin args) and a plugin registry. Filters run plugin-major over a
batch of nodes: each plugin sees the nodes that passed the plugins before it,
so a node's status is its first failing plugin's, exactly as running all
plugins node by node would give, with one Python loop per plugin instead of
one call chain per node.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, mul
from typing import Any

from pilothouse.services.scheduler.framework.columns import NodeSlots, VerdictColumn
from pilothouse.services.scheduler.framework.cycle_state import CycleState
from pilothouse.services.scheduler.framework.interface import (
    MAX_NODE_SCORE,
    MIN_NODE_SCORE,
    Handle,
    NodeToStatus,
    PostFilterResult,
    PreFilterResult,
)
from pilothouse.services.scheduler.framework.snapshot import Snapshot
from pilothouse.services.scheduler.framework.status import Code, Status
from pilothouse.services.scheduler.framework.types import NodeInfo, PodInfo

__all__ = [
    "EXTENSION_POINTS",
    "Framework",
    "PluginSpec",
    "ProfileConfig",
    "ScoreRecord",
]

#: Configuration key -> the method a plugin must define to be enabled there.
EXTENSION_POINTS: dict[str, str] = {
    "preEnqueue": "pre_enqueue",
    "queueSort": "sort_key",
    "preFilter": "pre_filter",
    "filter": "filter",
    "postFilter": "post_filter",
    "preScore": "pre_score",
    "score": "score",
    "reserve": "reserve",
    "permit": "permit",
    "preBind": "pre_bind",
    "bind": "bind",
    "postBind": "post_bind",
}


@dataclass(frozen=True)
class PluginSpec:
    name: str
    weight: int = 0


@dataclass
class ProfileConfig:
    """A resolved profile: enabled plugins per extension point, in order."""

    scheduler_name: str = "default-scheduler"
    plugins: dict[str, list[PluginSpec]] = field(default_factory=dict)
    plugin_args: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    percentage_of_nodes_to_score: int | None = None


@dataclass
class ScoreRecord:
    """One plugin's scores in one cycle, aligned with the scored nodes."""

    plugin: str
    weight: int
    raw: list[int]
    normalized: list[int]


ObserveFn = Callable[[str, str, float], None]


def _noop_observe(extension_point: str, status: str, seconds: float) -> None:
    return None


class Framework:
    """Runs one profile's plugins at each extension point."""

    def __init__(self, profile: ProfileConfig, registry: Mapping[str, Any], handle: Handle,
                 *, observe: ObserveFn | None = None) -> None:
        self.profile = profile
        self.profile_name = profile.scheduler_name
        self.handle = handle
        self.observe = observe or _noop_observe
        handle.framework = self
        self.plugins: dict[str, Any] = {}
        wanted: list[str] = []
        for specs in profile.plugins.values():
            for spec in specs:
                if spec.name not in wanted:
                    wanted.append(spec.name)
        for name in wanted:
            factory = registry.get(name)
            if factory is None:
                raise ValueError(f"plugin {name!r} is not registered (known: "
                                 f"{', '.join(sorted(registry))})")
            try:
                plugin = factory(profile.plugin_args.get(name), handle)
            except (ValueError, TypeError, KeyError) as exc:
                raise ValueError(f"plugin {name}: invalid args: {exc}") from exc
            self.plugins[name] = plugin
        points: dict[str, list[Any]] = {}
        self.score_weights: dict[str, int] = {}
        for point, method in EXTENSION_POINTS.items():
            points[point] = []
            for spec in profile.plugins.get(point, []):
                plugin = self.plugins[spec.name]
                if not callable(getattr(plugin, method, None)):
                    raise ValueError(f"plugin {spec.name!r} does not extend {point}")
                points[point].append(plugin)
                if point == "score":
                    weight = spec.weight or 1
                    if weight < 0:
                        raise ValueError(f"score plugin {spec.name!r}: weight must be positive")
                    self.score_weights[spec.name] = weight
        #: Score plugins whose scores are in [MIN_NODE_SCORE, MAX_NODE_SCORE] by
        #: construction (``SCORES_IN_RANGE``, in-tree plugins whose unit tables check it):
        #: their per-node range check is left out.
        self._scores_in_range = frozenset(
            spec.name for spec in profile.plugins.get("score", [])
            if getattr(self.plugins[spec.name], "SCORES_IN_RANGE", False))
        self.pre_enqueue_plugins = points["preEnqueue"]
        if len(points["queueSort"]) != 1:
            raise ValueError(f"profile {profile.scheduler_name!r}: exactly one queueSort plugin "
                             f"must be enabled, got {len(points['queueSort'])}")
        self.queue_sort = points["queueSort"][0]
        self.pre_filter_plugins = points["preFilter"]
        self.filter_plugins = points["filter"]
        self.post_filter_plugins = points["postFilter"]
        self.pre_score_plugins = points["preScore"]
        self.score_plugins = points["score"]
        self.reserve_plugins = points["reserve"]
        self.permit_plugins = points["permit"]
        self.pre_bind_plugins = points["preBind"]
        self.bind_plugins = points["bind"]
        self.post_bind_plugins = points["postBind"]
        if not self.bind_plugins:
            raise ValueError(f"profile {profile.scheduler_name!r}: at least one bind plugin "
                             "must be enabled")
        self._pf_extensions = [
            (p.name, p) for p in self.pre_filter_plugins
            if callable(getattr(p, "add_pod", None)) and callable(getattr(p, "remove_pod", None))]
        self.percentage_of_nodes_to_score = profile.percentage_of_nodes_to_score
        # Plugins waiting on Permit: pod key -> future resolved with the verdict.
        self.waiting_pods: dict[str, asyncio.Future[Status | None]] = {}

    def list_plugins(self) -> dict[str, list[str]]:
        """Enabled plugin names per extension point (for logs and explain)."""
        out: dict[str, list[str]] = {}
        for point in EXTENSION_POINTS:
            names = [s.name for s in self.profile.plugins.get(point, [])]
            if names:
                out[point] = names
        return out

    # -- queueing --------------------------------------------------------------------

    def run_pre_enqueue(self, pod: PodInfo) -> Status | None:
        for pl in self.pre_enqueue_plugins:
            try:
                status = pl.pre_enqueue(pod)
            except Exception as exc:  # a plugin bug: report, never crash the queue
                return Status.as_error(exc, pl.name)
            if status is not None and not status.is_success():
                return status.with_plugin(pl.name)
        return None

    # -- filtering -------------------------------------------------------------------

    def run_pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                       ) -> tuple[PreFilterResult | None, Status | None]:
        start = time.perf_counter()
        result: PreFilterResult | None = None
        status: Status | None = None
        for pl in self.pre_filter_plugins:
            try:
                r, s = pl.pre_filter(state, pod, nodes)
            except Exception as exc:
                status = Status.as_error(exc, pl.name)
                break
            if s is not None:
                if s.code is Code.SKIP:
                    state.skip_filter_plugins.add(pl.name)
                    continue
                if not s.is_success():
                    status = s.with_plugin(pl.name)
                    break
            if r is not None:
                result = r if result is None else result.merge(r)
                if result.node_names is not None and not result.node_names:
                    status = Status.unresolvable(
                        "node(s) didn't satisfy plugin(s) [" + pl.name + "]", plugin=pl.name)
                    break
        self.observe("PreFilter", _code_name(status), time.perf_counter() - start)
        return result, status

    def filter_columns(self, state: CycleState, pod: PodInfo, snapshot: Snapshot,
                       ) -> tuple[list[tuple[str, VerdictColumn]], int] | Status:
        """Verdict columns of the leading filter plugins (in order, skipped ones left
        out) that have one for this pod, and the index in ``filter_plugins`` of the first
        plugin that has none (``filter_nodes(..., first=that)`` runs the rest).

        A plugin may define ``filter_column(state, pod, snapshot)`` returning a
        ``VerdictColumn`` (its ``filter`` verdict for every node of the snapshot, by slot)
        or None (not for this pod: this plugin and the ones after it run per batch)."""
        skip = state.skip_filter_plugins
        out: list[tuple[str, VerdictColumn]] = []
        for i, pl in enumerate(self.filter_plugins):
            name = pl.name
            if name in skip:
                continue
            fc = getattr(pl, "filter_column", None)
            if fc is None:
                return out, i
            try:
                col = fc(state, pod, snapshot)
            except Exception as exc:
                return Status.as_error(RuntimeError(f"{name}: {exc!r}"), name)
            if col is None:
                return out, i
            out.append((name, col))
        return out, len(self.filter_plugins)

    def filter_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                     statuses: NodeToStatus, first: int = 0) -> list[NodeInfo] | Status:
        """The nodes of ``nodes`` that pass every filter, in order; failures go into
        ``statuses``. An ERROR status from a plugin is returned instead. ``first``: the
        index in ``filter_plugins`` to start at (the ones before have passed ``nodes``).

        A plugin may define ``filter_many(state, pod, nodes)`` returning one verdict
        per node (the same as calling ``filter`` on each): one call per batch instead
        of one per node."""
        skip = state.skip_filter_plugins
        survivors = nodes
        plugins = self.filter_plugins[first:] if first else self.filter_plugins
        for pl in plugins:
            name = pl.name
            if name in skip:
                continue
            many = getattr(pl, "filter_many", None)
            if many is not None:
                try:
                    verdicts = many(state, pod, survivors)
                except Exception as exc:
                    return Status.as_error(RuntimeError(f"{name}: {exc!r}"), name)
                if not any(verdicts):
                    continue  # every node passed
                kept_many: list[NodeInfo] = []
                for node, v in zip(survivors, verdicts, strict=True):
                    if v is None or v.code is Code.SUCCESS:
                        kept_many.append(node)
                    elif v.code is Code.ERROR:
                        return v.with_plugin(name)
                    else:
                        statuses[node.name] = v if v.plugin == name else v.with_plugin(name)
                survivors = kept_many
                if not survivors:
                    break
                continue
            f = pl.filter
            kept: list[NodeInfo] = []
            append = kept.append
            ni: NodeInfo | None = None
            try:
                for ni in survivors:
                    s = f(state, pod, ni)
                    if s is None:
                        append(ni)
                    elif s.code is Code.ERROR:
                        return s.with_plugin(name)
                    elif s.code is Code.SUCCESS:
                        append(ni)
                    else:
                        statuses[ni.name] = s if s.plugin == name else s.with_plugin(name)
            except Exception as exc:
                where = f" on node {ni.name}" if ni is not None else ""
                return Status.as_error(RuntimeError(f"{name}{where}: {exc!r}"), name)
            survivors = kept
            if not survivors:
                break
        return survivors

    def run_filter(self, state: CycleState, pod: PodInfo, node_info: NodeInfo,
                   ) -> Status | None:
        """Every filter on one node; the first failure (attributed) or None."""
        skip = state.skip_filter_plugins
        for pl in self.filter_plugins:
            if pl.name in skip:
                continue
            try:
                s = pl.filter(state, pod, node_info)
            except Exception as exc:
                return Status.as_error(exc, pl.name)
            if s is not None and s.code is not Code.SUCCESS:
                return s.with_plugin(pl.name)
        return None

    def run_filter_with_nominated_pods(self, state: CycleState, pod: PodInfo,
                                       node_info: NodeInfo) -> Status | None:
        """Filter as Kubernetes does when pods are nominated to the node: first with the
        nominated pods of equal or higher priority added (they will take their room),
        then without them (inter-pod affinity to them must not be relied on)."""
        nominated = [p for p in self.handle.nominated_pods_for_node(node_info.name)
                     if p.priority >= pod.priority and p.key != pod.key]
        if not nominated:
            return self.run_filter(state, pod, node_info)
        state_with = state.clone()
        info_with = node_info.clone()
        for p in nominated:
            info_with.add_pod(p)
            s = self.run_pre_filter_extension_add_pod(state_with, pod, p, info_with)
            if s is not None:
                return s
        s = self.run_filter(state_with, pod, info_with)
        if s is not None:
            return s
        return self.run_filter(state, pod, node_info)

    def run_pre_filter_extension_add_pod(self, state: CycleState, pod: PodInfo,
                                         pod_to_add: PodInfo,
                                         node_info: NodeInfo) -> Status | None:
        for name, pl in self._pf_extensions:
            if name in state.skip_filter_plugins:
                continue
            try:
                s = pl.add_pod(state, pod, pod_to_add, node_info)
            except Exception as exc:
                return Status.as_error(exc, name)
            if s is not None and not s.is_success():
                return s.with_plugin(name)
        return None

    def run_pre_filter_extension_remove_pod(self, state: CycleState, pod: PodInfo,
                                            pod_to_remove: PodInfo,
                                            node_info: NodeInfo) -> Status | None:
        for name, pl in self._pf_extensions:
            if name in state.skip_filter_plugins:
                continue
            try:
                s = pl.remove_pod(state, pod, pod_to_remove, node_info)
            except Exception as exc:
                return Status.as_error(exc, name)
            if s is not None and not s.is_success():
                return s.with_plugin(name)
        return None

    def run_post_filter(self, state: CycleState, pod: PodInfo, statuses: NodeToStatus,
                        ) -> tuple[PostFilterResult | None, Status]:
        start = time.perf_counter()
        reasons: list[str] = []
        result: PostFilterResult | None = None
        final = Status.unschedulable()
        for pl in self.post_filter_plugins:
            try:
                r, s = pl.post_filter(state, pod, statuses)
            except Exception as exc:
                final = Status.as_error(exc, pl.name)
                break
            if s is None or s.is_success():
                result, final = r, Status(Code.SUCCESS, plugin=pl.name)
                break
            if s.code is Code.ERROR:
                final = s.with_plugin(pl.name)
                break
            reasons.extend(s.reasons)
            result = r
            final = Status(s.code, *reasons, plugin=pl.name)
        self.observe("PostFilter", final.code_name, time.perf_counter() - start)
        return result, final

    # -- scoring ---------------------------------------------------------------------

    def run_pre_score(self, state: CycleState, pod: PodInfo,
                      nodes: list[NodeInfo]) -> Status | None:
        start = time.perf_counter()
        status: Status | None = None
        for pl in self.pre_score_plugins:
            try:
                s = pl.pre_score(state, pod, nodes)
            except Exception as exc:
                status = Status.as_error(exc, pl.name)
                break
            if s is not None:
                if s.code is Code.SKIP:
                    state.skip_score_plugins.add(pl.name)
                elif not s.is_success():
                    status = s.with_plugin(pl.name)
                    break
        self.observe("PreScore", _code_name(status), time.perf_counter() - start)
        return status

    def run_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                  records: list[ScoreRecord] | None = None, *,
                  snapshot: Snapshot | None = None,
                  slots: NodeSlots | None = None) -> list[int] | Status:
        """Weighted total per node (aligned with ``nodes``). With ``records``, each
        plugin's raw and normalized scores are appended to it (explain).

        With ``snapshot`` and ``slots`` (the slots of ``nodes`` in its node list), a
        plugin defining ``score_column(state, pod, snapshot)`` may return its raw score
        for every node by slot (or None: not for this pod), gathered at ``slots``."""
        start = time.perf_counter()
        n = len(nodes)
        # Weighted score lists to add up, and what every node gets alike (a plugin that
        # gave all nodes one score adds to ``offset`` instead of a pass over the nodes).
        parts: list[list[int]] = []
        offset = 0
        skip = state.skip_score_plugins
        for pl in self.score_plugins:
            name = pl.name
            if name in skip:
                continue
            try:
                many = getattr(pl, "score_nodes", None)
                column = (getattr(pl, "score_column", None) if slots is not None
                          else None)
                values = (column(state, pod, snapshot) if column is not None
                          else None)
                if values is not None:
                    assert slots is not None
                    scores = slots.gather(values)
                elif many is not None:
                    scores = many(state, pod, nodes)
                    if isinstance(scores, Status):
                        return scores.with_plugin(name)
                else:
                    f = pl.score
                    scores = [f(state, pod, ni) for ni in nodes]
                    for x in scores:
                        if x.__class__ is not int:
                            if isinstance(x, Status):
                                return x.with_plugin(name)
                            raise TypeError(f"score must be an int, got {x!r}")
                raw = list(scores) if records is not None else scores
                normalize = getattr(pl, "normalize_score", None)
                if normalize is not None:
                    s = normalize(state, pod, nodes, scores)
                    if s is not None and not s.is_success():
                        return s.with_plugin(name)
            except Exception as exc:
                return Status.as_error(exc, name)
            if len(scores) != n:
                return Status.as_error(f"plugin {name} returned {len(scores)} scores for "
                                       f"{n} nodes", name)
            if not scores:
                continue
            first = scores[0]
            same = scores.count(first) == n
            if (same and not MIN_NODE_SCORE <= first <= MAX_NODE_SCORE) or (
                    not same and name not in self._scores_in_range and
                    (min(scores) < MIN_NODE_SCORE or max(scores) > MAX_NODE_SCORE)):
                bad = next(x for x in scores if not MIN_NODE_SCORE <= x <= MAX_NODE_SCORE)
                return Status.as_error(f"plugin {name} returns an invalid score {bad}, it "
                                       f"should in the range of [{MIN_NODE_SCORE}, "
                                       f"{MAX_NODE_SCORE}] after normalizing", name)
            weight = self.score_weights[name]
            if records is not None:
                records.append(ScoreRecord(name, weight, raw, list(scores)))
            if same:
                offset += first * weight
            else:
                parts.append(scores if weight == 1 else list(map(mul, scores, repeat(weight))))
        # map()/zip()/sum() with C functions: the per-node additions run in C.
        if not parts:
            totals = [offset] * n
        elif len(parts) == 1:
            totals = list(map(add, parts[0], repeat(offset)))
        else:
            totals = list(map(sum, zip(*parts, strict=True), repeat(offset)))
        self.observe("Score", "Success", time.perf_counter() - start)
        return totals

    # -- reserve, permit, binding ----------------------------------------------------------

    def run_reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        for pl in self.reserve_plugins:
            try:
                s = pl.reserve(state, pod, node_name)
            except Exception as exc:
                return Status.as_error(exc, pl.name)
            if s is not None and not s.is_success():
                return s.with_plugin(pl.name)
        return None

    def run_unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        for pl in reversed(self.reserve_plugins):
            with contextlib.suppress(Exception):  # best effort, as in Kubernetes
                pl.unreserve(state, pod, node_name)

    def run_permit(self, state: CycleState, pod: PodInfo,
                   node_name: str) -> tuple[Status | None, float]:
        """None to go on; a WAIT status with the longest timeout; or a rejection."""
        wait = 0.0
        for pl in self.permit_plugins:
            try:
                s, timeout = pl.permit(state, pod, node_name)
            except Exception as exc:
                return Status.as_error(exc, pl.name), 0.0
            if s is None or s.is_success():
                continue
            if s.code is Code.WAIT:
                wait = max(wait, timeout)
                continue
            return s.with_plugin(pl.name), 0.0
        if wait > 0:
            self.waiting_pods[pod.key] = asyncio.get_event_loop().create_future()
            return Status(Code.WAIT), wait
        return None, 0.0

    def allow_waiting_pod(self, key: str, status: Status | None = None) -> bool:
        """Resolve a pod waiting on Permit (None allows, a status rejects)."""
        fut = self.waiting_pods.get(key)
        if fut is None or fut.done():
            return False
        fut.set_result(status)
        return True

    async def wait_on_permit(self, pod: PodInfo,
                             timeout: float) -> Status | None:  # noqa: ASYNC109
        fut = self.waiting_pods.get(pod.key)
        if fut is None:
            return None
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return Status.unschedulable("rejected due to timeout after waiting "
                                        f"{timeout:g}s at plugin permit")
        finally:
            self.waiting_pods.pop(pod.key, None)

    async def run_pre_bind(self, state: CycleState, pod: PodInfo,
                           node_name: str) -> Status | None:
        for pl in self.pre_bind_plugins:
            try:
                s = await pl.pre_bind(state, pod, node_name)
            except Exception as exc:
                return Status.as_error(exc, pl.name)
            if s is not None and not s.is_success():
                return s.with_plugin(pl.name)
        return None

    async def run_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        start = time.perf_counter()
        status: Status | None = Status.skip()
        for pl in self.bind_plugins:
            try:
                s = await pl.bind(state, pod, node_name)
            except Exception as exc:
                status = Status.as_error(exc, pl.name)
                break
            if s is not None and s.code is Code.SKIP:
                continue
            status = None if s is None or s.is_success() else s.with_plugin(pl.name)
            break
        if status is not None and status.code is Code.SKIP:
            status = Status.as_error("no bind plugin bound the pod")
        self.observe("Bind", _code_name(status), time.perf_counter() - start)
        return status

    def run_post_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        for pl in self.post_bind_plugins:
            with contextlib.suppress(Exception):  # best effort, as in Kubernetes
                pl.post_bind(state, pod, node_name)


def _code_name(status: Status | None) -> str:
    return "Success" if status is None else status.code_name
