"""Pure decisions of the node lifecycle controller: which taints a node's
conditions call for, and when a pod on a NoExecute-tainted node must go."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pilothouse.api.timeutil import time_from_proto, time_to_proto
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.pod_utils import (
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
    find_taint_tolerations,
    get_condition,
)

__all__ = [
    "MANAGED_TAINTS",
    "desired_taints",
    "eviction_time",
    "min_toleration_seconds",
    "reconcile_taints",
]

# (key, effect) pairs this controller owns; every other taint is left as it is.
MANAGED_TAINTS = frozenset({
    (TAINT_NOT_READY, "NoExecute"), (TAINT_UNREACHABLE, "NoExecute"),
    (TAINT_NOT_READY, "NoSchedule"), (TAINT_UNREACHABLE, "NoSchedule"),
    (TAINT_UNSCHEDULABLE, "NoSchedule"),
})


def ready_status(node: core_pb2.Node) -> str:
    cond = get_condition(node.status.conditions, "Ready")
    return str(cond.status) if cond is not None and cond.status else "Unknown"


def desired_taints(node: core_pb2.Node) -> set[tuple[str, str]]:
    """The managed (key, effect) taints the node should carry now.

    Ready False: not-ready; Ready Unknown: unreachable; both with NoExecute
    (evicts) and NoSchedule (keeps new pods away). A node that has no Ready
    condition yet (just registered) gets neither until the controller marks
    it Unknown after the startup grace period.
    ``spec.unschedulable`` (cordon): unschedulable NoSchedule.
    """
    status = ready_status(node)
    want: set[tuple[str, str]] = set()
    if get_condition(node.status.conditions, "Ready") is None:
        pass
    elif status == "False":
        want |= {(TAINT_NOT_READY, "NoExecute"), (TAINT_NOT_READY, "NoSchedule")}
    elif status != "True":
        want |= {(TAINT_UNREACHABLE, "NoExecute"), (TAINT_UNREACHABLE, "NoSchedule")}
    if node.spec.unschedulable:
        want.add((TAINT_UNSCHEDULABLE, "NoSchedule"))
    return want


def reconcile_taints(taints: Sequence[core_pb2.Taint], want: set[tuple[str, str]],
                     now: datetime) -> list[core_pb2.Taint] | None:
    """The node's new taint list, or None when it is already right.

    Managed taints not wanted are removed, missing ones added (NoExecute
    ones stamped with ``timeAdded``); other taints are kept untouched.
    """
    have = {(t.key, t.effect) for t in taints if (t.key, t.effect) in MANAGED_TAINTS}
    if have == want:
        return None
    out = [t for t in taints if (t.key, t.effect) not in MANAGED_TAINTS
           or (t.key, t.effect) in want]
    for key, effect in sorted(want - have):
        taint = core_pb2.Taint(key=key, effect=effect)
        if effect == "NoExecute":
            taint.timeAdded.CopyFrom(time_to_proto(now))
        out.append(taint)
    return out


def min_toleration_seconds(tolerations: Sequence[core_pb2.Toleration]) -> float | None:
    """How long the used tolerations let a pod stay: the smallest
    ``tolerationSeconds`` (0 or less means at once); None means forever (no
    toleration sets a limit)."""
    limits = [t.tolerationSeconds for t in tolerations if t.HasField("tolerationSeconds")]
    if not limits:
        return None
    return float(max(min(limits), 0))


def eviction_time(pod: core_pb2.Pod, taints: Sequence[core_pb2.Taint],
                  first_seen: datetime) -> datetime | None:
    """When a pod on a node with ``taints`` must be deleted, or None if never.

    Only NoExecute taints count. A taint the pod does not tolerate evicts it
    at once (``first_seen``, or earlier); otherwise it may stay for the
    smallest tolerationSeconds of the tolerations used, counted from when
    the oldest NoExecute taint was added (``first_seen`` if unstamped).
    """
    no_execute = [t for t in taints if t.effect == "NoExecute"]
    if not no_execute:
        return None
    tolerated, used = find_taint_tolerations(no_execute, list(pod.spec.tolerations))
    stamps = [time_from_proto(t.timeAdded) for t in no_execute if t.HasField("timeAdded")]
    start = min(stamps) if stamps else first_seen
    if not tolerated:
        return min(start, first_seen)
    seconds = min_toleration_seconds(used)
    if seconds is None:
        return None
    return start + timedelta(seconds=seconds)
