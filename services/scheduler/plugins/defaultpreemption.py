"""DefaultPreemption: when a pod fits nowhere, evict lower-priority pods to make room.

Kubernetes' algorithm: only nodes whose rejection was UNSCHEDULABLE (not
unresolvable) are candidates; from a random offset, dry-run each: remove
every lower-priority pod, check the pod fits, then reprieve as many of them as
possible, most important first (those whose eviction would violate a
PodDisruptionBudget before the others). Among the candidates pick, in order:
fewest PDB violations, lowest highest-victim priority, lowest sum of
priorities, fewest victims, the latest start among the highest-priority
victims; then the first. The victims are deleted (through ``Handle.spawn``),
lower-priority pods nominated to that node lose their nomination, and the
preemptor is nominated to the node and retried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pilothouse.services.scheduler.framework import (
    CycleState,
    Handle,
    NodeInfo,
    NodeToStatus,
    PodInfo,
    PostFilterResult,
    Status,
)
from pilothouse.services.scheduler.framework.status import Code
from pilothouse.services.scheduler.plugins.names import DEFAULT_PREEMPTION

__all__ = ["Candidate", "DefaultPreemption", "more_important_pod", "pick_one_node"]

log = logging.getLogger("pilothouse.scheduler.preemption")

MSG_NOT_HELPFUL: Final = "Preemption is not helpful for scheduling"
MSG_NO_VICTIMS: Final = "No preemption victims found for incoming pod"
_INT32: Final = 2**31


@dataclass
class Candidate:
    node_name: str
    victims: list[PodInfo]
    num_pdb_violations: int


def more_important_pod(a: PodInfo, b: PodInfo) -> bool:
    """Higher priority first; at equal priority the one that started earlier."""
    if a.priority != b.priority:
        return a.priority > b.priority
    return (a.start_time or _INT32 * 10**9) < (b.start_time or _INT32 * 10**9)


def _importance_key(p: PodInfo) -> tuple[int, int]:
    return (-p.priority, p.start_time or _INT32 * 10**9)


def pick_one_node(candidates: list[Candidate]) -> Candidate | None:
    """Kubernetes' ``pickOneNodeForPreemption`` criteria, in order."""
    if not candidates:
        return None
    for c in candidates:
        if not c.victims:
            return c

    def narrow(pool: list[Candidate], key: Any) -> list[Candidate]:
        best = min(key(c) for c in pool)
        return [c for c in pool if key(c) == best]

    pool = narrow(candidates, lambda c: c.num_pdb_violations)
    if len(pool) > 1:
        pool = narrow(pool, lambda c: max(v.priority for v in c.victims))
    if len(pool) > 1:
        pool = narrow(pool, lambda c: sum(v.priority + _INT32 for v in c.victims))
    if len(pool) > 1:
        pool = narrow(pool, lambda c: len(c.victims))
    if len(pool) > 1:
        def earliest_top_start(c: Candidate) -> int:
            top = max(v.priority for v in c.victims)
            return min(v.start_time or _INT32 * 10**9 for v in c.victims if v.priority == top)
        latest = max(earliest_top_start(c) for c in pool)
        pool = [c for c in pool if earliest_top_start(c) == latest]
    return pool[0]


class DefaultPreemption:
    name = DEFAULT_PREEMPTION

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        args = dict(args or {})
        self.handle = handle or Handle()
        self.min_candidate_nodes_percentage = int(args.get("minCandidateNodesPercentage", 10))
        self.min_candidate_nodes_absolute = int(args.get("minCandidateNodesAbsolute", 100))
        if not 0 <= self.min_candidate_nodes_percentage <= 100:
            raise ValueError("minCandidateNodesPercentage: must be in the range [0, 100]")
        if self.min_candidate_nodes_absolute < 0:
            raise ValueError("minCandidateNodesAbsolute: must not be negative")
        if self.min_candidate_nodes_percentage == 0 and self.min_candidate_nodes_absolute == 0:
            raise ValueError("minCandidateNodesPercentage and minCandidateNodesAbsolute "
                             "cannot both be zero")

    def num_candidates(self, num_nodes: int) -> int:
        n = num_nodes * self.min_candidate_nodes_percentage // 100
        n = max(n, self.min_candidate_nodes_absolute)
        return min(n, num_nodes)

    # -- PostFilter ----------------------------------------------------------------------

    def post_filter(self, state: CycleState, pod: PodInfo, statuses: NodeToStatus,
                    ) -> tuple[PostFilterResult | None, Status | None]:
        result, status = self.preempt(state, pod, statuses)
        if status is not None and status.reasons:
            return result, Status(status.code, "preemption: " + status.message(),
                                  plugin=self.name)
        return result, status

    def eligible(self, pod: PodInfo) -> str:
        """"" when the pod may preempt, else why not."""
        if pod.preemption_policy == "Never":
            return "not eligible due to preemptionPolicy=Never."
        nominated = pod.pod.status.nominatedNodeName
        if nominated:
            ni = self.handle.snapshot.get(nominated)
            if ni is not None and any(p.terminating and p.priority < pod.priority
                                      for p in ni.pods):
                return "not eligible due to a terminating pod on the nominated node."
        return ""

    def preempt(self, state: CycleState, pod: PodInfo, statuses: NodeToStatus,
                ) -> tuple[PostFilterResult | None, Status | None]:
        why_not = self.eligible(pod)
        if why_not:
            return None, Status.unschedulable(why_not)
        snapshot = self.handle.snapshot
        all_nodes = snapshot.node_info_list
        if not all_nodes:
            return None, Status.as_error("no nodes available")
        potential: list[NodeInfo] = []
        result_statuses: NodeToStatus = {}
        not_helpful = Status.unresolvable(MSG_NOT_HELPFUL)
        for ni in all_nodes:
            s = statuses.get(ni.name)
            if s is not None and s.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                result_statuses[ni.name] = not_helpful
            else:
                potential.append(ni)
        candidates: list[Candidate] = []
        if potential:
            candidates = self.find_candidates(state, pod, potential, result_statuses)
        if not candidates:
            from pilothouse.services.scheduler.algorithm import Diagnosis, FitError

            err = FitError(pod, len(all_nodes), Diagnosis(node_to_status=result_statuses))
            # An empty nominatedNodeName clears a stale nomination.
            return PostFilterResult(""), Status.unschedulable(str(err))
        best = pick_one_node(candidates)
        assert best is not None
        self.prepare_candidate(best, pod)
        return PostFilterResult(best.node_name), None

    def find_candidates(self, state: CycleState, pod: PodInfo, potential: list[NodeInfo],
                        statuses: NodeToStatus) -> list[Candidate]:
        fwk = self.handle.framework
        if fwk is None:
            return []
        pdbs = self.handle.pdbs()
        n = len(potential)
        want = self.num_candidates(n)
        offset = self.handle.rng.randrange(n)
        out: list[Candidate] = []
        for i in range(n):
            ni = potential[(offset + i) % n]
            victims, violations, status = self.select_victims_on_node(
                state.clone(), pod, ni.clone(), pdbs)
            if status is None:
                out.append(Candidate(ni.name, victims, violations))
                if len(out) >= want:
                    break
            else:
                statuses[ni.name] = status
        return out

    def select_victims_on_node(self, state: CycleState, pod: PodInfo, ni: NodeInfo,
                               pdbs: list[tuple[str, Any, int]],
                               ) -> tuple[list[PodInfo], int, Status | None]:
        """Victims on ``ni`` (a clone) for ``pod`` with ``state`` (a clone), or why none."""
        fwk = self.handle.framework
        assert fwk is not None
        potential = [p for p in ni.pods if p.priority < pod.priority]
        if not potential:
            return [], 0, Status.unresolvable(MSG_NO_VICTIMS)
        for p in potential:
            ni.remove_pod(p.key)
            s = fwk.run_pre_filter_extension_remove_pod(state, pod, p, ni)
            if s is not None:
                return [], 0, s
        s = fwk.run_filter_with_nominated_pods(state, pod, ni)
        if s is not None:
            return [], 0, s
        potential.sort(key=_importance_key)
        violating, non_violating = _split_by_pdb(potential, pdbs)
        victims: list[PodInfo] = []
        num_violating = 0

        def reprieve(p: PodInfo) -> bool:
            ni.add_pod(p)
            fwk.run_pre_filter_extension_add_pod(state, pod, p, ni)
            if fwk.run_filter_with_nominated_pods(state, pod, ni) is None:
                return True
            ni.remove_pod(p.key)
            fwk.run_pre_filter_extension_remove_pod(state, pod, p, ni)
            victims.append(p)
            return False

        for p in violating:
            if not reprieve(p):
                num_violating += 1
        for p in non_violating:
            reprieve(p)
        return victims, num_violating, None

    def prepare_candidate(self, candidate: Candidate, pod: PodInfo) -> None:
        handle = self.handle
        fwk = handle.framework
        for victim in candidate.victims:
            if fwk is not None and fwk.allow_waiting_pod(
                    victim.key, Status.unschedulable("preempted")):
                continue  # a pod waiting on Permit is rejected instead of deleted
            handle.event(victim.pod, "Normal", "Preempted",
                         f"Preempted by pod {pod.uid} on node {candidate.node_name}")
            if handle.client is not None:
                handle.spawn(_delete_victim(handle, victim, pod))
        for other in handle.nominated_pods_for_node(candidate.node_name):
            if other.priority < pod.priority and handle.client is not None:
                handle.spawn(_clear_nomination(handle, other))


async def _delete_victim(handle: Handle, victim: PodInfo, preemptor: PodInfo) -> None:
    from pilothouse.client import ClientError, is_not_found
    from pilothouse.gen.k8s.core.v1 import core_pb2

    client = handle.client
    assert client is not None
    try:
        condition = {"type": "DisruptionTarget", "status": "True",
                     "reason": "PreemptionByScheduler",
                     "message": f"{handle.scheduler_name}: preempting to accommodate a "
                                "higher priority pod"}
        await client.patch(core_pb2.Pod, victim.name, {"status": {"conditions": [condition]}},
                           namespace=victim.namespace, patch_type="strategic",
                           subresource="status")
    except ClientError as exc:
        log.info("preemption: could not mark %s as a disruption target: %s", victim.key, exc)
    try:
        await client.delete(core_pb2.Pod, victim.name, namespace=victim.namespace,
                            precondition_uid=victim.uid)
    except ClientError as exc:
        if not is_not_found(exc):
            log.warning("preemption: deleting victim %s for %s failed: %s", victim.key,
                        preemptor.key, exc)


async def _clear_nomination(handle: Handle, pod: PodInfo) -> None:
    from pilothouse.client import ClientError
    from pilothouse.gen.k8s.core.v1 import core_pb2

    assert handle.client is not None
    try:
        await handle.client.patch(core_pb2.Pod, pod.name,
                                  {"status": {"nominatedNodeName": None}},
                                  namespace=pod.namespace, subresource="status")
    except ClientError as exc:
        log.info("preemption: clearing the nomination of %s failed: %s", pod.key, exc)


def _split_by_pdb(pods: list[PodInfo], pdbs: list[tuple[str, Any, int]],
                  ) -> tuple[list[PodInfo], list[PodInfo]]:
    if not pdbs:
        return [], pods
    allowed = [n for _, _, n in pdbs]
    violating: list[PodInfo] = []
    ok: list[PodInfo] = []
    for p in pods:
        violates = False
        for i, (ns, selector, _) in enumerate(pdbs):
            if ns != p.namespace or selector.empty or not selector.matches(p.labels):
                continue
            allowed[i] -= 1
            if allowed[i] < 0:
                violates = True
        (violating if violates else ok).append(p)
    return violating, ok
