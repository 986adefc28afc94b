"""Pure helpers of the ReplicaSet controller, shared with the other workload controllers.

No I/O here: the patches that adopt or release an object (pod predicates and
owner references are in ``pod_utils``), expectations (what a
controller is still waiting to see in its cache), the slow-start batch, the
order in which surplus pods are deleted, and the ReplicaSet status
computation. Kubernetes keeps the same things in
``pkg/controller/controller_utils.go`` and ``replica_set_utils.go``.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pilothouse.api.timeutil import time_from_proto, time_to_proto
from pilothouse.client.clock import AsyncClock
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.meta.v1 import meta_pb2
from pilothouse.services.controllers.pod_utils import (
    controller_ref,
    is_pod_active,
    is_pod_ready,
    pod_ready_time,
)

__all__ = [
    "BURST_REPLICAS",
    "EXPECTATIONS_TIMEOUT",
    "POD_DELETION_COST",
    "SLOW_START_INITIAL_BATCH",
    "ClaimPlan",
    "ControllerExpectations",
    "PodFacts",
    "adopt_patch",
    "calculate_status",
    "is_namespace_terminating",
    "plan_claims",
    "pod_from_template",
    "pods_to_delete",
    "release_patch",
    "slow_start_batch",
]

# Kubernetes' numbers: at most 500 creations/deletions per sync, batches 1, 2, 4, ...
BURST_REPLICAS = 500
SLOW_START_INITIAL_BATCH = 1
# Expectations older than this are ignored (a lost watch event must not wedge a controller).
EXPECTATIONS_TIMEOUT = 5 * 60.0
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# Longest pod name prefix that still leaves room for generateName's random suffix.
_MAX_GENERATED_NAME = 63 - 5


# -- controller references -------------------------------------------------------------------

def _ref_dict(ref: meta_pb2.OwnerReference) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": ref.apiVersion, "kind": ref.kind, "name": ref.name,
                           "uid": ref.uid}
    if ref.HasField("controller"):
        out["controller"] = ref.controller
    if ref.HasField("blockOwnerDeletion"):
        out["blockOwnerDeletion"] = ref.blockOwnerDeletion
    return out


def adopt_patch(obj: Any, ref: meta_pb2.OwnerReference) -> dict[str, Any]:
    """A merge patch that adds ``ref`` to ``obj``'s ownerReferences.

    The whole list is sent (a merge patch replaces lists) and the patch is
    conditional on the cached resourceVersion, so a concurrent change to the
    references makes it fail with a conflict instead of being overwritten.
    """
    refs = [_ref_dict(r) for r in obj.metadata.ownerReferences if r.uid != ref.uid]
    refs.append(_ref_dict(ref))
    return {"metadata": {"ownerReferences": refs,
                         "resourceVersion": obj.metadata.resourceVersion}}


def release_patch(obj: Any, owner_uids: Iterable[str]) -> dict[str, Any]:
    """A merge patch that removes the references to ``owner_uids`` (conditional, as above)."""
    drop = set(owner_uids)
    refs = [_ref_dict(r) for r in obj.metadata.ownerReferences if r.uid not in drop]
    return {"metadata": {"ownerReferences": refs or None,
                         "resourceVersion": obj.metadata.resourceVersion}}


@dataclass
class ClaimPlan:
    """What a controller does with the candidates for its selector (``ClaimObjects``)."""

    owned: list[Any] = field(default_factory=list)   # ours and matching: keep
    adopt: list[Any] = field(default_factory=list)   # orphans that match: take
    release: list[Any] = field(default_factory=list)  # ours but no longer matching: let go


def plan_claims(owner_uid: str, owner_deleting: bool, candidates: Iterable[Any],
                matches: Callable[[Any], bool]) -> ClaimPlan:
    """Sort ``candidates`` into owned / adopt / release for the owner ``owner_uid``.

    Objects controlled by someone else are left alone; an owner being deleted
    neither adopts nor releases (its dependents go with it); objects being
    deleted are never adopted.
    """
    plan = ClaimPlan()
    for obj in candidates:
        ref = controller_ref(obj)
        if ref is not None:
            if ref.uid != owner_uid:
                continue
            if matches(obj):
                plan.owned.append(obj)
            elif not owner_deleting:
                plan.release.append(obj)
            continue
        if owner_deleting or obj.metadata.HasField("deletionTimestamp") or not matches(obj):
            continue
        plan.adopt.append(obj)
    return plan


# -- expectations ------------------------------------------------------------------------------

@dataclass
class _Expectation:
    add: int
    delete: int
    timestamp: float
    deleting: set[str] = field(default_factory=set)


class ControllerExpectations:
    """How many creations and which deletions a controller still waits to observe.

    A controller that just created 10 pods must not create 10 more because
    its cache has not caught up: it records ``expect_creations(key, 10)``, the
    pod informer's add handler calls ``creation_observed(key)`` for each, and
    ``satisfied(key)`` is False until all were seen (or the record is older
    than ``EXPECTATIONS_TIMEOUT``). Deletions are tracked by pod key, so an
    update that marks a pod terminating and its final delete count once
    (``UIDTrackingControllerExpectations``).
    """

    def __init__(self, clock: AsyncClock, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self.clock = clock
        self.timeout = timeout
        self._records: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        """True when the controller may act on ``key`` (nothing pending, expired, or unknown)."""
        record = self._records.get(key)
        if record is None:
            return True
        if record.add <= 0 and record.delete <= 0:
            return True
        return self.clock.monotonic() - record.timestamp > self.timeout

    def expect_creations(self, key: str, count: int) -> None:
        self._records[key] = _Expectation(count, 0, self.clock.monotonic())

    def expect_deletions(self, key: str, pod_keys: Sequence[str]) -> None:
        self._records[key] = _Expectation(0, len(pod_keys), self.clock.monotonic(),
                                          set(pod_keys))

    def creation_observed(self, key: str) -> None:
        record = self._records.get(key)
        if record is not None:
            record.add -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        record = self._records.get(key)
        if record is not None and pod_key in record.deleting:
            record.deleting.discard(pod_key)
            record.delete -= 1

    def pending(self, key: str) -> tuple[int, int]:
        """(creations, deletions) still expected (for tests and logs)."""
        record = self._records.get(key)
        return (record.add, record.delete) if record else (0, 0)

    def delete(self, key: str) -> None:
        self._records.pop(key, None)


def is_namespace_terminating(exc: BaseException) -> bool:
    """The apiserver refused a create because the namespace is being deleted."""
    details = getattr(exc, "details", None)
    if not isinstance(details, dict):
        return False
    causes = details.get("causes") or []
    return any(isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes)


# -- creating ------------------------------------------------------------------------------

def pod_from_template(template: core_pb2.PodTemplateSpec, namespace: str, prefix: str,
                      ref: meta_pb2.OwnerReference) -> core_pb2.Pod:
    """The pod a controller creates from its template (``GetPodFromTemplate``):
    the template's labels, annotations, finalizers and spec, ``generateName``
    ``<prefix>-`` and a controller reference."""
    pod = core_pb2.Pod()
    meta = pod.metadata
    base = f"{prefix}-"
    meta.generateName = base if len(base) <= _MAX_GENERATED_NAME else base[:_MAX_GENERATED_NAME]
    meta.namespace = namespace
    meta.labels.update(template.metadata.labels)
    meta.annotations.update(template.metadata.annotations)
    meta.finalizers.extend(template.metadata.finalizers)
    meta.ownerReferences.append(ref)
    pod.spec.CopyFrom(template.spec)
    return pod


async def slow_start_batch(count: int, initial: int, fn: Callable[[int], Awaitable[None]]
                           ) -> tuple[int, BaseException | None]:
    """Call ``fn`` ``count`` times in concurrent batches of 1, 2, 4, ... (``slowStartBatch``).

    A batch with any failure ends the run: a request that fails (quota,
    admission, a sick apiserver) then fails once or twice, not ``count``
    times. Returns (successes, first error or None). ``fn`` gets the call's
    index.
    """
    remaining = count
    successes = 0
    started = 0
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn(started + i) for i in range(batch)),
                                       return_exceptions=True)
        started += batch
        errors = [r for r in results if isinstance(r, BaseException)]
        for err in errors:
            if isinstance(err, asyncio.CancelledError):
                raise err
        successes += batch - len(errors)
        if errors:
            return successes, errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


# -- deleting ------------------------------------------------------------------------------

_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def _deletion_cost(pod: core_pb2.Pod) -> int:
    text = pod.metadata.annotations.get(POD_DELETION_COST, "")
    try:
        return int(text) if text else 0
    except ValueError:
        return 0


def _max_restarts(pod: core_pb2.Pod) -> int:
    counts = [s.restartCount for s in pod.status.containerStatuses]
    counts += [s.restartCount for s, c in zip(pod.status.initContainerStatuses,
                                              pod.spec.initContainers, strict=False)
               if c.restartPolicy == "Always"]
    return max(counts, default=0)


def _log_rank(when: datetime, now: datetime) -> int:
    nanos = (now - when).total_seconds() * 1e9
    return int(math.log2(nanos)) if nanos > 0 else -1


def _newer_first(a: datetime | None, b: datetime | None, now: datetime | None,
                 uid_a: str, uid_b: str) -> int | None:
    """-1 when ``a`` goes first (newer, or unset), 1 when ``b`` does, None when equal.

    Times are compared in powers of two of their age (``LogarithmicScaleDown``):
    a pod 70 minutes old and one 80 minutes old are alike, and the tie is
    broken by UID so that the choice looks random but is stable."""
    if a == b:
        return None
    if a is None or b is None or now is None:
        if a is None:
            return -1
        if b is None:
            return 1
        return -1 if a > b else 1
    diff = _log_rank(a, now) - _log_rank(b, now)
    if diff == 0:
        return -1 if uid_a < uid_b else (1 if uid_a > uid_b else None)
    return -1 if diff < 0 else 1


def _compare(a: tuple[core_pb2.Pod, int], b: tuple[core_pb2.Pod, int],
             now: datetime | None) -> int:
    """Kubernetes' ``ActivePodsWithRanks.Less``: negative when ``a`` is deleted first."""
    pa, rank_a = a
    pb, rank_b = b
    # 1. unscheduled before scheduled
    if pa.spec.nodeName != pb.spec.nodeName and (not pa.spec.nodeName or not pb.spec.nodeName):
        return -1 if not pa.spec.nodeName else 1
    # 2. Pending < Unknown < Running
    oa, ob = _PHASE_ORDINAL.get(pa.status.phase, 0), _PHASE_ORDINAL.get(pb.status.phase, 0)
    if oa != ob:
        return -1 if oa < ob else 1
    # 3. not ready before ready
    ra, rb = is_pod_ready(pa), is_pod_ready(pb)
    if ra != rb:
        return -1 if not ra else 1
    # 4. lower deletion cost first
    ca, cb = _deletion_cost(pa), _deletion_cost(pb)
    if ca != cb:
        return -1 if ca < cb else 1
    # 5. doubled up (more related pods on the same node) first
    if rank_a != rank_b:
        return -1 if rank_a > rank_b else 1
    # 6. ready for less time first
    if ra and rb:
        order = _newer_first(pod_ready_time(pa), pod_ready_time(pb), now,
                             pa.metadata.uid, pb.metadata.uid)
        if order is not None:
            return order
    # 7. more restarts first
    sa, sb = _max_restarts(pa), _max_restarts(pb)
    if sa != sb:
        return -1 if sa > sb else 1
    # 8. newer first
    ta = time_from_proto(pa.metadata.creationTimestamp) \
        if pa.metadata.HasField("creationTimestamp") else None
    tb = time_from_proto(pb.metadata.creationTimestamp) \
        if pb.metadata.HasField("creationTimestamp") else None
    order = _newer_first(ta, tb, now, pa.metadata.uid, pb.metadata.uid)
    return order or 0


def pods_to_delete(pods: Sequence[core_pb2.Pod], related: Iterable[core_pb2.Pod], count: int,
                   now: datetime | None) -> list[core_pb2.Pod]:
    """The ``count`` pods to delete first (``getPodsToDelete``).

    ``related`` are the active pods of every ReplicaSet of the same owner
    (for a Deployment: all its ReplicaSets); a pod on a node crowded with its
    siblings ranks higher, so scale-down spreads what is left.
    """
    if count >= len(pods):
        return list(pods)
    on_node: dict[str, int] = {}
    for pod in related:
        if is_pod_active(pod):
            on_node[pod.spec.nodeName] = on_node.get(pod.spec.nodeName, 0) + 1
    ranked = [(pod, on_node.get(pod.spec.nodeName, 0)) for pod in pods]
    def compare(a: tuple[core_pb2.Pod, int], b: tuple[core_pb2.Pod, int]) -> int:
        return _compare(a, b, now)

    ranked.sort(key=functools.cmp_to_key(compare))
    return [pod for pod, _ in ranked[:count]]


# -- status ------------------------------------------------------------------------------------

REPLICA_FAILURE = "ReplicaFailure"


@dataclass(frozen=True, slots=True)
class PodFacts:
    """What a ReplicaSet sync needs from one version of a pod, read out once.

    Reading protobuf fields is the cost of a sync over a thousand pods; the
    controller keeps these per (uid, resourceVersion), so a steady-state sync
    reads plain Python values."""

    labels: dict[str, str]
    active: bool
    ready: bool
    ready_since: datetime | None

    @classmethod
    def of(cls, pod: core_pb2.Pod) -> PodFacts:
        ready = is_pod_ready(pod)
        return cls(dict(pod.metadata.labels), is_pod_active(pod), ready,
                   pod_ready_time(pod) if ready else None)

    def available(self, min_ready_seconds: int, now: datetime) -> bool:
        if not self.ready:
            return False
        if min_ready_seconds <= 0:
            return True
        return (self.ready_since is not None
                and (now - self.ready_since).total_seconds() >= min_ready_seconds)


def calculate_status(rs: apps_pb2.ReplicaSet, pods: Sequence[core_pb2.Pod],
                     manage_error: BaseException | None, now: datetime,
                     facts: Sequence[PodFacts] | None = None) -> apps_pb2.ReplicaSetStatus:
    """The status a ReplicaSet should report for its active ``pods`` (``calculateStatus``).

    ``ReplicaFailure`` is set (FailedCreate/FailedDelete) when managing the
    replicas failed and cleared once it succeeds. ``observedGeneration`` is
    left to the caller. ``facts`` (one per pod) saves reading the pods again.
    """
    if facts is None:
        facts = [PodFacts.of(p) for p in pods]
    status = apps_pb2.ReplicaSetStatus()
    status.CopyFrom(rs.status)
    wanted = dict(rs.spec.template.metadata.labels).items()
    min_ready = rs.spec.minReadySeconds
    status.replicas = len(pods)
    status.fullyLabeledReplicas = sum(1 for f in facts if wanted <= f.labels.items())
    status.readyReplicas = sum(1 for f in facts if f.ready)
    status.availableReplicas = sum(1 for f in facts if f.available(min_ready, now))
    existing = [c for c in status.conditions if c.type == REPLICA_FAILURE]
    if manage_error is not None and not existing:
        want = rs.spec.replicas if rs.spec.HasField("replicas") else 1
        diff = len(pods) - want
        reason = "FailedCreate" if diff < 0 else ("FailedDelete" if diff > 0 else "")
        cond = status.conditions.add()
        cond.type = REPLICA_FAILURE
        cond.status = "True"
        cond.reason = reason
        cond.message = str(manage_error)
        cond.lastTransitionTime.CopyFrom(time_to_proto(now))
    elif manage_error is None and existing:
        keep = [c for c in status.conditions if c.type != REPLICA_FAILURE]
        del status.conditions[:]
        status.conditions.extend(keep)
    return status
