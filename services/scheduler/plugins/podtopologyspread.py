"""PodTopologySpread: spread matching pods evenly over topology domains (zones, nodes).

For each constraint, a domain is a value of ``topologyKey`` on the eligible
nodes (those with every constraint's key, and, by the inclusion policies,
matching the pod's node affinity / tolerating the node's taints). Filter
(``whenUnsatisfiable: DoNotSchedule``): placing the pod in the node's domain
must keep ``matching pods there + 1 - the minimum over domains <= maxSkew``;
with fewer than ``minDomains`` domains the minimum counts as 0. Score
(``ScheduleAnyway``, and the system default constraints for pods owned by a
Service/ReplicaSet/StatefulSet): fewer matching pods in the node's domains
is better, each constraint weighted by log(number of domains + 2).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pilothouse.api.selectors import (
    LabelSelector,
    Operator,
    Requirement,
    SelectorError,
    label_selector_from_api,
)
from pilothouse.services.scheduler.framework import (
    MAX_NODE_SCORE,
    ClusterEvent,
    CycleState,
    DomainColumn,
    Handle,
    NodeInfo,
    PodInfo,
    PreFilterResult,
    Snapshot,
    Status,
)
from pilothouse.services.scheduler.framework.types import LABEL_HOSTNAME, LABEL_ZONE
from pilothouse.services.scheduler.plugins.names import POD_TOPOLOGY_SPREAD
from pilothouse.services.scheduler.plugins.nodeaffinity import RequiredNodeAffinity

__all__ = ["SYSTEM_DEFAULT_CONSTRAINTS", "Constraint", "PodTopologySpread", "SpreadCounts"]

ERR_REASON_CONSTRAINTS: Final = "node(s) didn't match pod topology spread constraints"
ERR_REASON_LABEL: Final = ("node(s) didn't match pod topology spread constraints "
                           "(missing required label)")
_PRE_FILTER_KEY: Final = "PreFilter" + POD_TOPOLOGY_SPREAD
_PRE_SCORE_KEY: Final = "PreScore" + POD_TOPOLOGY_SPREAD
_REJECT: Final = Status.unschedulable(ERR_REASON_CONSTRAINTS, plugin=POD_TOPOLOGY_SPREAD)
_REJECT_LABEL: Final = Status.unresolvable(ERR_REASON_LABEL, plugin=POD_TOPOLOGY_SPREAD)
_NO_MIN: Final = 2**31 - 1

#: (topologyKey, maxSkew) of Kubernetes' system defaults, both ScheduleAnyway.
SYSTEM_DEFAULT_CONSTRAINTS: Final = ((LABEL_HOSTNAME, 3), (LABEL_ZONE, 5))


@dataclass(frozen=True)
class Constraint:
    max_skew: int
    topology_key: str
    selector: LabelSelector
    min_domains: int = 1
    honor_node_affinity: bool = True
    honor_node_taints: bool = False

    def includes(self, pod: PodInfo, ni: NodeInfo, required: RequiredNodeAffinity) -> bool:
        """Whether ``ni`` counts for this constraint (nodeAffinityPolicy/nodeTaintsPolicy)."""
        if self.honor_node_affinity and not required.matches(ni):
            return False
        if self.honor_node_taints and ni.schedule_taints:
            tolerations = pod.tolerations
            for taint in ni.schedule_taints:
                if not any(t.tolerates(taint) for t in tolerations):
                    return False
        return True


def count_matching(pods: list[PodInfo], selector: LabelSelector, namespace: str) -> int:
    n = 0
    for p in pods:
        if p.namespace == namespace and not p.terminating and selector.matches(p.labels):
            n += 1
    return n


def _has_all_keys(labels: Mapping[str, str], constraints: list[Constraint]) -> bool:
    return all(c.topology_key in labels for c in constraints)


def constraints_of(pod: PodInfo, action: str) -> list[Constraint]:
    """The pod's own constraints with ``whenUnsatisfiable == action``."""
    out = []
    for c in pod.pod.spec.topologySpreadConstraints:
        if c.whenUnsatisfiable != action:
            continue
        selector = (label_selector_from_api(c.labelSelector) if c.HasField("labelSelector")
                    else LabelSelector.nothing())
        extra = [Requirement(k, Operator.IN, (pod.labels[k],)) for k in c.matchLabelKeys
                 if k in pod.labels]
        if extra and not selector.is_nothing:
            selector = selector.add(*extra)
        out.append(Constraint(
            max_skew=c.maxSkew, topology_key=c.topologyKey, selector=selector,
            min_domains=c.minDomains if c.HasField("minDomains") else 1,
            honor_node_affinity=(c.nodeAffinityPolicy or "Honor") == "Honor",
            honor_node_taints=(c.nodeTaintsPolicy or "Ignore") == "Honor"))
    return out


_Contribution = tuple[tuple[str, int] | None, ...]


class SpreadCounts:
    """Matching pods per topology domain for one constraint list, kept across cycles.

    What ``pre_filter`` would count by walking every node and its pods, updated
    from the snapshot's change log: only the NodeInfos that changed since the last
    cycle are recounted (the node the previous pod went to, nodes whose pods the
    informer saw), as Kubernetes keeps its PreFilter inputs cheap. Per node it
    remembers its contribution (domain and matching pods per constraint, or None
    where the node is not counted), so a change is "subtract old, add new". A
    domain stays present (possibly at 0) while any counted node is in it.

    Valid for every pod with the same namespace, constraints (key, selector,
    policies), required node affinity and (when taints are honoured) tolerations:
    that is the memo key.
    """

    __slots__ = ("constraints", "counts", "members", "namespace", "per_node", "pod",
                 "position", "required", "snapshot_uid")

    def __init__(self, pod: PodInfo, constraints: list[Constraint],
                 required: RequiredNodeAffinity) -> None:
        self.pod = pod  # any pod of the key: its tolerations and namespace are the key's
        self.namespace = pod.namespace
        self.constraints = constraints
        self.required = required
        self.per_node: dict[str, _Contribution | None] = {}
        self.counts: list[dict[str, int]] = [{} for _ in constraints]
        self.members: list[dict[str, int]] = [{} for _ in constraints]
        self.snapshot_uid = -1
        self.position = 0

    def _contribution(self, ni: NodeInfo) -> _Contribution | None:
        labels = ni.labels
        if not _has_all_keys(labels, self.constraints):
            return None
        out: list[tuple[str, int] | None] = []
        for c in self.constraints:
            if not c.includes(self.pod, ni, self.required):
                out.append(None)
                continue
            out.append((labels[c.topology_key],
                        count_matching(ni.pods, c.selector, self.namespace)))
        return tuple(out)

    def _apply(self, contrib: _Contribution | None, sign: int) -> None:
        if contrib is None:
            return
        for i, entry in enumerate(contrib):
            if entry is None:
                continue
            domain, n = entry
            members, counts = self.members[i], self.counts[i]
            left = members.get(domain, 0) + sign
            if left:
                members[domain] = left
                counts[domain] = counts.get(domain, 0) + sign * n
            else:
                del members[domain]
                del counts[domain]

    def sync(self, snapshot: Snapshot) -> None:
        """Bring the counts up to date with ``snapshot``."""
        changed = (snapshot.changed_since(self.position)
                   if self.snapshot_uid == snapshot.uid else None)
        self.position = snapshot.changes_end
        if changed is None:
            self.snapshot_uid = snapshot.uid
            self.per_node.clear()
            self.counts = [{} for _ in self.constraints]
            self.members = [{} for _ in self.constraints]
            for ni in snapshot.node_info_list:
                contrib = self._contribution(ni)
                self.per_node[ni.name] = contrib
                self._apply(contrib, 1)
            return
        for name in set(changed):
            self._apply(self.per_node.pop(name, None), -1)
            changed_info = snapshot.get(name)
            if changed_info is not None:
                contrib = self._contribution(changed_info)
                self.per_node[name] = contrib
                self._apply(contrib, 1)


_MAX_MEMOS: Final = 64


class _PreFilterState:
    __slots__ = ("constraints", "counts", "domains", "mins", "required", "self_match")

    def __init__(self, constraints: list[Constraint], required: RequiredNodeAffinity) -> None:
        self.constraints = constraints
        self.required = required
        self.counts: list[dict[str, int]] = [{} for _ in constraints]
        self.mins: list[int | None] = [None] * len(constraints)
        self.self_match: list[int] = []
        self.domains: list[int] = []

    def clone(self) -> _PreFilterState:
        new = _PreFilterState(self.constraints, self.required)
        new.counts = [dict(c) for c in self.counts]
        new.mins = list(self.mins)
        new.self_match = self.self_match
        return new

    def min_match(self, i: int) -> int:
        m = self.mins[i]
        if m is None:
            m = min(self.counts[i].values(), default=_NO_MIN)
            self.mins[i] = m
        if len(self.counts[i]) < self.constraints[i].min_domains:
            return 0
        return m

    def update_with_pod(self, preemptor: PodInfo, other: PodInfo, ni: NodeInfo,
                        delta: int) -> None:
        if other.namespace != preemptor.namespace:
            return
        if not _has_all_keys(ni.labels, self.constraints):
            return
        for i, c in enumerate(self.constraints):
            if not c.selector.matches(other.labels):
                continue
            if not c.includes(preemptor, ni, self.required):
                continue
            v = ni.labels[c.topology_key]
            self.counts[i][v] = self.counts[i].get(v, 0) + delta
            self.mins[i] = None


@dataclass
class _PreScoreState:
    constraints: list[Constraint]
    ignored: set[str]
    counts: list[dict[str, int]]
    weights: list[float]


class PodTopologySpread:
    name = POD_TOPOLOGY_SPREAD

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        args = dict(args or {})
        self.handle = handle or Handle()
        self.defaulting_type = args.get("defaultingType", "System")
        if self.defaulting_type not in ("System", "List"):
            raise ValueError(f"defaultingType: unsupported value {self.defaulting_type!r}: "
                             "supported values: System, List")
        self.default_constraints: list[tuple[str, int, str]] = []
        for i, c in enumerate(args.get("defaultConstraints") or []):
            if not isinstance(c, Mapping) or "labelSelector" in c:
                raise ValueError(f"defaultConstraints[{i}]: must be an object without "
                                 "labelSelector")
            if c.get("whenUnsatisfiable") not in ("DoNotSchedule", "ScheduleAnyway"):
                raise ValueError(f"defaultConstraints[{i}].whenUnsatisfiable: must be "
                                 "DoNotSchedule or ScheduleAnyway")
            self.default_constraints.append((str(c.get("topologyKey", "")),
                                             int(c.get("maxSkew", 1)),
                                             c["whenUnsatisfiable"]))
        if self.defaulting_type == "System" and self.default_constraints:
            raise ValueError("defaultConstraints must be empty when defaultingType is System")
        self.system_defaulted = self.defaulting_type == "System"
        self._counters: dict[tuple[Any, ...], SpreadCounts] = {}
        self._domains: dict[str, DomainColumn] = {}
        self._parsed: dict[tuple[Any, ...], tuple[Constraint, ...]] = {}

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent("Pod", "*"), ClusterEvent("Node", "Add"),
                ClusterEvent("Node", "Update"), ClusterEvent("Node", "Delete")]

    def _constraints(self, pod: PodInfo, action: str) -> list[Constraint]:
        own = pod.pod.spec.topologySpreadConstraints
        if own:
            # Parsed once per distinct constraint list (and the pod labels that
            # matchLabelKeys read): the replicas of a workload share it.
            key = (action, pod.namespace,
                   b"\0".join(c.SerializeToString(deterministic=True) for c in own),
                   tuple(sorted(pod.labels.items()))
                   if any(c.matchLabelKeys for c in own) else None)
            parsed = self._parsed.get(key)
            if parsed is None:
                if len(self._parsed) >= _MAX_MEMOS:
                    self._parsed.clear()
                parsed = self._parsed[key] = tuple(constraints_of(pod, action))
            return list(parsed)
        # Default constraints: only for pods some Service/ReplicaSet/StatefulSet selects.
        if self.system_defaulted:
            defaults = [(k, skew, "ScheduleAnyway") for k, skew in SYSTEM_DEFAULT_CONSTRAINTS]
        else:
            defaults = self.default_constraints
        defaults = [d for d in defaults if d[2] == action]
        if not defaults:
            return []
        selectors = self.handle.owner_selectors(pod)
        if not selectors:
            return []
        reqs: list[Requirement] = []
        for sel in selectors:
            reqs.extend(sel.requirements)
        selector = LabelSelector(reqs)
        return [Constraint(skew, key, selector) for key, skew, _ in defaults]

    # -- Filter ------------------------------------------------------------------------

    def _counter(self, pod: PodInfo, constraints: list[Constraint],
                 required: RequiredNodeAffinity) -> SpreadCounts:
        """The cross-cycle counts for pods like ``pod`` (see ``SpreadCounts``)."""
        key: tuple[Any, ...] = (
            pod.namespace,
            tuple((c.topology_key, c.selector.is_nothing, c.selector.requirements,
                   c.honor_node_affinity, c.honor_node_taints) for c in constraints),
            required.key if any(c.honor_node_affinity for c in constraints) else None,
            pod.tolerations if any(c.honor_node_taints for c in constraints) else None)
        counter = self._counters.get(key)
        if counter is None:
            if len(self._counters) >= _MAX_MEMOS:
                self._counters.clear()
            counter = self._counters[key] = SpreadCounts(pod, constraints, required)
        return counter

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                   ) -> tuple[PreFilterResult | None, Status | None]:
        try:
            constraints = self._constraints(pod, "DoNotSchedule")
        except SelectorError as exc:
            return None, Status.unresolvable(f"parsing pod: {exc}", plugin=self.name)
        if not constraints:
            return None, Status.skip()
        required = RequiredNodeAffinity(pod)
        s = _PreFilterState(constraints, required)
        counter = self._counter(pod, constraints, required)
        counter.sync(self.handle.snapshot)
        s.counts = [dict(c) for c in counter.counts]
        s.self_match = [1 if c.selector.matches(pod.labels) else 0 for c in constraints]
        state.write(_PRE_FILTER_KEY, s)
        return None, None

    def add_pod(self, state: CycleState, pod: PodInfo, pod_to_add: PodInfo,
                node_info: NodeInfo) -> Status | None:
        s: _PreFilterState | None = state.get(_PRE_FILTER_KEY)
        if s is not None:
            s.update_with_pod(pod, pod_to_add, node_info, 1)
        return None

    def remove_pod(self, state: CycleState, pod: PodInfo, pod_to_remove: PodInfo,
                   node_info: NodeInfo) -> Status | None:
        s: _PreFilterState | None = state.get(_PRE_FILTER_KEY)
        if s is not None:
            s.update_with_pod(pod, pod_to_remove, node_info, -1)
        return None

    def filter(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> Status | None:
        s: _PreFilterState | None = state.get(_PRE_FILTER_KEY)
        if s is None:
            return Status.as_error("PodTopologySpread: no PreFilter state", self.name)
        labels = ni.labels
        for i, c in enumerate(s.constraints):
            tv = labels.get(c.topology_key)
            if tv is None:
                return _REJECT_LABEL
            skew = s.counts[i].get(tv, 0) + s.self_match[i] - s.min_match(i)
            if skew > c.max_skew:
                return _REJECT
        return None

    def filter_many(self, state: CycleState, pod: PodInfo,
                    nodes: list[NodeInfo]) -> list[Status | None]:
        s: _PreFilterState | None = state.get(_PRE_FILTER_KEY)
        if s is None:
            return [self.filter(state, pod, ni) for ni in nodes]
        # A node passes a constraint when its domain's count <= maxSkew + min - self.
        checks = [(c.topology_key, s.counts[i], c.max_skew + s.min_match(i) - s.self_match[i])
                  for i, c in enumerate(s.constraints)]
        out: list[Status | None] = []
        append = out.append
        if len(checks) == 1:
            key, counts, limit = checks[0]
            for ni in nodes:
                tv = ni.labels.get(key)
                if tv is None:
                    append(_REJECT_LABEL)
                elif counts.get(tv, 0) > limit:
                    append(_REJECT)
                else:
                    append(None)
            return out
        for ni in nodes:
            labels = ni.labels
            verdict: Status | None = None
            for key, counts, limit in checks:
                tv = labels.get(key)
                if tv is None:
                    verdict = _REJECT_LABEL
                    break
                if counts.get(tv, 0) > limit:
                    verdict = _REJECT
                    break
            append(verdict)
        return out

    def filter_column(self, state: CycleState, pod: PodInfo,
                      snapshot: Snapshot) -> _SpreadColumn | None:
        """The verdict of every node from its domains: a node passes a constraint when
        its domain's count is within the limit, so the passing nodes are the union of the
        passing domains' node masks (None when a key has too many domains)."""
        s: _PreFilterState | None = state.get(_PRE_FILTER_KEY)
        if s is None:
            return None
        n = len(snapshot.node_info_list)
        passed = -1
        domain_values: list[list[str | None]] = []
        passing: list[set[str]] = []
        known: list[Iterable[str]] = []
        for i, c in enumerate(s.constraints):
            col = self._domain_column(snapshot, c.topology_key)
            masks = col.masks()
            if masks is None:
                return None
            counts = s.counts[i]
            limit = c.max_skew + s.min_match(i) - s.self_match[i]
            ok = {d for d in masks if counts.get(d, 0) <= limit}
            union = 0
            for d in ok:
                union |= masks[d]
            passed &= union
            domain_values.append(col.values)
            passing.append(ok)
            known.append(masks.keys())
        mask = (passed & ((1 << (8 * n)) - 1)).to_bytes(n, "little")
        return _SpreadColumn(_SpreadVerdicts(domain_values, passing, known), mask,
                             n - mask.count(1))

    def _domain_column(self, snapshot: Snapshot, key: str) -> DomainColumn:
        col = self._domains.get(key)
        if col is None:
            if len(self._domains) >= 8:
                self._domains.clear()
            col = self._domains[key] = DomainColumn(key)
        col.refresh(snapshot)
        return col

    # -- Score -------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        try:
            constraints = self._constraints(pod, "ScheduleAnyway")
        except SelectorError as exc:
            return Status.as_error(f"parsing pod: {exc}", self.name)
        if not constraints or not nodes:
            return Status.skip()
        require_all = bool(pod.pod.spec.topologySpreadConstraints) or not self.system_defaulted
        ignored: set[str] = set()
        counts: list[dict[str, int]] = [{} for _ in constraints]
        for ni in nodes:
            if require_all and not _has_all_keys(ni.labels, constraints):
                ignored.add(ni.name)
                continue
            for i, c in enumerate(constraints):
                if c.topology_key == LABEL_HOSTNAME:
                    continue
                counts[i].setdefault(ni.labels.get(c.topology_key, ""), 0)
        weights = []
        for i, c in enumerate(constraints):
            size = (len(nodes) - len(ignored) if c.topology_key == LABEL_HOSTNAME
                    else len(counts[i]))
            weights.append(math.log(size + 2))
        required = RequiredNodeAffinity(pod)
        for ni in self.handle.snapshot.node_info_list:
            if not required.matches(ni):
                continue
            if require_all and not _has_all_keys(ni.labels, constraints):
                continue
            for i, c in enumerate(constraints):
                if c.topology_key == LABEL_HOSTNAME or not c.includes(pod, ni, required):
                    continue
                v = ni.labels.get(c.topology_key, "")
                if v in counts[i]:
                    counts[i][v] += count_matching(ni.pods, c.selector, pod.namespace)
        state.write(_PRE_SCORE_KEY, _PreScoreState(constraints, ignored, counts, weights))
        return None

    def score(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> int:
        s: _PreScoreState = state.read(_PRE_SCORE_KEY)
        if ni.name in s.ignored:
            return 0
        total = 0.0
        labels = ni.labels
        for i, c in enumerate(s.constraints):
            tv = labels.get(c.topology_key)
            if tv is None:
                continue
            if c.topology_key == LABEL_HOSTNAME:
                cnt = count_matching(ni.pods, c.selector, pod.namespace)
            else:
                cnt = s.counts[i].get(tv, 0)
            total += cnt * s.weights[i] + (c.max_skew - 1)
        return _round_half_away(total)

    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                        scores: list[int]) -> Status | None:
        s: _PreScoreState = state.read(_PRE_SCORE_KEY)
        lo, hi = None, 0
        for ni, sc in zip(nodes, scores, strict=True):
            if ni.name in s.ignored:
                continue
            lo = sc if lo is None or sc < lo else lo
            hi = max(hi, sc)
        lo = lo or 0
        for i, ni in enumerate(nodes):
            if ni.name in s.ignored:
                scores[i] = 0
            elif hi == 0:
                scores[i] = MAX_NODE_SCORE
            else:
                scores[i] = MAX_NODE_SCORE * (hi + lo - scores[i]) // hi
        return None


class _SpreadVerdicts(Sequence["Status | None"]):
    """Filter verdicts by slot, from each constraint's domain per slot and passing
    domains: the first failing constraint decides, as in ``filter``."""

    __slots__ = ("_domains", "_known", "_passing")

    def __init__(self, domains: list[list[str | None]], passing: list[set[str]],
                 known: list[Iterable[str]]) -> None:
        self._domains = domains
        self._passing = passing
        self._known = known  # every domain value of each constraint's key

    def __getitem__(self, slot: Any) -> Any:
        for values, ok in zip(self._domains, self._passing, strict=True):
            tv = values[slot]
            if tv is None:
                return _REJECT_LABEL
            if tv not in ok:
                return _REJECT
        return None

    def __len__(self) -> int:
        return len(self._domains[0]) if self._domains else 0

    def gather(self, slots: list[int]) -> list[Status | None]:
        """The verdicts at ``slots`` (one constraint: two C-level lookups per slot)."""
        if len(self._domains) != 1:
            return list(map(self.__getitem__, slots))
        ok = self._passing[0]
        by_domain: dict[str | None, Status | None] = {
            d: (None if d in ok else _REJECT) for d in self._known[0]}
        by_domain[None] = _REJECT_LABEL
        return list(map(by_domain.__getitem__, map(self._domains[0].__getitem__, slots)))


class _SpreadColumn:
    __slots__ = ("failed", "passed", "values")

    def __init__(self, values: _SpreadVerdicts, passed: bytes, failed: int) -> None:
        self.values = values
        self.passed = passed
        self.failed = failed


def _round_half_away(x: float) -> int:
    """Go's math.Round: halves away from zero."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)
