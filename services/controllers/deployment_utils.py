"""Pure helpers of the Deployment controller (Kubernetes' ``deployment/util``).

Revisions and their annotations, the rolling-update arithmetic (maxSurge /
maxUnavailable fenceposts, how far the new ReplicaSet may grow, proportional
shares during a scale), finding the new and old ReplicaSets, conditions and
the status a Deployment reports. No I/O: every function takes API objects
and returns values or changes a copy the caller owns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pilothouse.api.codec import message_to_dict
from pilothouse.api.intstr import scaled_value
from pilothouse.api.timeutil import time_from_proto, time_to_proto
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2

__all__ = [
    "AVAILABLE",
    "DESIRED_REPLICAS_ANNOTATION",
    "MAX_REPLICAS_ANNOTATION",
    "POD_TEMPLATE_HASH_LABEL",
    "PROGRESSING",
    "REPLICA_FAILURE",
    "REVISION_ANNOTATION",
    "REVISION_HISTORY_ANNOTATION",
    "calculate_status",
    "deployment_complete",
    "deployment_progressing",
    "deployment_timed_out",
    "equal_ignore_hash",
    "find_active_or_latest",
    "find_new_replica_set",
    "find_old_replica_sets",
    "get_condition",
    "get_proportion",
    "is_saturated",
    "max_revision",
    "max_surge",
    "max_unavailable",
    "new_rs_new_replicas",
    "resolve_fenceposts",
    "revision",
    "set_condition",
    "set_deployment_revision",
    "set_new_replica_set_annotations",
    "set_replicas_annotations",
]

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
ROLLBACK_TO_ANNOTATION = "deprecated.deployment.rollback.to"
# Annotations a Deployment keeps for itself (never copied to its ReplicaSets).
SKIPPED_ANNOTATIONS = frozenset({LAST_APPLIED_ANNOTATION, REVISION_ANNOTATION,
                                 REVISION_HISTORY_ANNOTATION, DESIRED_REPLICAS_ANNOTATION,
                                 MAX_REPLICAS_ANNOTATION, ROLLBACK_TO_ANNOTATION})
MAX_REVISION_HISTORY_CHARS = 2000

# Condition types and reasons, as Kubernetes names them.
AVAILABLE = "Available"
PROGRESSING = "Progressing"
REPLICA_FAILURE = "ReplicaFailure"
REASON_NEW_RS_CREATED = "NewReplicaSetCreated"
REASON_FOUND_NEW_RS = "FoundNewReplicaSet"
REASON_RS_UPDATED = "ReplicaSetUpdated"
REASON_NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
REASON_TIMED_OUT = "ProgressDeadlineExceeded"
REASON_PAUSED = "DeploymentPaused"
REASON_RESUMED = "DeploymentResumed"
REASON_RS_CREATE_ERROR = "ReplicaSetCreateError"
REASON_MIN_AVAILABLE = "MinimumReplicasAvailable"
REASON_MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


# -- small accessors ---------------------------------------------------------------------------

def replicas_of(obj: Any) -> int:
    """``spec.replicas`` with Kubernetes' default of 1."""
    return int(obj.spec.replicas) if obj.spec.HasField("replicas") else 1


def revision(obj: Any) -> int:
    """The revision annotation as an int (0 when absent or not a number)."""
    text = obj.metadata.annotations.get(REVISION_ANNOTATION, "")
    try:
        return int(text)
    except ValueError:
        return 0


def max_revision(replica_sets: Iterable[apps_pb2.ReplicaSet]) -> int:
    return max((revision(rs) for rs in replica_sets), default=0)


def _created(rs: Any) -> tuple[int, str]:
    return (rs.metadata.creationTimestamp.seconds, rs.metadata.name)


def by_creation(replica_sets: Iterable[apps_pb2.ReplicaSet]) -> list[apps_pb2.ReplicaSet]:
    """Oldest first (``ReplicaSetsByCreationTimestamp``; ties by name)."""
    return sorted(replica_sets, key=_created)


def by_revision(replica_sets: Iterable[apps_pb2.ReplicaSet]) -> list[apps_pb2.ReplicaSet]:
    """Lowest revision first, ties oldest first (``ReplicaSetsByRevision``)."""
    return sorted(replica_sets, key=lambda rs: (revision(rs), _created(rs)))


def active(replica_sets: Iterable[apps_pb2.ReplicaSet | None]) -> list[apps_pb2.ReplicaSet]:
    """ReplicaSets that want pods (``FilterActiveReplicaSets``)."""
    return [rs for rs in replica_sets if rs is not None and replicas_of(rs) > 0]


def total_replicas(replica_sets: Iterable[apps_pb2.ReplicaSet | None]) -> int:
    """Sum of ``spec.replicas`` (``GetReplicaCountForReplicaSets``)."""
    return sum(replicas_of(rs) for rs in replica_sets if rs is not None)


def actual_replicas(replica_sets: Iterable[apps_pb2.ReplicaSet | None]) -> int:
    return sum(rs.status.replicas for rs in replica_sets if rs is not None)


def ready_replicas(replica_sets: Iterable[apps_pb2.ReplicaSet | None]) -> int:
    return sum(rs.status.readyReplicas for rs in replica_sets if rs is not None)


def available_replicas(replica_sets: Iterable[apps_pb2.ReplicaSet | None]) -> int:
    return sum(rs.status.availableReplicas for rs in replica_sets if rs is not None)


# -- templates ---------------------------------------------------------------------------------

def _without_hash(template: core_pb2.PodTemplateSpec) -> core_pb2.PodTemplateSpec:
    copy = core_pb2.PodTemplateSpec()
    copy.CopyFrom(template)
    copy.metadata.labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return copy


def _pruned(value: Any) -> Any:
    """JSON with empty objects and lists dropped: the Go zero value of a struct
    field (``creationTimestamp: {}``, ``resources: {}``) means the same as no field."""
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def equal_ignore_hash(a: core_pb2.PodTemplateSpec, b: core_pb2.PodTemplateSpec) -> bool:
    """Two templates are the same but for the ``pod-template-hash`` label
    (Kubernetes' ``EqualIgnoreHash``, a semantic comparison).

    The hash label is ignored because a Deployment's template never has it
    and the hash of a template may change between releases. Templates are
    compared as pruned JSON because a template that went through a client
    (``kubectl rollout undo`` copies one back from a ReplicaSet) may carry
    empty structs where the other has none."""
    x, y = _without_hash(a), _without_hash(b)
    if x == y:
        return True
    return bool(_pruned(message_to_dict(x)) == _pruned(message_to_dict(y)))


def find_new_replica_set(d: apps_pb2.Deployment, replica_sets: Sequence[apps_pb2.ReplicaSet]
                         ) -> apps_pb2.ReplicaSet | None:
    """The oldest ReplicaSet whose template is the Deployment's (there should be one)."""
    for rs in by_creation(replica_sets):
        if equal_ignore_hash(rs.spec.template, d.spec.template):
            return rs
    return None


def find_old_replica_sets(d: apps_pb2.Deployment, replica_sets: Sequence[apps_pb2.ReplicaSet]
                          ) -> list[apps_pb2.ReplicaSet]:
    new = find_new_replica_set(d, replica_sets)
    return [rs for rs in replica_sets if new is None or rs.metadata.uid != new.metadata.uid]


# -- rolling-update arithmetic -----------------------------------------------------------------

def is_rolling_update(d: apps_pb2.Deployment) -> bool:
    return d.spec.strategy.type in ("", "RollingUpdate")


def _rolling_params(d: apps_pb2.Deployment) -> tuple[Any, Any]:
    rolling = d.spec.strategy.rollingUpdate
    surge = rolling.maxSurge if rolling.HasField("maxSurge") else "25%"
    unavailable = rolling.maxUnavailable if rolling.HasField("maxUnavailable") else "25%"
    return surge, unavailable


def resolve_fenceposts(surge: Any, unavailable: Any, desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as numbers: surge rounds up, unavailability down,
    and both zero would deadlock, so unavailability becomes 1."""
    s = scaled_value(surge, desired, True)
    u = scaled_value(unavailable, desired, False)
    if s == 0 and u == 0:
        u = 1
    return s, u


def max_surge(d: apps_pb2.Deployment) -> int:
    if not is_rolling_update(d):
        return 0
    surge, unavailable = _rolling_params(d)
    return resolve_fenceposts(surge, unavailable, replicas_of(d))[0]


def max_unavailable(d: apps_pb2.Deployment) -> int:
    if not is_rolling_update(d) or replicas_of(d) == 0:
        return 0
    surge, unavailable = _rolling_params(d)
    _, u = resolve_fenceposts(surge, unavailable, replicas_of(d))
    return min(u, replicas_of(d))


def new_rs_new_replicas(d: apps_pb2.Deployment, all_rss: Sequence[apps_pb2.ReplicaSet],
                        new_rs: apps_pb2.ReplicaSet | None) -> int:
    """How many replicas the new ReplicaSet may have now (``NewRSNewReplicas``)."""
    new_count = replicas_of(new_rs) if new_rs is not None else 0
    if not is_rolling_update(d):
        return replicas_of(d)
    current = total_replicas(all_rss)
    max_total = replicas_of(d) + max_surge(d)
    if current >= max_total:
        return new_count
    scale_up = min(max_total - current, replicas_of(d) - new_count)
    return new_count + scale_up


def is_saturated(d: apps_pb2.Deployment, rs: apps_pb2.ReplicaSet | None) -> bool:
    """The ReplicaSet has every replica the Deployment wants, all available."""
    if rs is None:
        return False
    desired = rs.metadata.annotations.get(DESIRED_REPLICAS_ANNOTATION, "")
    try:
        desired_n = int(desired)
    except ValueError:
        return False
    want = replicas_of(d)
    return (desired_n == want and replicas_of(rs) == want
            and rs.status.availableReplicas == want)


def find_active_or_latest(new_rs: apps_pb2.ReplicaSet | None,
                          old_rss: Sequence[apps_pb2.ReplicaSet]) -> apps_pb2.ReplicaSet | None:
    """The only ReplicaSet with replicas, or the newest when none has any; None when
    several have replicas (then scaling is proportional)."""
    if new_rs is None and not old_rss:
        return None
    newest_first = list(reversed(by_creation(old_rss)))
    alive = active([*newest_first, new_rs])
    if not alive:
        return new_rs if new_rs is not None else newest_first[0]
    if len(alive) == 1:
        return alive[0]
    return None


def _annotated_int(rs: apps_pb2.ReplicaSet, key: str) -> int | None:
    try:
        return int(rs.metadata.annotations[key])
    except (KeyError, ValueError):
        return None


def _round_half_away(x: float) -> int:
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def replica_set_fraction(rs: apps_pb2.ReplicaSet, d: apps_pb2.Deployment) -> int:
    """How many replicas ``rs`` gains (or loses) in a proportional scale."""
    if replicas_of(d) == 0:
        return -replicas_of(rs)
    deployment_replicas = replicas_of(d) + max_surge(d)
    annotated = _annotated_int(rs, MAX_REPLICAS_ANNOTATION)
    if annotated is None:
        annotated = d.status.replicas
    if annotated == 0:
        return 0
    new_size = replicas_of(rs) * deployment_replicas / annotated
    return _round_half_away(new_size) - replicas_of(rs)


def get_proportion(rs: apps_pb2.ReplicaSet | None, d: apps_pb2.Deployment, to_add: int,
                   added: int) -> int:
    """``rs``'s share of ``to_add`` replicas, ``added`` of them handed out already."""
    if rs is None or replicas_of(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# -- annotations -------------------------------------------------------------------------------

def set_replicas_annotations(rs: apps_pb2.ReplicaSet, desired: int, max_replicas: int) -> bool:
    """Record the Deployment's size on ``rs`` (for proportional scaling); True if changed."""
    changed = False
    ann = rs.metadata.annotations
    for key, value in ((DESIRED_REPLICAS_ANNOTATION, str(desired)),
                       (MAX_REPLICAS_ANNOTATION, str(max_replicas))):
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    return changed


def copy_deployment_annotations(d: apps_pb2.Deployment, rs: apps_pb2.ReplicaSet) -> bool:
    changed = False
    for key, value in d.metadata.annotations.items():
        if key in SKIPPED_ANNOTATIONS or rs.metadata.annotations.get(key) == value:
            continue
        rs.metadata.annotations[key] = value
        changed = True
    return changed


def set_new_replica_set_annotations(d: apps_pb2.Deployment, rs: apps_pb2.ReplicaSet,
                                    new_revision: int, exists: bool,
                                    history_limit_chars: int = MAX_REVISION_HISTORY_CHARS) -> bool:
    """Annotate the new ReplicaSet: the Deployment's annotations, its revision and,
    when an old ReplicaSet becomes new again (a rollback), the revisions it had
    before in ``revision-history``. True if anything changed."""
    changed = copy_deployment_annotations(d, rs)
    ann = rs.metadata.annotations
    old_text = ann.get(REVISION_ANNOTATION, "")
    try:
        old = int(old_text) if old_text else 0
    except ValueError:
        return changed  # not ours to fix
    if old < new_revision:
        ann[REVISION_ANNOTATION] = str(new_revision)
        changed = True
        if old_text:
            history = ann.get(REVISION_HISTORY_ANNOTATION, "")
            revisions = [r for r in history.split(",") if r] if history else []
            revisions.append(old_text)
            while revisions and len(",".join(revisions)) > history_limit_chars:
                revisions.pop(0)
            ann[REVISION_HISTORY_ANNOTATION] = ",".join(revisions)
    if not exists and set_replicas_annotations(rs, replicas_of(d),
                                               replicas_of(d) + max_surge(d)):
        changed = True
    return changed


def set_deployment_revision(d: apps_pb2.Deployment, rev: str) -> bool:
    if d.metadata.annotations.get(REVISION_ANNOTATION) == rev:
        return False
    d.metadata.annotations[REVISION_ANNOTATION] = rev
    return True


# -- conditions --------------------------------------------------------------------------------

def get_condition(status: apps_pb2.DeploymentStatus, type_: str
                  ) -> apps_pb2.DeploymentCondition | None:
    for cond in status.conditions:
        if cond.type == type_:
            return cond
    return None


def new_condition(type_: str, status: str, reason: str, message: str,
                  now: datetime) -> apps_pb2.DeploymentCondition:
    stamp = time_to_proto(now)
    return apps_pb2.DeploymentCondition(type=type_, status=status, reason=reason,
                                        message=message, lastUpdateTime=stamp,
                                        lastTransitionTime=stamp)


def set_condition(status: apps_pb2.DeploymentStatus,
                  cond: apps_pb2.DeploymentCondition) -> None:
    """Set ``cond``; an unchanged (status, reason) keeps the old one as it is, and an
    unchanged status keeps its lastTransitionTime (``SetDeploymentCondition``)."""
    current = get_condition(status, cond.type)
    if current is not None and current.status == cond.status and current.reason == cond.reason:
        return
    if current is not None and current.status == cond.status:
        cond.lastTransitionTime.CopyFrom(current.lastTransitionTime)
    remove_condition(status, cond.type)
    status.conditions.append(cond)


def remove_condition(status: apps_pb2.DeploymentStatus, type_: str) -> None:
    keep = [c for c in status.conditions if c.type != type_]
    if len(keep) != len(status.conditions):
        del status.conditions[:]
        status.conditions.extend(keep)


# -- status ------------------------------------------------------------------------------------

def calculate_status(all_rss: Sequence[apps_pb2.ReplicaSet], new_rs: apps_pb2.ReplicaSet | None,
                     d: apps_pb2.Deployment, now: datetime) -> apps_pb2.DeploymentStatus:
    """What the Deployment reports for its ReplicaSets, with the Available condition."""
    available = available_replicas(all_rss)
    unavailable = max(total_replicas(all_rss) - available, 0)
    status = apps_pb2.DeploymentStatus()
    status.observedGeneration = d.metadata.generation
    status.replicas = actual_replicas(all_rss)
    status.updatedReplicas = actual_replicas([new_rs])
    status.readyReplicas = ready_replicas(all_rss)
    status.availableReplicas = available
    status.unavailableReplicas = unavailable
    if d.status.HasField("collisionCount"):
        status.collisionCount = d.status.collisionCount
    status.conditions.extend(d.status.conditions)
    if available >= replicas_of(d) - max_unavailable(d):
        set_condition(status, new_condition(AVAILABLE, "True", REASON_MIN_AVAILABLE,
                                            "Deployment has minimum availability.", now))
    else:
        set_condition(status, new_condition(AVAILABLE, "False", REASON_MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.",
                                            now))
    return status


def deployment_complete(d: apps_pb2.Deployment, status: apps_pb2.DeploymentStatus) -> bool:
    """Every replica updated and available, and the latest spec observed."""
    want = replicas_of(d)
    return (status.updatedReplicas == want and status.replicas == want
            and status.availableReplicas == want
            and status.observedGeneration >= d.metadata.generation)


def deployment_progressing(d: apps_pb2.Deployment, status: apps_pb2.DeploymentStatus) -> bool:
    """The rollout moved since the last status: more updated, ready or available
    replicas, or fewer old ones."""
    old = d.status
    return (status.updatedReplicas > old.updatedReplicas
            or status.replicas - status.updatedReplicas < old.replicas - old.updatedReplicas
            or status.readyReplicas > old.readyReplicas
            or status.availableReplicas > old.availableReplicas)


def has_progress_deadline(d: apps_pb2.Deployment) -> bool:
    return d.spec.HasField("progressDeadlineSeconds") and \
        d.spec.progressDeadlineSeconds != 2**31 - 1


def progress_deadline(d: apps_pb2.Deployment) -> int:
    return d.spec.progressDeadlineSeconds if d.spec.HasField("progressDeadlineSeconds") else 600


def deployment_timed_out(d: apps_pb2.Deployment, status: apps_pb2.DeploymentStatus,
                         now: datetime) -> bool:
    """No progress for progressDeadlineSeconds since the Progressing condition last moved."""
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, PROGRESSING)
    if cond is None or cond.reason == REASON_NEW_RS_AVAILABLE:
        return False
    if cond.reason == REASON_TIMED_OUT:
        return True
    since = time_from_proto(cond.lastUpdateTime)
    return since + timedelta(seconds=progress_deadline(d)) < now
