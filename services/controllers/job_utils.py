"""Pure helpers of the Job controller: completion indexes, pod classification,
back-off, and the pods a Job creates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from pilothouse.gen.k8s.batch.v1 import batch_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.pod_utils import is_pod_terminating, pod_from_template

__all__ = [
    "COMPLETION_INDEX",
    "JOB_TRACKING_FINALIZER",
    "backoff_delay",
    "format_indexes",
    "is_finished",
    "job_finished_condition",
    "new_job_pod",
    "parse_indexes",
    "pod_index",
    "pod_outcome",
]

JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOB_INDEX_ENV = "JOB_COMPLETION_INDEX"
CONTROLLER_NAME = "kubernetes.io/job-controller"
# Kubernetes' pod failure back-off: 10 s doubling, at most 6 minutes.
BACKOFF_BASE = 10.0
BACKOFF_MAX = 360.0


def parse_indexes(text: str) -> set[int]:
    """``"0-2,5"`` -> {0, 1, 2, 5}; malformed parts are ignored (status is ours to rewrite)."""
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, sep, hi = part.partition("-")
        try:
            if sep:
                out.update(range(int(lo), int(hi) + 1))
            else:
                out.add(int(lo))
        except ValueError:
            continue
    return out


def format_indexes(indexes: Iterable[int]) -> str:
    """{0, 1, 2, 5} -> ``"0-2,5"`` (ranges of consecutive indexes)."""
    parts: list[str] = []
    ordered = sorted(set(indexes))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def pod_index(pod: core_pb2.Pod) -> int | None:
    """The completion index of a pod of an Indexed Job (annotation, else label)."""
    text = pod.metadata.annotations.get(COMPLETION_INDEX) or \
        pod.metadata.labels.get(COMPLETION_INDEX)
    if text is None or not text.isdigit():
        return None
    return int(text)


def pod_outcome(pod: core_pb2.Pod) -> str:
    """``succeeded``, ``failed`` or ``active`` as the Job counts a pod.

    A pod being deleted before it succeeded counts as failed (it will not
    finish its work), as Kubernetes counts it.
    """
    if pod.status.phase == "Succeeded":
        return "succeeded"
    if pod.status.phase == "Failed" or is_pod_terminating(pod):
        return "failed"
    return "active"


def is_finished(job: batch_pb2.Job) -> bool:
    """The Job has a Complete or Failed condition that is True."""
    return job_finished_condition(job) is not None


def job_finished_condition(job: batch_pb2.Job) -> batch_pb2.JobCondition | None:
    for cond in job.status.conditions:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return cond
    return None


def backoff_delay(failures: int) -> float:
    """How long to wait before replacing pods after ``failures`` failures."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_BASE * 2 ** (failures - 1), BACKOFF_MAX)


def restart_count(pods: Sequence[core_pb2.Pod]) -> int:
    """Container restarts of pods with restartPolicy OnFailure: they count as failures."""
    return sum(cs.restartCount for p in pods if p.spec.restartPolicy == "OnFailure"
               for cs in list(p.status.containerStatuses) + list(p.status.initContainerStatuses))


def new_job_pod(job: batch_pb2.Job, index: int | None) -> core_pb2.Pod:
    """A pod for ``job`` (for completion ``index`` of an Indexed Job), with the
    job-tracking finalizer."""
    prefix = f"{job.metadata.name}-" if index is None else f"{job.metadata.name}-{index}-"
    pod = pod_from_template(job.spec.template, job, "batch/v1", "Job", generate_name=prefix)
    pod.metadata.finalizers.append(JOB_TRACKING_FINALIZER)
    if index is not None:
        pod.metadata.annotations[COMPLETION_INDEX] = str(index)
        pod.metadata.labels[COMPLETION_INDEX] = str(index)
        if not pod.spec.hostname:
            pod.spec.hostname = f"{job.metadata.name}-{index}"
        for container in list(pod.spec.initContainers) + list(pod.spec.containers):
            if any(e.name == JOB_INDEX_ENV for e in container.env):
                continue
            env = container.env.add(name=JOB_INDEX_ENV)
            env.valueFrom.fieldRef.apiVersion = "v1"
            env.valueFrom.fieldRef.fieldPath = f"metadata.annotations['{COMPLETION_INDEX}']"
    return pod


def seconds_since(then: datetime, now: datetime) -> float:
    return (now - then).total_seconds()
