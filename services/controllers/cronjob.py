"""CronJob controller: Jobs on a schedule, with the injected clock.

Level-triggered over CronJob keys. ``sync``:

1. Bring ``status.active`` in line with the Jobs the CronJob controls: drop
   Jobs that are gone or finished (a Complete one moves
   ``lastSuccessfulTime``; SawCompletedJob Event), add running ones it lost.
2. Delete finished Jobs beyond ``successfulJobsHistoryLimit`` /
   ``failedJobsHistoryLimit``, oldest first.
3. Unless suspended: find the most recent scheduled time since
   ``lastScheduleTime`` (or creation) that has not run, in ``spec.timeZone``.
   Too late for ``startingDeadlineSeconds`` -> MissSchedule Event. Otherwise
   apply ``concurrencyPolicy``: Allow runs alongside, Forbid waits for the
   active Job (JobAlreadyActive), Replace deletes the active Jobs first. The
   Job is named ``<cronjob>-<scheduled unix minutes>`` and owned by the
   CronJob; ``lastScheduleTime`` records the run.
4. Come back at the next scheduled time (``enqueue_after`` on the clock).

Bad schedules and unknown time zones are Warning Events
(UnparseableSchedule, UnknownTimeZone), not retries: nothing would change.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pilothouse.api.timeutil import format_time, time_from_proto, time_to_proto
from pilothouse.client import APIError, copy_object, split_key
from pilothouse.client.informer import object_of
from pilothouse.gen.k8s.batch.v1 import batch_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.base import Controller, ControllerContext, ControllerDescriptor
from pilothouse.services.controllers.cron import ScheduleError, parse_schedule
from pilothouse.services.controllers.cronjob_utils import (
    TOO_MANY_MISSED,
    due_time,
    history_to_delete,
    load_time_zone,
    new_job,
)
from pilothouse.services.controllers.job_utils import job_finished_condition
from pilothouse.services.controllers.pod_utils import controller_ref, is_owned_by
from pilothouse.services.controllers.settings import workers

__all__ = ["DESCRIPTOR", "CronJobController"]

# Wake a little after the scheduled time, never before it.
REQUEUE_MARGIN = 0.1


def _job_ref(job: batch_pb2.Job) -> core_pb2.ObjectReference:
    return core_pb2.ObjectReference(kind="Job", apiVersion="batch/v1",
                                    namespace=job.metadata.namespace, name=job.metadata.name,
                                    uid=job.metadata.uid,
                                    resourceVersion=job.metadata.resourceVersion)


class CronJobController(Controller):
    name = "cronjob"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.cronjobs = ctx.informers.informer_for(batch_pb2.CronJob)
        self.jobs = ctx.informers.informer_for(batch_pb2.Job)
        self.cronjobs.add_event_handler(
            on_add=self._enqueue_obj,
            on_update=lambda old, new: self._enqueue_obj(new))
        self.jobs.add_event_handler(
            on_add=self._job_changed,
            on_update=lambda old, new: self._job_changed(new),
            on_delete=self._job_changed)

    def _enqueue_obj(self, obj: Any) -> None:
        o = object_of(obj)
        self.enqueue(f"{o.metadata.namespace}/{o.metadata.name}")

    def _job_changed(self, obj: Any) -> None:
        job = object_of(obj)
        ref = controller_ref(job)
        if ref is not None and ref.kind == "CronJob":
            self.enqueue(f"{job.metadata.namespace}/{ref.name}")

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        cronjob = self.cronjobs.get(name, namespace)
        if cronjob is None:
            return  # its Jobs go with it (garbage collector)
        jobs = [j for j in self.jobs.list(namespace) if is_owned_by(j, cronjob)]
        now = self.ctx.now()
        status = copy_object(cronjob).status
        self._reconcile_active(cronjob, status, jobs)
        await self._clean_history(cronjob, jobs)
        if cronjob.metadata.HasField("deletionTimestamp") or cronjob.spec.suspend:
            await self._write_status(cronjob, status)
            return
        try:
            tz = load_time_zone(cronjob.spec.timeZone)
        except ValueError as exc:
            self.recorder.event(cronjob, "Warning", "UnknownTimeZone", str(exc))
            await self._write_status(cronjob, status)
            return
        try:
            schedule = parse_schedule(cronjob.spec.schedule)
        except ScheduleError as exc:
            self.recorder.event(cronjob, "Warning", "UnparseableSchedule",
                                f"unparseable schedule: {cronjob.spec.schedule!r} : {exc}")
            await self._write_status(cronjob, status)
            return
        if status.HasField("lastScheduleTime"):
            earliest = time_from_proto(status.lastScheduleTime)
        else:
            earliest = time_from_proto(cronjob.metadata.creationTimestamp)
        if cronjob.spec.HasField("startingDeadlineSeconds"):
            earliest = max(earliest,
                           now - timedelta(seconds=cronjob.spec.startingDeadlineSeconds))
        due = due_time(schedule, earliest, now, tz)
        if due.next is not None:
            self.enqueue_after(key, (due.next - now).total_seconds() + REQUEUE_MARGIN)
        if due.scheduled is None:
            await self._write_status(cronjob, status)
            return
        scheduled = due.scheduled
        if due.missed > TOO_MANY_MISSED:
            self.recorder.event(cronjob, "Warning", "TooManyMissedTimes",
                                f"too many missed start times: {due.missed}. Set or decrease "
                                ".spec.startingDeadlineSeconds or check clock skew")
        if cronjob.spec.HasField("startingDeadlineSeconds") and \
                scheduled + timedelta(seconds=cronjob.spec.startingDeadlineSeconds) < now:
            self.recorder.event(cronjob, "Warning", "MissSchedule",
                                f"Missed scheduled time to start a job: "
                                f"{format_time(scheduled)}")
            await self._write_status(cronjob, status)
            return
        policy = cronjob.spec.concurrencyPolicy or "Allow"
        if policy == "Forbid" and status.active:
            self.recorder.event(cronjob, "Normal", "JobAlreadyActive",
                                "Not starting job because prior execution is running and "
                                "concurrency policy is Forbid")
            await self._write_status(cronjob, status)
            return
        if policy == "Replace":
            for ref in list(status.active):
                await self._delete_job(cronjob, ref.name, namespace)
            del status.active[:]
        job = await self._create_job(cronjob, scheduled)
        if job is not None and not any(r.uid == job.metadata.uid for r in status.active):
            status.active.append(_job_ref(job))
        status.lastScheduleTime.CopyFrom(time_to_proto(scheduled))
        await self._write_status(cronjob, status)

    def _reconcile_active(self, cronjob: batch_pb2.CronJob, status: batch_pb2.CronJobStatus,
                          jobs: list[batch_pb2.Job]) -> None:
        by_uid = {j.metadata.uid: j for j in jobs}
        keep = []
        for ref in status.active:
            job = by_uid.get(ref.uid)
            if job is None:
                continue  # gone (or not ours)
            cond = job_finished_condition(job)
            if cond is None:
                keep.append(ref)
                continue
            self.recorder.event(cronjob, "Normal", "SawCompletedJob",
                                f"Saw completed job: {job.metadata.name}, "
                                f"condition: {cond.type}")
            if cond.type == "Complete" and job.status.HasField("completionTime"):
                done = time_from_proto(job.status.completionTime)
                if not status.HasField("lastSuccessfulTime") or \
                        time_from_proto(status.lastSuccessfulTime) < done:
                    status.lastSuccessfulTime.CopyFrom(time_to_proto(done))
        known = {r.uid for r in keep}
        for job in jobs:
            if job_finished_condition(job) is None and job.metadata.uid not in known and \
                    not job.metadata.HasField("deletionTimestamp"):
                keep.append(_job_ref(job))
        del status.active[:]
        status.active.extend(keep)

    async def _clean_history(self, cronjob: batch_pb2.CronJob, jobs: list[batch_pb2.Job]) -> None:
        spec = cronjob.spec
        doomed = history_to_delete(
            jobs,
            spec.successfulJobsHistoryLimit if spec.HasField("successfulJobsHistoryLimit")
            else None,
            spec.failedJobsHistoryLimit if spec.HasField("failedJobsHistoryLimit") else None)
        for job in doomed:
            if not job.metadata.HasField("deletionTimestamp"):
                await self._delete_job(cronjob, job.metadata.name, job.metadata.namespace)

    async def _create_job(self, cronjob: batch_pb2.CronJob,
                          scheduled: datetime) -> batch_pb2.Job | None:
        job = new_job(cronjob, scheduled)
        try:
            created = await self.client.create(job)
        except APIError as exc:
            if not exc.is_already_exists():
                self.recorder.event(cronjob, "Warning", "FailedCreate",
                                    f"Error creating job: {exc.message}")
                raise
            # This run was started already (by us before a crash, or a retry).
            existing = self.jobs.get(job.metadata.name, job.metadata.namespace)
            return existing if existing is not None and is_owned_by(existing, cronjob) else None
        self.recorder.event(cronjob, "Normal", "SuccessfulCreate",
                            f"Created job {created.metadata.name}")
        return created

    async def _delete_job(self, cronjob: batch_pb2.CronJob, name: str, namespace: str) -> None:
        try:
            await self.client.delete(batch_pb2.Job, name, namespace=namespace,
                                     propagation_policy="Background")
        except APIError as exc:
            if not exc.is_not_found():
                self.recorder.event(cronjob, "Warning", "FailedDelete",
                                    f"Deleted job: {exc.message}")
                raise
            return
        self.recorder.event(cronjob, "Normal", "SuccessfulDelete", f"Deleted job {name}")

    async def _write_status(self, cronjob: batch_pb2.CronJob,
                            status: batch_pb2.CronJobStatus) -> None:
        if status == cronjob.status:
            return
        new = copy_object(cronjob)
        new.status.CopyFrom(status)
        await self.client.update_status(new)


async def start_cronjob(ctx: ControllerContext) -> None:
    controller = CronJobController(ctx)
    ctx.informers.start()
    await controller.run(workers=workers(ctx, controller.name))


DESCRIPTOR = ControllerDescriptor("cronjob", start_cronjob)
