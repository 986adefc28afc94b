"""NodeAffinity: ``nodeSelector`` and required node affinity filter; preferred terms score.

Filter: the node's labels must carry every ``nodeSelector`` pair and satisfy
one of the required ``nodeSelectorTerms`` (plus the profile's
``addedAffinity``). Terms that pin ``metadata.name`` narrow the nodes at
PreFilter. Score: the sum of the weights of the preferred terms the node
matches, scaled so the best node gets 100.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pilothouse.api.selectors import CompiledNodeSelector, compile_node_selector
from pilothouse.services.scheduler.framework import (
    MAX_NODE_SCORE,
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
from pilothouse.services.scheduler.plugins.helpers import default_normalize_score
from pilothouse.services.scheduler.plugins.names import NODE_AFFINITY

__all__ = ["NodeAffinity", "RequiredNodeAffinity"]

ERR_REASON_POD: Final = "node(s) didn't match Pod's node affinity/selector"
ERR_REASON_ENFORCED: Final = "node(s) didn't match scheduler-enforced node affinity"
ERR_REASON_CONFLICT: Final = "pod affinity terms conflict"
_PRE_FILTER_KEY: Final = "PreFilter" + NODE_AFFINITY
_PRE_SCORE_KEY: Final = "PreScore" + NODE_AFFINITY
_REJECT_POD: Final = Status.unresolvable(ERR_REASON_POD, plugin=NODE_AFFINITY)
_REJECT_ENFORCED: Final = Status.unresolvable(ERR_REASON_ENFORCED, plugin=NODE_AFFINITY)
_NO_FIELDS: Final[dict[str, str]] = {}


#: Verdict memos of RequiredNodeAffinity by signature (see ``matches_memo``).
_MEMOS: dict[tuple[tuple[tuple[str, str], ...], bytes], dict[str, tuple[dict[str, str], bool]]] \
    = {}
_MAX_MEMOS: Final = 256
#: Compiled required node selectors by their serialized form (compiled selectors are
#: read-only).
_COMPILED: dict[bytes, CompiledNodeSelector] = {}


class RequiredNodeAffinity:
    """A pod's nodeSelector and required node affinity, compiled (Kubernetes'
    ``GetRequiredNodeAffinity``); also used by PodTopologySpread.

    ``matches_memo`` gives ``matches`` remembered per node: a verdict depends only
    on the node's name and labels, and a NodeInfo's ``labels`` dict is replaced
    (never changed in place) when its node changes, so a verdict stays valid while
    ``ni.labels`` is the same object. Memos are shared by every pod with the same
    nodeSelector and required terms (a Deployment's replicas)."""

    __slots__ = ("key", "memo", "node_selector", "required", "uses_fields")

    def __init__(self, pod: PodInfo) -> None:
        spec = pod.pod.spec
        self.node_selector: tuple[tuple[str, str], ...] = tuple(sorted(spec.nodeSelector.items()))
        self.required: CompiledNodeSelector | None = None
        self.uses_fields = False
        raw = b""
        if spec.HasField("affinity") and spec.affinity.HasField("nodeAffinity") and \
                spec.affinity.nodeAffinity.HasField(
                    "requiredDuringSchedulingIgnoredDuringExecution"):
            req = spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
            raw = b"r" + req.SerializeToString(deterministic=True)
            # Compiled once per distinct selector (a Deployment's replicas share it).
            compiled = _COMPILED.get(raw)
            if compiled is None:
                if len(_COMPILED) >= _MAX_MEMOS:
                    _COMPILED.clear()
                compiled = _COMPILED[raw] = compile_node_selector(req)
            self.required = compiled
            self.uses_fields = any(not t.field_selector.empty for t in compiled.terms)
        #: Equal for pods whose nodeSelector and required terms are equal.
        self.key = key = (self.node_selector, raw)
        memo = _MEMOS.get(key)
        if memo is None:
            if len(_MEMOS) >= _MAX_MEMOS:
                _MEMOS.clear()
            memo = _MEMOS[key] = {}
        self.memo = memo

    def matches_memo(self, ni: NodeInfo) -> bool:
        """``matches(ni)``, remembered while the node's labels object stays the same."""
        e = self.memo.get(ni.name)
        if e is not None and e[0] is ni.labels:
            return e[1]
        ok = self.matches(ni)
        self.memo[ni.name] = (ni.labels, ok)
        return ok

    @property
    def empty(self) -> bool:
        return not self.node_selector and self.required is None

    def matches(self, ni: NodeInfo) -> bool:
        labels = ni.labels
        for k, v in self.node_selector:
            if labels.get(k) != v:
                return False
        if self.required is None:
            return True
        fields = {"metadata.name": ni.name} if self.uses_fields else _NO_FIELDS
        return self.required.matches(labels, fields)


@dataclass(slots=True)
class _PreFilterState:
    required: RequiredNodeAffinity


class NodeAffinity:
    name = NODE_AFFINITY
    #: Scores in [0, 100] by construction (the framework skips its range check).
    SCORES_IN_RANGE: Final = True

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        args = dict(args or {})
        self.added_required: CompiledNodeSelector | None = None
        self.added_preferred: list[tuple[int, CompiledNodeSelector]] = []
        added = args.get("addedAffinity")
        if added:
            if not isinstance(added, Mapping):
                raise ValueError("addedAffinity must be an object")
            req = added.get("requiredDuringSchedulingIgnoredDuringExecution")
            if req:
                self.added_required = compile_node_selector(req)
                if self.added_required.errors:
                    raise ValueError("addedAffinity: " + "; ".join(self.added_required.errors))
            for i, p in enumerate(added.get("preferredDuringSchedulingIgnoredDuringExecution")
                                  or []):
                sel = compile_node_selector({"nodeSelectorTerms": [p.get("preference") or {}]})
                if sel.errors:
                    raise ValueError(f"addedAffinity.preferred[{i}]: " + "; ".join(sel.errors))
                self.added_preferred.append((int(p.get("weight", 0)), sel))
        self._columns: ColumnStore[FilterColumn] = ColumnStore(FilterColumn)

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent("Node", "Add"), ClusterEvent("Node", "Update"),
                ClusterEvent("Pod", "Update")]

    # -- Filter --------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                   ) -> tuple[PreFilterResult | None, Status | None]:
        required = RequiredNodeAffinity(pod)
        if required.empty and self.added_required is None:
            return None, Status.skip()
        state.write(_PRE_FILTER_KEY, _PreFilterState(required))
        if required.required is None:
            return None, None
        node_names: set[str] | None = None
        aff = pod.pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
        for term in aff.nodeSelectorTerms:
            term_names: set[str] | None = None
            for r in term.matchFields:
                if r.key == "metadata.name" and r.operator == "In":
                    values = set(r.values)
                    term_names = values if term_names is None else term_names & values
            if term_names is None:
                return None, None  # this term allows any node name: terms are ORed
            node_names = term_names if node_names is None else node_names | term_names
        if node_names is not None and not node_names:
            return None, Status.unresolvable(ERR_REASON_CONFLICT, plugin=self.name)
        if node_names is not None:
            return PreFilterResult(frozenset(node_names)), None
        return None, None

    def filter(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> Status | None:
        if self.added_required is not None and not self.added_required.matches(
                ni.labels, {"metadata.name": ni.name}):
            return _REJECT_ENFORCED
        s: _PreFilterState | None = state.get(_PRE_FILTER_KEY)
        required = s.required if s is not None else RequiredNodeAffinity(pod)
        return None if required.matches_memo(ni) else _REJECT_POD

    def filter_many(self, state: CycleState, pod: PodInfo,
                    nodes: list[NodeInfo]) -> list[Status | None]:
        s: _PreFilterState | None = state.get(_PRE_FILTER_KEY)
        if self.added_required is not None or s is None:
            return [self.filter(state, pod, ni) for ni in nodes]
        required = s.required
        memo = required.memo
        out: list[Status | None] = []
        append = out.append
        for ni in nodes:
            e = memo.get(ni.name)
            if e is not None and e[0] is ni.labels:
                append(None if e[1] else _REJECT_POD)
            else:
                append(None if required.matches_memo(ni) else _REJECT_POD)
        return out

    def filter_column(self, state: CycleState, pod: PodInfo,
                      snapshot: Snapshot) -> FilterColumn | None:
        s: _PreFilterState | None = state.get(_PRE_FILTER_KEY)
        if s is None:
            return None
        required = s.required
        added = self.added_required

        def make() -> Any:
            def verdict(ni: NodeInfo) -> Status | None:
                if added is not None and not added.matches(ni.labels,
                                                            {"metadata.name": ni.name}):
                    return _REJECT_ENFORCED
                return None if required.matches(ni) else _REJECT_POD
            return verdict
        # The verdict depends on the node and the pod's nodeSelector/required terms only.
        return self._columns.get(snapshot, required.key, make)

    # -- Score ---------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        preferred = list(self.added_preferred)
        spec = pod.pod.spec
        if spec.HasField("affinity") and spec.affinity.HasField("nodeAffinity"):
            for p in spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution:
                if p.weight == 0:
                    continue
                sel = compile_node_selector(_single_term(p.preference))
                preferred.append((p.weight, sel))
        if not preferred:
            return Status.skip()
        state.write(_PRE_SCORE_KEY, preferred)
        return None

    def score(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> int:
        preferred: list[tuple[int, CompiledNodeSelector]] = state.get(_PRE_SCORE_KEY, [])
        total = 0
        fields = {"metadata.name": ni.name}
        for weight, sel in preferred:
            if sel.matches(ni.labels, fields):
                total += weight
        return total

    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                        scores: list[int]) -> Status | None:
        return default_normalize_score(MAX_NODE_SCORE, False, scores)


def _single_term(term: Any) -> Any:
    from pilothouse.gen.k8s.core.v1 import core_pb2

    sel = core_pb2.NodeSelector()
    sel.nodeSelectorTerms.add().CopyFrom(term)
    return sel
