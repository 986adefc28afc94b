"""InterPodAffinity: place pods near (affinity) or away from (anti-affinity) other pods,
per topology domain (a node label such as the hostname or the zone).

PreFilter counts, per (topologyKey, value) domain: existing pods whose required
anti-affinity selects the incoming pod; existing pods matching all of the
incoming pod's required affinity terms; existing pods matching each of its
anti-affinity terms. Filter then only looks the node's labels up in those
counts. A pod whose affinity matches no pod anywhere may still land if it
matches its own terms (the first pod of a group).

Score adds, per domain, the weights of preferred terms (both the incoming
pod's and the existing pods', and existing pods' required affinity with
weight ``hardPodAffinityWeight``), then scales min..max to 0..100.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from pilothouse.services.scheduler.framework import (
    MAX_NODE_SCORE,
    ClusterEvent,
    CycleState,
    Handle,
    NodeInfo,
    PodInfo,
    PreFilterResult,
    Snapshot,
    Status,
)
from pilothouse.services.scheduler.framework.types import AffinityTerm, WeightedAffinityTerm
from pilothouse.services.scheduler.plugins.names import INTER_POD_AFFINITY

__all__ = ["InterPodAffinity", "TopologyTally"]

ERR_REASON_EXISTING_ANTI_AFFINITY: Final = \
    "node(s) didn't satisfy existing pods anti-affinity rules"
ERR_REASON_AFFINITY: Final = "node(s) didn't match pod affinity rules"
ERR_REASON_ANTI_AFFINITY: Final = "node(s) didn't match pod anti-affinity rules"
_PRE_FILTER_KEY: Final = "PreFilter" + INTER_POD_AFFINITY
_PRE_SCORE_KEY: Final = "PreScore" + INTER_POD_AFFINITY
_REJECT_AFFINITY: Final = Status.unresolvable(ERR_REASON_AFFINITY, plugin=INTER_POD_AFFINITY)
_REJECT_ANTI: Final = Status.unschedulable(ERR_REASON_ANTI_AFFINITY, plugin=INTER_POD_AFFINITY)
_REJECT_EXISTING: Final = Status.unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY,
                                               plugin=INTER_POD_AFFINITY)

TopologyCounts = dict[tuple[str, str], int]


def _bump(counts: TopologyCounts, labels: Mapping[str, str], key: str, value: int) -> None:
    tv = labels.get(key)
    if tv is None:
        return
    pair = (key, tv)
    n = counts.get(pair, 0) + value
    if n == 0:
        counts.pop(pair, None)
    else:
        counts[pair] = n


def _matches_all(terms: tuple[AffinityTerm, ...], pod: PodInfo) -> bool:
    if not terms:
        return False
    return all(t.matches(pod, None) for t in terms)


class TopologyTally:
    """``TopologyCounts`` summed over a snapshot's nodes, kept across cycles.

    ``contribute(ni)`` gives one node's counts (None for none); the tally
    remembers each node's and, on ``sync``, recounts only the NodeInfos the
    snapshot's change log names (Kubernetes keeps these PreFilter inputs from
    rescanning every pod each cycle). The owner keys tallies so that every pod
    sharing one would compute the same ``contribute``.
    """

    __slots__ = ("contribute", "counts", "per_node", "position", "snapshot_uid")

    def __init__(self, contribute: Callable[[NodeInfo], TopologyCounts | None]) -> None:
        self.contribute = contribute
        self.counts: TopologyCounts = {}
        self.per_node: dict[str, TopologyCounts | None] = {}
        self.snapshot_uid = -1
        self.position = 0

    def _apply(self, contrib: TopologyCounts | None, sign: int) -> None:
        if not contrib:
            return
        counts = self.counts
        for pair, n in contrib.items():
            left = counts.get(pair, 0) + sign * n
            if left:
                counts[pair] = left
            else:
                counts.pop(pair, None)

    def sync(self, snapshot: Snapshot) -> TopologyCounts:
        """The counts for ``snapshot`` as it is now (the tally's own dict: copy to change)."""
        changed = (snapshot.changed_since(self.position)
                   if self.snapshot_uid == snapshot.uid else None)
        self.position = snapshot.changes_end
        if changed is None:
            self.snapshot_uid = snapshot.uid
            self.per_node.clear()
            self.counts = {}
            for ni in snapshot.node_info_list:
                contrib = self.contribute(ni)
                self.per_node[ni.name] = contrib
                self._apply(contrib, 1)
            return self.counts
        for name in set(changed):
            self._apply(self.per_node.pop(name, None), -1)
            changed_info = snapshot.get(name)
            if changed_info is not None:
                contrib = self.contribute(changed_info)
                self.per_node[name] = contrib
                self._apply(contrib, 1)
        return self.counts


_MAX_TALLIES: Final = 64


def _terms_key(terms: tuple[AffinityTerm, ...]) -> tuple[Any, ...]:
    return tuple((t.namespaces, t.selector.is_nothing, t.selector.requirements, t.topology_key,
                  None if t.namespace_selector is None else
                  (t.namespace_selector.is_nothing, t.namespace_selector.requirements))
                 for t in terms)


class _PreFilterState:
    __slots__ = ("affinity_counts", "affinity_terms", "anti_affinity_counts",
                 "anti_affinity_terms", "existing_anti_affinity_counts", "existing_keys",
                 "namespace_labels", "pod")

    def __init__(self, pod: PodInfo, affinity_terms: tuple[AffinityTerm, ...],
                 anti_affinity_terms: tuple[AffinityTerm, ...],
                 namespace_labels: Mapping[str, str] | None) -> None:
        self.pod = pod
        self.affinity_terms = affinity_terms
        self.anti_affinity_terms = anti_affinity_terms
        self.namespace_labels = namespace_labels
        self.existing_anti_affinity_counts: TopologyCounts = {}
        self.affinity_counts: TopologyCounts = {}
        self.anti_affinity_counts: TopologyCounts = {}
        #: The topology keys in existing_anti_affinity_counts (filter_many; None: unknown).
        self.existing_keys: tuple[str, ...] | None = None

    def clone(self) -> _PreFilterState:
        new = _PreFilterState(self.pod, self.affinity_terms, self.anti_affinity_terms,
                              self.namespace_labels)
        new.existing_anti_affinity_counts = dict(self.existing_anti_affinity_counts)
        new.affinity_counts = dict(self.affinity_counts)
        new.anti_affinity_counts = dict(self.anti_affinity_counts)
        return new

    def update_with_pod(self, other: PodInfo, ni: NodeInfo, multiplier: int) -> None:
        labels = ni.labels
        self.existing_keys = None
        for t in other.required_anti_affinity_terms:
            if t.matches(self.pod, self.namespace_labels):
                _bump(self.existing_anti_affinity_counts, labels, t.topology_key, multiplier)
        if _matches_all(self.affinity_terms, other):
            for t in self.affinity_terms:
                _bump(self.affinity_counts, labels, t.topology_key, multiplier)
        for t in self.anti_affinity_terms:
            if t.matches(other, None):
                _bump(self.anti_affinity_counts, labels, t.topology_key, multiplier)


def _existing_anti_counts(ni: NodeInfo, pod: PodInfo,
                          ns_labels: Mapping[str, str] | None) -> TopologyCounts | None:
    """Per domain of ``ni``: its pods' required anti-affinity terms selecting ``pod``."""
    if not ni.pods_with_required_anti_affinity:
        return None
    out: TopologyCounts = {}
    labels = ni.labels
    for other in ni.pods_with_required_anti_affinity:
        for t in other.required_anti_affinity_terms:
            if t.matches(pod, ns_labels):
                _bump(out, labels, t.topology_key, 1)
    return out or None


def _affinity_counts(ni: NodeInfo, terms: tuple[AffinityTerm, ...]) -> TopologyCounts | None:
    """Per domain of ``ni``: its pods matching all of ``terms``."""
    out: TopologyCounts = {}
    labels = ni.labels
    for other in ni.pods:
        if _matches_all(terms, other):
            for t in terms:
                _bump(out, labels, t.topology_key, 1)
    return out or None


def _anti_affinity_counts(ni: NodeInfo,
                          terms: tuple[AffinityTerm, ...]) -> TopologyCounts | None:
    """Per domain of ``ni``: its pods matching each of ``terms``."""
    out: TopologyCounts = {}
    labels = ni.labels
    for other in ni.pods:
        for t in terms:
            if t.matches(other, None):
                _bump(out, labels, t.topology_key, 1)
    return out or None


class InterPodAffinity:
    name = INTER_POD_AFFINITY

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        args = dict(args or {})
        self.handle = handle or Handle()
        self.hard_pod_affinity_weight = int(args.get("hardPodAffinityWeight", 1))
        if not 0 <= self.hard_pod_affinity_weight <= 100:
            raise ValueError("hardPodAffinityWeight: must be in the range 0-100")
        self.ignore_preferred_terms_of_existing_pods = bool(
            args.get("ignorePreferredTermsOfExistingPods", False))
        self._tallies: dict[tuple[Any, ...], TopologyTally] = {}

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent("Pod", "*"), ClusterEvent("Node", "Add"),
                ClusterEvent("Node", "Update")]

    def _merge_namespaces(self, terms: tuple[AffinityTerm, ...]) -> tuple[AffinityTerm, ...]:
        out = []
        for t in terms:
            if t.namespace_selector is not None:
                t = t.with_namespaces(self.handle.namespaces_matching(t.namespace_selector))
            out.append(t)
        return tuple(out)

    # -- Filter ----------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                   ) -> tuple[PreFilterResult | None, Status | None]:
        if pod.affinity_error:
            return None, Status.unresolvable(f"parsing pod: {pod.affinity_error}",
                                             plugin=self.name)
        snapshot = self.handle.snapshot
        with_anti = snapshot.have_pods_with_required_anti_affinity_list
        if not with_anti and not pod.required_affinity_terms and \
                not pod.required_anti_affinity_terms:
            return None, Status.skip()
        s = _PreFilterState(pod, self._merge_namespaces(pod.required_affinity_terms),
                            self._merge_namespaces(pod.required_anti_affinity_terms),
                            self.handle.namespace_labels(pod.namespace))
        ns_labels = s.namespace_labels
        if with_anti:
            # Existing pods' required anti-affinity terms that select this pod: the same
            # for every pod with this namespace (and its labels) and these labels.
            key: tuple[Any, ...] = (
                "existing", pod.namespace, frozenset(pod.labels.items()),
                None if ns_labels is None else frozenset(ns_labels.items()))
            s.existing_anti_affinity_counts = dict(self._tally(
                key, lambda ni: _existing_anti_counts(ni, pod, ns_labels)).sync(snapshot))
        existing = s.existing_anti_affinity_counts
        aff, anti = s.affinity_terms, s.anti_affinity_terms
        if aff:
            s.affinity_counts = dict(self._tally(
                ("affinity", _terms_key(aff)),
                lambda ni: _affinity_counts(ni, aff)).sync(snapshot))
        if anti:
            s.anti_affinity_counts = dict(self._tally(
                ("anti", _terms_key(anti)),
                lambda ni: _anti_affinity_counts(ni, anti)).sync(snapshot))
        if not existing and not s.affinity_terms and not s.anti_affinity_terms:
            return None, Status.skip()
        state.write(_PRE_FILTER_KEY, s)
        return None, None

    def _tally(self, key: tuple[Any, ...],
               contribute: Callable[[NodeInfo], TopologyCounts | None]) -> TopologyTally:
        tally = self._tallies.get(key)
        if tally is None:
            if len(self._tallies) >= _MAX_TALLIES:
                self._tallies.clear()
            tally = self._tallies[key] = TopologyTally(contribute)
        return tally

    def add_pod(self, state: CycleState, pod: PodInfo, pod_to_add: PodInfo,
                node_info: NodeInfo) -> Status | None:
        s: _PreFilterState | None = state.get(_PRE_FILTER_KEY)
        if s is not None:
            s.update_with_pod(pod_to_add, node_info, 1)
        return None

    def remove_pod(self, state: CycleState, pod: PodInfo, pod_to_remove: PodInfo,
                   node_info: NodeInfo) -> Status | None:
        s: _PreFilterState | None = state.get(_PRE_FILTER_KEY)
        if s is not None:
            s.update_with_pod(pod_to_remove, node_info, -1)
        return None

    def filter(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> Status | None:
        s: _PreFilterState | None = state.get(_PRE_FILTER_KEY)
        if s is None:
            return Status.as_error("InterPodAffinity: no PreFilter state", self.name)
        labels = ni.labels
        if s.affinity_terms:
            pods_exist = True
            for t in s.affinity_terms:
                tv = labels.get(t.topology_key)
                if tv is None:
                    return _REJECT_AFFINITY  # every topology label must exist on the node
                if s.affinity_counts.get((t.topology_key, tv), 0) <= 0:
                    pods_exist = False
            if not pods_exist and not (not s.affinity_counts and
                                       _matches_all(s.affinity_terms, pod)):
                return _REJECT_AFFINITY
        if s.anti_affinity_counts:
            for t in s.anti_affinity_terms:
                tv = labels.get(t.topology_key)
                if tv is not None and s.anti_affinity_counts.get((t.topology_key, tv), 0) > 0:
                    return _REJECT_ANTI
        existing = s.existing_anti_affinity_counts
        if existing:
            # Look the node's few labels up in the counts (not the counts in the labels:
            # the counts grow with every pod placed).
            if len(existing) > len(labels):
                for pair in labels.items():
                    if existing.get(pair, 0) > 0:
                        return _REJECT_EXISTING
            else:
                for (key, value), n in existing.items():
                    if n > 0 and labels.get(key) == value:
                        return _REJECT_EXISTING
        return None

    def filter_many(self, state: CycleState, pod: PodInfo,
                    nodes: list[NodeInfo]) -> list[Status | None]:
        """``filter`` per node: each node's few topology values looked up in the counts."""
        s: _PreFilterState | None = state.get(_PRE_FILTER_KEY)
        if s is None or s.affinity_terms:
            return [self.filter(state, pod, ni) for ni in nodes]
        anti_counts = s.anti_affinity_counts
        anti_keys = (tuple(dict.fromkeys(t.topology_key for t in s.anti_affinity_terms))
                     if anti_counts else ())
        existing = s.existing_anti_affinity_counts
        if s.existing_keys is None:
            s.existing_keys = tuple({key for key, _ in existing})
        existing_keys = s.existing_keys if existing else ()
        out: list[Status | None] = []
        append = out.append
        for ni in nodes:
            labels = ni.labels
            verdict: Status | None = None
            for key in anti_keys:
                tv = labels.get(key)
                if tv is not None and anti_counts.get((key, tv), 0) > 0:
                    verdict = _REJECT_ANTI
                    break
            if verdict is None:
                for key in existing_keys:
                    tv = labels.get(key)
                    if tv is not None and existing.get((key, tv), 0) > 0:
                        verdict = _REJECT_EXISTING
                        break
            append(verdict)
        return out

    # -- Score -----------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        if not nodes:
            return Status.skip()
        has_constraints = bool(pod.preferred_affinity_terms or
                               pod.preferred_anti_affinity_terms)
        if self.ignore_preferred_terms_of_existing_pods and not has_constraints:
            return Status.skip()
        snapshot = self.handle.snapshot
        all_nodes = (snapshot.node_info_list if has_constraints
                     else snapshot.have_pods_with_affinity_list)
        preferred = tuple(WeightedAffinityTerm(t, w.weight) for w in
                          pod.preferred_affinity_terms
                          for t in self._merge_namespaces((w.term,)))
        preferred_anti = tuple(WeightedAffinityTerm(t, w.weight) for w in
                               pod.preferred_anti_affinity_terms
                               for t in self._merge_namespaces((w.term,)))
        ns_labels = self.handle.namespace_labels(pod.namespace)
        hard = self.hard_pod_affinity_weight

        def contribute(ni: NodeInfo) -> TopologyCounts | None:
            """This node's weights per (key, value), and per ("\0" + key, value) how
            many terms matched there (a domain whose weights cancel still counts)."""
            labels = ni.labels
            if not labels:
                return None
            out: TopologyCounts = {}

            def process(term: AffinityTerm, weight: int, target: PodInfo,
                        target_ns_labels: Mapping[str, str] | None) -> None:
                if not term.matches(target, target_ns_labels):
                    return
                tv = labels.get(term.topology_key)
                if tv is None:
                    return
                pair = (term.topology_key, tv)
                out[pair] = out.get(pair, 0) + weight
                mark = ("\0" + term.topology_key, tv)
                out[mark] = out.get(mark, 0) + 1

            for other in (ni.pods if has_constraints else ni.pods_with_affinity):
                for w in preferred:
                    process(w.term, w.weight, other, None)
                for w in preferred_anti:
                    process(w.term, -w.weight, other, None)
                if hard > 0:
                    for t in other.required_affinity_terms:
                        process(t, hard, pod, ns_labels)
                for w in other.preferred_affinity_terms:
                    process(w.term, w.weight, pod, ns_labels)
                for w in other.preferred_anti_affinity_terms:
                    process(w.term, -w.weight, pod, ns_labels)
            return out or None

        topo: dict[str, dict[str, int]] = {}
        if has_constraints or all_nodes:
            # Every input of ``contribute`` is in the key: pods sharing it share the tally.
            key: tuple[Any, ...] = (
                "score", has_constraints, pod.namespace, frozenset(pod.labels.items()),
                None if ns_labels is None else frozenset(ns_labels.items()), hard,
                tuple((_terms_key((w.term,)), w.weight) for w in preferred),
                tuple((_terms_key((w.term,)), w.weight) for w in preferred_anti))
            for (tkey, tv), n in self._tally(key, contribute).sync(snapshot).items():
                if tkey.startswith("\0"):
                    topo.setdefault(tkey[1:], {}).setdefault(tv, 0)
                else:
                    values = topo.setdefault(tkey, {})
                    values[tv] = values.get(tv, 0) + n
        if not topo:
            return Status.skip()
        state.write(_PRE_SCORE_KEY, topo)
        return None

    def score(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> int:
        topo: dict[str, dict[str, int]] = state.get(_PRE_SCORE_KEY, {})
        total = 0
        labels = ni.labels
        for key, values in topo.items():
            tv = labels.get(key)
            if tv is not None:
                total += values.get(tv, 0)
        return total

    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                        scores: list[int]) -> Status | None:
        if not scores:
            return None
        lo, hi = min(scores), max(scores)
        diff = hi - lo
        if diff > 0:
            scores[:] = [int(MAX_NODE_SCORE * ((s - lo) / diff)) for s in scores]
        else:
            scores[:] = [0] * len(scores)
        return None
