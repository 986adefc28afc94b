"""Pure helpers of the CronJob controller: which scheduled time is due, the
Job a CronJob creates for it, and which finished Jobs history keeps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pilothouse.api.timeutil import format_time, time_from_proto
from pilothouse.gen.k8s.batch.v1 import batch_pb2
from pilothouse.services.controllers.cron import Schedule
from pilothouse.services.controllers.job_utils import job_finished_condition
from pilothouse.services.controllers.pod_utils import new_owner_reference

__all__ = [
    "SCHEDULED_TIMESTAMP",
    "DueTime",
    "due_time",
    "history_to_delete",
    "job_name",
    "load_time_zone",
    "new_job",
]

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
TOO_MANY_MISSED = 100


def load_time_zone(name: str) -> tzinfo:
    """The zone of ``spec.timeZone`` (empty: UTC, where the controller-manager runs);
    raises ValueError for an unknown name."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True)
class DueTime:
    """The most recent scheduled time not yet run (None: nothing due), how many were
    missed (more than 100 gets a warning), and the next time after now."""

    scheduled: datetime | None
    missed: int
    next: datetime | None


def due_time(schedule: Schedule, earliest: datetime, now: datetime,
             tz: tzinfo) -> DueTime:
    """Walk the schedule from ``earliest`` to ``now`` (both aware) in zone ``tz``."""
    t = earliest.astimezone(tz)
    local_now = now.astimezone(tz)
    last: datetime | None = None
    missed = 0
    # Far behind (a controller down for weeks, a per-minute schedule): jump
    # ahead instead of walking every missed minute; the count is only used
    # to warn, so "more than 100" is all it has to get right.
    while True:
        nxt = schedule.next(t)
        if nxt is None or nxt > local_now:
            return DueTime(last, missed, nxt)
        last, missed, t = nxt, missed + 1, nxt
        if missed == TOO_MANY_MISSED * 10:
            interval = (nxt - earliest.astimezone(tz)) / missed
            skip_to = local_now - 2 * max(interval, timedelta(seconds=1))
            if skip_to > t:
                t = skip_to


def job_name(cronjob_name: str, scheduled: datetime) -> str:
    """``<cronjob>-<scheduled time in unix minutes>``: the same name for the same run,
    so two controllers (or a retry) cannot start one run twice."""
    return f"{cronjob_name}-{int(scheduled.timestamp()) // 60}"


def new_job(cronjob: batch_pb2.CronJob, scheduled: datetime) -> batch_pb2.Job:
    template = cronjob.spec.jobTemplate
    job = batch_pb2.Job()
    job.metadata.name = job_name(cronjob.metadata.name, scheduled)
    job.metadata.namespace = cronjob.metadata.namespace
    job.metadata.labels.update(template.metadata.labels)
    job.metadata.annotations.update(template.metadata.annotations)
    job.metadata.annotations[SCHEDULED_TIMESTAMP] = format_time(scheduled)
    job.metadata.ownerReferences.append(new_owner_reference(cronjob, "batch/v1", "CronJob"))
    job.spec.CopyFrom(template.spec)
    return job


def _start(job: batch_pb2.Job) -> datetime:
    if job.status.HasField("startTime"):
        return time_from_proto(job.status.startTime)
    return time_from_proto(job.metadata.creationTimestamp)


def history_to_delete(jobs: Sequence[batch_pb2.Job], successful_limit: int | None,
                      failed_limit: int | None) -> list[batch_pb2.Job]:
    """Finished Jobs beyond the history limits, oldest first (None: keep all)."""
    out: list[batch_pb2.Job] = []
    for wanted, limit in (("Complete", successful_limit), ("Failed", failed_limit)):
        if limit is None:
            continue
        done = []
        for j in jobs:
            cond = job_finished_condition(j)
            if cond is not None and cond.type == wanted:
                done.append(j)
        done.sort(key=lambda j: (_start(j), j.metadata.name))
        out.extend(done[:max(len(done) - limit, 0)])
    return out
