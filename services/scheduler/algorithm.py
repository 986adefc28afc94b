"""One scheduling attempt's pure core: find feasible nodes, score them, pick one.

Kubernetes' ``schedulePod``: PreFilter; Filter over the nodes starting at a
round-robin index until ``num_feasible_nodes_to_find`` nodes fit (so a big
cluster is not scanned whole for every pod); PreScore and Score over those;
the best total wins, ties broken at random. No I/O: the scheduler wraps this.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain, compress
from operator import attrgetter, not_
from typing import cast

from pilothouse.services.scheduler.framework import (
    CycleState,
    Framework,
    NodeInfo,
    NodeSlots,
    NodeToStatus,
    PodInfo,
    ScoreRecord,
    Snapshot,
    Status,
    VerdictColumn,
)
from pilothouse.services.scheduler.framework.status import Code

__all__ = [
    "DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE",
    "Diagnosis",
    "FitError",
    "ScheduleResult",
    "SchedulingAlgorithm",
    "num_feasible_nodes_to_find",
]

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
BASE_PERCENTAGE_OF_NODES_TO_SCORE = 50
#: 0 means adaptive (Kubernetes' default).
DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE = 0

NO_NODE_AVAILABLE = "0/{} nodes are available"


def num_feasible_nodes_to_find(percentage: int | None, num_all_nodes: int) -> int:
    """How many feasible nodes to find before scoring (Kubernetes' adaptive rule).

    Clusters under 100 nodes, or a percentage of 100, check every node. The
    adaptive default is 50% minus 1% per 125 nodes, at least 5%, at least 100 nodes.
    """
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND or (percentage or 0) >= 100:
        return num_all_nodes
    adaptive = percentage or 0
    if adaptive <= 0:
        adaptive = BASE_PERCENTAGE_OF_NODES_TO_SCORE - num_all_nodes // 125
        adaptive = max(adaptive, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    num = num_all_nodes * adaptive // 100
    return max(num, MIN_FEASIBLE_NODES_TO_FIND)


@dataclass
class Diagnosis:
    node_to_status: NodeToStatus = field(default_factory=dict)
    #: Plugins that rejected the pod somewhere (the queue moves it back on their events).
    unschedulable_plugins: set[str] = field(default_factory=set)
    pre_filter_msg: str = ""
    post_filter_msg: str = ""


class FitError(Exception):
    """The pod fits on no node; ``str()`` is Kubernetes' FailedScheduling message."""

    def __init__(self, pod: PodInfo, num_all_nodes: int, diagnosis: Diagnosis) -> None:
        super().__init__()
        self.pod = pod
        self.num_all_nodes = num_all_nodes
        self.diagnosis = diagnosis

    def histogram(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for status in self.diagnosis.node_to_status.values():
            for reason in status.reasons:
                counts[reason] += 1
        return counts

    def __str__(self) -> str:
        msg = NO_NODE_AVAILABLE.format(self.num_all_nodes) + ":"
        if self.diagnosis.pre_filter_msg:
            msg += f" {self.diagnosis.pre_filter_msg}."
        else:
            reasons = sorted(f"{n} {r}" for r, n in self.histogram().items())
            if reasons:
                msg += f" {', '.join(reasons)}."
        if self.diagnosis.post_filter_msg:
            msg += f" {self.diagnosis.post_filter_msg}."
        return msg


@dataclass
class ScheduleResult:
    suggested_host: str
    evaluated_nodes: int
    feasible_nodes: int
    #: For explain: the scored nodes (in order) and each plugin's scores.
    scored_nodes: list[str] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)
    score_records: list[ScoreRecord] = field(default_factory=list)
    node_to_status: NodeToStatus = field(default_factory=dict)


class SchedulingAlgorithm:
    """Kubernetes' ``schedulePod`` with its round-robin start index."""

    def __init__(self, *, rng: random.Random | None = None,
                 percentage_of_nodes_to_score: int | None = None) -> None:
        self.rng = rng or random.Random()
        self.percentage_of_nodes_to_score = percentage_of_nodes_to_score
        self.next_start_node_index = 0
        #: The slots of the last cycle's feasible nodes when filter columns found them
        #: (score columns then gather at them); None otherwise.
        self._slots: NodeSlots | None = None

    def schedule(self, fwk: Framework, state: CycleState, pod: PodInfo, snapshot: Snapshot,
                 *, record: bool = False) -> ScheduleResult:
        """Pick a node, or raise ``FitError`` (fits nowhere) / ``SchedulingError``."""
        all_nodes = snapshot.node_info_list
        if not all_nodes:
            raise FitError(pod, 0, Diagnosis())
        self._slots = None
        feasible, diagnosis, evaluated = self.find_nodes_that_fit(fwk, state, pod, snapshot)
        if not feasible:
            raise FitError(pod, len(all_nodes), diagnosis)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, evaluated, 1, [feasible[0].name],
                                  node_to_status=diagnosis.node_to_status)
        records: list[ScoreRecord] | None = [] if record else None
        status = fwk.run_pre_score(state, pod, feasible)
        if status is not None:
            raise SchedulingError(status)
        if self._slots is None and len(snapshot.slot_of) == len(all_nodes):
            try:
                self._slots = NodeSlots(len(all_nodes), slots=list(
                    map(snapshot.slot_of.__getitem__, map(_NAME, feasible))))
            except KeyError:  # a node from outside the snapshot's list: no columns
                self._slots = None
        totals = fwk.run_score(state, pod, feasible, records, snapshot=snapshot,
                               slots=self._slots)
        if isinstance(totals, Status):
            raise SchedulingError(totals)
        host = self.select_host(feasible, totals)
        result = ScheduleResult(host, evaluated, len(feasible),
                                node_to_status=diagnosis.node_to_status)
        if record:
            result.scored_nodes = list(map(_NAME, feasible))
            result.totals = totals
            result.score_records = records or []
        return result

    def select_host(self, nodes: list[NodeInfo], totals: list[int]) -> str:
        """The best-scoring node; ties broken uniformly at random."""
        best = max(totals)
        if totals.count(best) == 1:
            return nodes[totals.index(best)].name
        ties = list(compress(range(len(totals)), map(best.__eq__, totals)))
        return nodes[ties[self.rng.randrange(len(ties))]].name

    def find_nodes_that_fit(self, fwk: Framework, state: CycleState, pod: PodInfo,
                            snapshot: Snapshot) -> tuple[list[NodeInfo], Diagnosis, int]:
        """(feasible nodes, diagnosis, how many nodes were evaluated)."""
        diagnosis = Diagnosis()
        all_nodes = snapshot.node_info_list
        pre_result, status = fwk.run_pre_filter(state, pod, all_nodes)
        if status is not None:
            if status.code is Code.ERROR:
                raise SchedulingError(status)
            diagnosis.pre_filter_msg = status.message()
            if status.plugin:
                diagnosis.unschedulable_plugins.add(status.plugin)
            for ni in all_nodes:
                diagnosis.node_to_status[ni.name] = status
            return [], diagnosis, 0
        # A nominated node (from an earlier preemption) is tried first, alone.
        nominated = pod.pod.status.nominatedNodeName
        if nominated:
            nominated_info = snapshot.get(nominated)
            if nominated_info is not None:
                s = fwk.run_filter_with_nominated_pods(state, pod, nominated_info)
                if s is None:
                    return [nominated_info], diagnosis, 1
                if s.code is Code.ERROR:
                    raise SchedulingError(s)
        nodes = all_nodes
        if pre_result is not None and pre_result.node_names is not None:
            names = pre_result.node_names
            nodes = [n for n in all_nodes if n.name in names]
            absent = Status.unresolvable(
                "node(s) didn't satisfy plugin(s) [" +
                ", ".join(sorted(p.name for p in fwk.pre_filter_plugins)) + "]")
            for n in all_nodes:
                if n.name not in names:
                    diagnosis.node_to_status[n.name] = absent
        columns: list[tuple[str, VerdictColumn]] = []
        rest = 0
        if nodes is all_nodes and all_nodes and not fwk.handle.nominated_node_names():
            got = fwk.filter_columns(state, pod, snapshot)
            if isinstance(got, Status):
                raise SchedulingError(got)
            columns, rest = got
        if columns:
            feasible, evaluated = self._filter_by_columns(
                fwk, state, pod, snapshot, columns, rest, diagnosis.node_to_status)
        else:
            feasible, evaluated = self._filter(fwk, state, pod, nodes,
                                               diagnosis.node_to_status, len(all_nodes))
        plugins = set(map(_PLUGIN, diagnosis.node_to_status.values()))
        plugins.discard("")
        diagnosis.unschedulable_plugins |= plugins
        return feasible, diagnosis, evaluated

    def _filter(self, fwk: Framework, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                statuses: NodeToStatus, num_all: int) -> tuple[list[NodeInfo], int]:
        n = len(nodes)
        if n == 0:
            return [], 0
        to_find = num_feasible_nodes_to_find(
            fwk.percentage_of_nodes_to_score if fwk.percentage_of_nodes_to_score is not None
            else self.percentage_of_nodes_to_score, n)
        nominated_nodes = fwk.handle.nominated_node_names()
        start = self.next_start_node_index % n
        feasible: list[NodeInfo] = []
        processed = 0
        while processed < n and len(feasible) < to_find:
            # A batch as large as what is still needed: when most nodes fit, one batch.
            size = min(n - processed, max(to_find - len(feasible), 32))
            lo = (start + processed) % n
            chunk = nodes[lo:lo + size]
            if len(chunk) < size:
                chunk += nodes[:size - len(chunk)]
            if nominated_nodes:
                passed = self._filter_with_nominated(fwk, state, pod, chunk, statuses,
                                                     nominated_nodes)
            else:
                passed = fwk.filter_nodes(state, pod, chunk, statuses)
            if isinstance(passed, Status):
                raise SchedulingError(passed)
            if len(feasible) + len(passed) > to_find:
                passed = passed[:to_find - len(feasible)]
                feasible.extend(passed)
                processed += _index(chunk, passed[-1]) + 1
                break
            feasible.extend(passed)
            processed += size
        self.next_start_node_index = (start + processed) % n
        return feasible, processed

    def _filter_by_columns(self, fwk: Framework, state: CycleState, pod: PodInfo,
                           snapshot: Snapshot, columns: list[tuple[str, VerdictColumn]],
                           rest: int, statuses: NodeToStatus) -> tuple[list[NodeInfo], int]:
        """``_filter`` when the leading filter plugins gave verdict columns: the nodes they
        pass come from one byte mask (C-level slicing, counting and ``compress``); the
        plugins from ``rest`` on run per batch on those nodes only. Same nodes, same
        order, same verdicts and the same next start index as ``_filter``."""
        nodes = snapshot.node_info_list
        n = len(nodes)
        to_find = num_feasible_nodes_to_find(
            fwk.percentage_of_nodes_to_score if fwk.percentage_of_nodes_to_score is not None
            else self.percentage_of_nodes_to_score, n)
        start = self.next_start_node_index % n
        failing = [(name, col) for name, col in columns if col.failed]
        if not failing:
            mask: bytes | None = None
        elif len(failing) == 1:
            mask = bytes(failing[0][1].passed)
        else:
            # Bytes of 0/1 ANDed as one big integer: byte i stays 1 iff every column passes.
            m = int.from_bytes(failing[0][1].passed, "little")
            for _, col in failing[1:]:
                m &= int.from_bytes(col.passed, "little")
            mask = m.to_bytes(n, "little")
        skip = state.skip_filter_plugins
        batched = any(pl.name not in skip for pl in fwk.filter_plugins[rest:])
        if mask is None and not batched:
            # Everything passes: the next to_find nodes in ring order.
            count = min(to_find, n)
            self.next_start_node_index = (start + count) % n
            self._slots = NodeSlots(n, start, count)
            end = start + count
            return (nodes[start:end] if end <= n else nodes[start:] + nodes[:end - n]), count
        ring = (mask[start:] + mask[:start]) if mask is not None else None
        if not batched:
            assert ring is not None
            # _filter's batches, counted instead of filtered: where the to_find-th passing
            # node is (processed) and where its batch ends (failures are recorded up to
            # there, as filtering the whole batch records them).
            found = processed = 0
            batch_end = n
            while processed < n and found < to_find:
                size = min(n - processed, max(to_find - found, 32))
                passing = ring.count(1, processed, processed + size)
                if found + passing > to_find:
                    batch_end = processed + size
                    # The smallest prefix of the batch holding the nodes still needed.
                    lo, hi = processed, processed + size
                    while lo < hi:
                        mid = (lo + hi) // 2
                        if found + ring.count(1, processed, mid) >= to_find:
                            hi = mid
                        else:
                            lo = mid + 1
                    processed = lo
                    break
                found += passing
                processed += size
                batch_end = processed
            self._record_column_failures(nodes, ring, start, batch_end, failing, statuses)
            slots = list(compress(chain(range(start, n), range(start)), ring[:processed]))
            self._slots = NodeSlots(n, slots=slots)
            self.next_start_node_index = (start + processed) % n
            return list(map(nodes.__getitem__, slots)), processed
        # Plugins without columns follow: batches of column-passing nodes through them.
        feasible: list[NodeInfo] = []
        processed = 0
        while processed < n and len(feasible) < to_find:
            size = min(n - processed, max(to_find - len(feasible), 32))
            lo = (start + processed) % n
            chunk = nodes[lo:lo + size]
            if len(chunk) < size:
                chunk += nodes[:size - len(chunk)]
            if ring is not None:
                sel = ring[processed:processed + size]
                cand = list(compress(chunk, sel))
                self._record_column_failures(nodes, ring, start, processed + size, failing,
                                             statuses, processed)
            else:
                cand = chunk
            passed = fwk.filter_nodes(state, pod, cand, statuses, first=rest) if cand else []
            if isinstance(passed, Status):
                raise SchedulingError(passed)
            if len(feasible) + len(passed) > to_find:
                passed = passed[:to_find - len(feasible)]
                feasible.extend(passed)
                size = _index(chunk, passed[-1]) + 1
            else:
                feasible.extend(passed)
            processed += size
        self.next_start_node_index = (start + processed) % n
        return feasible, processed

    @staticmethod
    def _record_column_failures(nodes: list[NodeInfo], ring: bytes, start: int, end: int,
                                failing: list[tuple[str, VerdictColumn]],
                                statuses: NodeToStatus, begin: int = 0) -> None:
        """Statuses of the nodes at ring positions [begin, end) that a column rejects:
        the first rejecting plugin's (in plugin order), as ``filter_nodes`` gives."""
        n = len(nodes)
        if len(failing) == 1:
            # One rejecting plugin: its verdicts at the failing slots, gathered in C.
            name, col = failing[0]
            slots: list[int] = []
            cut = n - start  # ring positions from here on are slots from 0 on
            for p_lo, p_hi, shift in ((begin, min(end, cut), start),
                                      (max(begin, cut), end, start - n)):
                if p_lo < p_hi:
                    slots += compress(range(p_lo + shift, p_hi + shift),
                                      map(not_, ring[p_lo:p_hi]))
            # A failing slot's verdict is a Status (never None).
            gather = getattr(col.values, "gather", None)
            verdicts = cast(list[Status], gather(slots) if gather is not None
                            else list(map(col.values.__getitem__, slots)))
            if set(map(_PLUGIN, verdicts)) <= {name} and \
                    Code.ERROR not in set(map(_CODE, verdicts)):
                statuses.update(zip(map(_NAME, map(nodes.__getitem__, slots)), verdicts,
                                    strict=True))
                return
        i = ring.find(0, begin, end)
        while i >= 0:
            slot = i + start
            if slot >= n:
                slot -= n
            for name, col in failing:
                s = col.values[slot]
                if s is not None:
                    if s.code is Code.ERROR:
                        raise SchedulingError(s.with_plugin(name))
                    statuses[nodes[slot].name] = s if s.plugin == name else s.with_plugin(name)
                    break
            i = ring.find(0, i + 1, end)

    @staticmethod
    def _filter_with_nominated(fwk: Framework, state: CycleState, pod: PodInfo,
                               chunk: list[NodeInfo], statuses: NodeToStatus,
                               nominated_nodes: object) -> list[NodeInfo] | Status:
        plain = [ni for ni in chunk if ni.name not in nominated_nodes]  # type: ignore[operator]
        passed_plain = fwk.filter_nodes(state, pod, plain, statuses)
        if isinstance(passed_plain, Status):
            return passed_plain
        ok = {id(ni) for ni in passed_plain}
        out: list[NodeInfo] = []
        for ni in chunk:
            if id(ni) in ok:
                out.append(ni)
            elif ni.name in nominated_nodes:  # type: ignore[operator]
                s = fwk.run_filter_with_nominated_pods(state, pod, ni)
                if s is None:
                    out.append(ni)
                elif s.code is Code.ERROR:
                    return s
                else:
                    statuses[ni.name] = s
        return out


_NAME = attrgetter("name")
_PLUGIN = attrgetter("plugin")
_CODE = attrgetter("code")


def _index(nodes: list[NodeInfo], target: NodeInfo) -> int:
    for i, ni in enumerate(nodes):
        if ni is target:
            return i
    raise ValueError("node not in batch")


class SchedulingError(Exception):
    """An ERROR status from a plugin: the pod is retried with back-off."""

    def __init__(self, status: Status) -> None:
        super().__init__(f"{status.plugin or 'framework'}: {status.message()}")
        self.status = status
