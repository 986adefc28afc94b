"""Pure helpers the workload and node controllers share: pod state, owner
references, conditions, taints/tolerations and revision hashes.

No I/O here: every function takes API objects (protobuf messages) and returns
values or new messages, so it is tested without a server. Cached objects are
never mutated: builders return fresh messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pilothouse.api.codec import message_to_dict
from pilothouse.api.timeutil import time_from_proto, time_to_proto
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.meta.v1 import meta_pb2

__all__ = [
    "TAINT_NOT_READY",
    "TAINT_UNREACHABLE",
    "TAINT_UNSCHEDULABLE",
    "compute_hash",
    "controller_ref",
    "find_taint_tolerations",
    "get_condition",
    "is_owned_by",
    "is_pod_active",
    "is_pod_ready",
    "is_pod_terminating",
    "new_owner_reference",
    "pod_ready_time",
    "safe_encode",
    "set_condition",
    "taint_tolerated",
    "template_json",
    "toleration_matches",
]

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

# -- pod state ----------------------------------------------------------------------------


def is_pod_terminating(pod: core_pb2.Pod) -> bool:
    """The pod has a deletionTimestamp (it is going away)."""
    return pod.metadata.HasField("deletionTimestamp")


def is_pod_active(pod: core_pb2.Pod) -> bool:
    """Not finished (Succeeded/Failed) and not being deleted: a controller counts it."""
    return pod.status.phase not in ("Succeeded", "Failed") and not is_pod_terminating(pod)


def _ready_condition(pod: core_pb2.Pod) -> core_pb2.PodCondition | None:
    for cond in pod.status.conditions:
        if cond.type == "Ready":
            return cond
    return None


def is_pod_ready(pod: core_pb2.Pod) -> bool:
    """The pod's Ready condition is True."""
    cond = _ready_condition(pod)
    return cond is not None and cond.status == "True"


def pod_ready_time(pod: core_pb2.Pod) -> datetime | None:
    """When the pod became Ready (its Ready condition's lastTransitionTime), if it is."""
    cond = _ready_condition(pod)
    if cond is None or cond.status != "True" or not cond.HasField("lastTransitionTime"):
        return None
    return time_from_proto(cond.lastTransitionTime)


def is_pod_available(pod: core_pb2.Pod, min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least ``min_ready_seconds`` (Kubernetes' IsPodAvailable)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = pod_ready_time(pod)
    return since is not None and (now - since).total_seconds() >= min_ready_seconds


# -- owner references -------------------------------------------------------------------


def controller_ref(obj: Any) -> meta_pb2.OwnerReference | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in obj.metadata.ownerReferences:
        if ref.controller:
            return ref
    return None


def is_owned_by(obj: Any, owner: Any) -> bool:
    """``obj`` is controlled by ``owner`` (matched by uid)."""
    ref = controller_ref(obj)
    return ref is not None and ref.uid == owner.metadata.uid


def new_owner_reference(owner: Any, api_version: str, kind: str) -> meta_pb2.OwnerReference:
    """A controller ownerReference to ``owner`` that blocks its foreground deletion."""
    return meta_pb2.OwnerReference(apiVersion=api_version, kind=kind, name=owner.metadata.name,
                                   uid=owner.metadata.uid, controller=True,
                                   blockOwnerDeletion=True)


# -- conditions ---------------------------------------------------------------------------


def get_condition(conditions: Iterable[Any], type_: str) -> Any | None:
    """The condition of ``type_`` in a repeated conditions field, or None."""
    for cond in conditions:
        if cond.type == type_:
            return cond
    return None


def set_condition(conditions: Any, type_: str, status: str, reason: str, message: str,
                  now: datetime, *, probe_time: bool = False) -> bool:
    """Set a condition in a repeated field (in place, on a copy the caller owns).

    ``lastTransitionTime`` moves only when the status changes, as Kubernetes
    does. Returns whether anything changed.
    """
    cond = get_condition(conditions, type_)
    if cond is None:
        cond = conditions.add(type=type_)
        changed = True
    else:
        changed = False
    if cond.status != status:
        cond.status = status
        cond.lastTransitionTime.CopyFrom(time_to_proto(now))
        changed = True
    if cond.reason != reason or cond.message != message:
        cond.reason, cond.message = reason, message
        changed = True
    if probe_time and changed:
        cond.lastProbeTime.CopyFrom(time_to_proto(now))
    return changed


# -- taints and tolerations ---------------------------------------------------------------


def toleration_matches(toleration: core_pb2.Toleration, taint: core_pb2.Taint) -> bool:
    """Whether one toleration tolerates one taint (Kubernetes' ToleratesTaint).

    An empty effect matches every effect; an empty key with ``Exists`` matches
    every key; ``Equal`` (the default operator) compares values.
    """
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    operator = toleration.operator or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return bool(toleration.key) and toleration.value == taint.value
    return False


def taint_tolerated(taint: core_pb2.Taint, tolerations: Sequence[core_pb2.Toleration]) -> bool:
    return any(toleration_matches(t, taint) for t in tolerations)


def find_taint_tolerations(
    taints: Sequence[core_pb2.Taint], tolerations: Sequence[core_pb2.Toleration],
) -> tuple[bool, list[core_pb2.Toleration]]:
    """For NoExecute eviction: (all taints tolerated, the tolerations that matched)."""
    used: list[core_pb2.Toleration] = []
    for taint in taints:
        matched = [t for t in tolerations if toleration_matches(t, taint)]
        if not matched:
            return False, []
        used.extend(matched)
    return True, used


# -- revisions and hashes ----------------------------------------------------------------

# Kubernetes' rand.SafeEncodeString alphabet: no vowels (no words) and no
# look-alike characters, so a hash is safe in a name or label value.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in text)


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def compute_hash(template: core_pb2.PodTemplateSpec, collision_count: int | None = None) -> str:
    """A stable short hash of a pod template (plus the collision count, if any):
    the ``pod-template-hash`` / ``controller-revision-hash`` value.

    Deterministic: the template's canonical JSON (sorted keys) is hashed with
    FNV-1a 32, then safe-encoded as Kubernetes does.
    """
    data = json.dumps(message_to_dict(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(str(_fnv32a(data)))


def template_json(template: core_pb2.PodTemplateSpec) -> dict[str, Any]:
    """The JSON form of a template (what a ControllerRevision stores)."""
    return dict(message_to_dict(template))


# -- building pods ------------------------------------------------------------------------


def pod_from_template(template: core_pb2.PodTemplateSpec, owner: Any, api_version: str,
                      kind: str, *, name: str = "", generate_name: str = "") -> core_pb2.Pod:
    """A new Pod from a template, controlled by ``owner`` (labels, annotations,
    finalizers and spec from the template; the namespace is the owner's)."""
    pod = core_pb2.Pod()
    meta = pod.metadata
    meta.namespace = owner.metadata.namespace
    if name:
        meta.name = name
    else:
        meta.generateName = generate_name or f"{owner.metadata.name}-"
    meta.labels.update(template.metadata.labels)
    meta.annotations.update(template.metadata.annotations)
    meta.finalizers.extend(template.metadata.finalizers)
    meta.ownerReferences.append(new_owner_reference(owner, api_version, kind))
    pod.spec.CopyFrom(template.spec)
    return pod


# -- expectations -------------------------------------------------------------------------

EXPECTATIONS_TIMEOUT = 300.0


class Expectations:
    """Creations and deletions a controller has asked for but its cache has
    not shown yet, per controller key (Kubernetes' ControllerExpectations).

    A sync that finds its expectations unmet must not act on pod counts: the
    cache is behind and it would create or delete twice. Observations come
    from the pod informer's handlers. Expectations older than five minutes
    (a missed event) are treated as met, so a key can never stall for good.
    """

    def __init__(self, monotonic: Any) -> None:
        self._monotonic = monotonic
        self._adds: dict[str, int] = {}
        self._deletes: dict[str, set[str]] = {}
        self._since: dict[str, float] = {}

    def expect_creations(self, key: str, count: int) -> None:
        self._adds[key] = self._adds.get(key, 0) + count
        self._since[key] = self._monotonic()

    def expect_deletions(self, key: str, uids: Iterable[str]) -> None:
        self._deletes.setdefault(key, set()).update(uids)
        self._since[key] = self._monotonic()

    def creation_observed(self, key: str) -> None:
        if self._adds.get(key, 0) > 0:
            self._adds[key] -= 1

    def creation_failed(self, key: str) -> None:
        self.creation_observed(key)

    def deletion_observed(self, key: str, uid: str) -> None:
        self._deletes.get(key, set()).discard(uid)

    def satisfied(self, key: str) -> bool:
        if self._adds.get(key, 0) <= 0 and not self._deletes.get(key):
            return True
        if self._monotonic() - self._since.get(key, 0.0) > EXPECTATIONS_TIMEOUT:
            self.forget(key)
            return True
        return False

    def forget(self, key: str) -> None:
        self._adds.pop(key, None)
        self._deletes.pop(key, None)
        self._since.pop(key, None)
