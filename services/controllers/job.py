"""Job controller (and the ttl-after-finished controller).

Level-triggered over Job keys. ``sync``:

1. **Tracking with finalizers.** Every pod the Job creates carries the
   ``batch.kubernetes.io/job-tracking`` finalizer, so a finished pod cannot
   vanish before it is counted. Finished pods (Succeeded, Failed, or
   deleted before succeeding) go into ``status.uncountedTerminatedPods``
   (one status write), their finalizers are removed, then they move into
   ``succeeded``/``failed`` (and ``completedIndexes``) — Kubernetes' order,
   so a crash anywhere neither loses nor double-counts a pod.
2. **Finishing.** Failures (plus container restarts under
   ``restartPolicy: OnFailure``) above ``backoffLimit`` fail the Job
   (BackoffLimitExceeded); running longer than ``activeDeadlineSeconds``
   since ``startTime`` fails it (DeadlineExceeded); enough successes
   complete it. Conditions are written as Kubernetes 1.32 writes them:
   FailureTarget + Failed, or SuccessCriteriaMet + Complete (with
   ``completionTime``). Remaining active pods are deleted.
3. **Suspend** deletes active pods and sets the Suspended condition;
   resuming resets ``startTime``.
4. **Pods.** Keep ``min(parallelism, remaining completions)`` active; an
   Indexed Job gives each pod a completion index (annotation and label
   ``batch.kubernetes.io/job-completion-index``, env ``JOB_COMPLETION_INDEX``,
   hostname ``<job>-<index>``). After failures, new pods wait out a back-off
   of 10 s doubling up to 6 min. Expectations keep a lagging cache from
   creating twice.

Not done: podFailurePolicy, successPolicy, backoffLimitPerIndex, adoption of
orphaned pods matching the selector (only pods whose controller reference
is the Job are its pods).

The ttl-after-finished controller deletes a finished Job (foreground, so
its pods go first) ``ttlSecondsAfterFinished`` after it finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pilothouse.api.timeutil import time_from_proto, time_to_proto
from pilothouse.client import APIError, copy_object, split_key
from pilothouse.client.informer import object_of
from pilothouse.gen.k8s.batch.v1 import batch_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.base import Controller, ControllerContext, ControllerDescriptor
from pilothouse.services.controllers.job_utils import (
    CONTROLLER_NAME,
    JOB_TRACKING_FINALIZER,
    backoff_delay,
    format_indexes,
    is_finished,
    job_finished_condition,
    new_job_pod,
    parse_indexes,
    pod_index,
    pod_outcome,
    restart_count,
)
from pilothouse.services.controllers.pod_utils import (
    Expectations,
    controller_ref,
    is_owned_by,
    is_pod_ready,
    set_condition,
)
from pilothouse.services.controllers.settings import workers

__all__ = ["DESCRIPTOR", "TTL_DESCRIPTOR", "JobController", "TTLAfterFinishedController"]


def _job_key_of_pod(pod: core_pb2.Pod) -> str | None:
    ref = controller_ref(pod)
    if ref is None or ref.kind != "Job":
        return None
    return f"{pod.metadata.namespace}/{ref.name}"


class JobController(Controller):
    name = "job"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.jobs = ctx.informers.informer_for(batch_pb2.Job)
        self.pods = ctx.informers.informer_for(core_pb2.Pod)
        self.expectations = Expectations(ctx.clock.monotonic)
        # Per Job uid: (failures counted, when that count last grew) for back-off.
        self._failures: dict[str, tuple[int, datetime]] = {}
        # Per Job key: the resourceVersion of the last status this controller wrote. A
        # cached Job older than that is stale: it may not yet count pods whose tracking
        # finalizer we already removed, and acting on it would create pods too many. The
        # informer's event for our write brings the key back.
        self._written: dict[str, int] = {}
        self.jobs.add_event_handler(
            on_add=self._enqueue_job,
            on_update=lambda old, new: self._enqueue_job(new),
            on_delete=self._enqueue_job)
        self.pods.add_event_handler(
            on_add=self._pod_added,
            on_update=self._pod_updated,
            on_delete=self._pod_deleted)

    def _enqueue_job(self, obj: Any) -> None:
        job = object_of(obj)
        self.enqueue(f"{job.metadata.namespace}/{job.metadata.name}")

    def _pod_added(self, pod: core_pb2.Pod) -> None:
        key = _job_key_of_pod(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            self.enqueue(key)

    def _pod_updated(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        for key in {_job_key_of_pod(old), _job_key_of_pod(new)} - {None}:
            assert key is not None
            if new.metadata.HasField("deletionTimestamp"):
                self.expectations.deletion_observed(key, new.metadata.uid)
            self.enqueue(key)

    def _pod_deleted(self, obj: Any) -> None:
        pod = object_of(obj)
        key = _job_key_of_pod(pod)
        if key is not None:
            self.expectations.deletion_observed(key, pod.metadata.uid)
            self.enqueue(key)

    # -- sync ------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        job = self.jobs.get(name, namespace)
        if job is None:
            self.expectations.forget(key)
            self._written.pop(key, None)
            await self._release_pods_of_gone_job(namespace, name)
            return
        if job.spec.managedBy and job.spec.managedBy != CONTROLLER_NAME:
            return  # another controller owns this Job
        if _revision(job) < self._written.get(key, 0):
            return  # our own newer status is on its way to the cache
        pods = [p for p in self.pods.list(namespace) if is_owned_by(p, job)]
        job = await self._track_finished_pods(job, pods)
        if is_finished(job):
            await self._delete_pods(key, job, [p for p in pods if pod_outcome(p) == "active"])
            return
        if not self.expectations.satisfied(key):
            return  # pod events we wait for will bring us back
        await self._reconcile(key, job, pods)

    async def _track_finished_pods(self, job: batch_pb2.Job,
                                   pods: list[core_pb2.Pod]) -> batch_pb2.Job:
        tracked = [p for p in pods if JOB_TRACKING_FINALIZER in p.metadata.finalizers
                   and pod_outcome(p) != "active"]
        uncounted = job.status.uncountedTerminatedPods
        known = set(uncounted.succeeded) | set(uncounted.failed)
        fresh = [p for p in tracked if p.metadata.uid not in known]
        indexed = job.spec.completionMode == "Indexed"
        if fresh:
            status_job = copy_object(job)
            u = status_job.status.uncountedTerminatedPods
            completed = parse_indexes(job.status.completedIndexes)
            for p in fresh:
                if pod_outcome(p) == "succeeded":
                    u.succeeded.append(p.metadata.uid)
                    index = pod_index(p)
                    if indexed and index is not None and index < job.spec.completions:
                        completed.add(index)
                else:
                    u.failed.append(p.metadata.uid)
            if indexed:
                status_job.status.completedIndexes = format_indexes(completed)
            job = await self._update_status(status_job)
        released: set[str] = set()
        for p in tracked:
            if await self._remove_finalizer(p):
                released.add(p.metadata.uid)
        # Uncounted pods whose finalizer is gone (now, or before: pod absent or clean) move.
        still_held = {p.metadata.uid for p in tracked} - released
        uncounted = job.status.uncountedTerminatedPods
        move_ok = [u for u in uncounted.succeeded if u not in still_held]
        move_failed = [u for u in uncounted.failed if u not in still_held]
        if not move_ok and not move_failed:
            return job
        status_job = copy_object(job)
        st = status_job.status
        if indexed:
            st.succeeded = len(parse_indexes(st.completedIndexes))
        else:
            st.succeeded = st.succeeded + len(move_ok)
        st.failed = st.failed + len(move_failed)
        keep_ok = [u for u in st.uncountedTerminatedPods.succeeded if u not in move_ok]
        keep_failed = [u for u in st.uncountedTerminatedPods.failed if u not in move_failed]
        del st.uncountedTerminatedPods.succeeded[:]
        del st.uncountedTerminatedPods.failed[:]
        st.uncountedTerminatedPods.succeeded.extend(keep_ok)
        st.uncountedTerminatedPods.failed.extend(keep_failed)
        return await self._update_status(status_job)

    async def _update_status(self, job: batch_pb2.Job) -> batch_pb2.Job:
        written = await self.client.update_status(job)
        key = f"{written.metadata.namespace}/{written.metadata.name}"
        self._written[key] = _revision(written)
        return written

    async def _remove_finalizer(self, pod: core_pb2.Pod) -> bool:
        remaining = [f for f in pod.metadata.finalizers if f != JOB_TRACKING_FINALIZER]
        try:
            await self.client.patch(core_pb2.Pod, pod.metadata.name,
                                    {"metadata": {"finalizers": remaining or None}},
                                    namespace=pod.metadata.namespace)
        except APIError as exc:
            if not exc.is_not_found():
                raise
        return True

    async def _release_pods_of_gone_job(self, namespace: str, name: str) -> None:
        for pod in self.pods.list(namespace):
            ref = controller_ref(pod)
            if ref is not None and ref.kind == "Job" and ref.name == name \
                    and JOB_TRACKING_FINALIZER in pod.metadata.finalizers:
                await self._remove_finalizer(pod)

    async def _reconcile(self, key: str, job: batch_pb2.Job, pods: list[core_pb2.Pod]) -> None:
        now = self.ctx.now()
        spec = job.spec
        status = copy_object(job).status
        active = [p for p in pods if pod_outcome(p) == "active"]
        indexed = spec.completionMode == "Indexed"
        completed = parse_indexes(status.completedIndexes)
        succeeded = len(completed) if indexed else \
            status.succeeded + len(status.uncountedTerminatedPods.succeeded)
        failed = status.failed + len(status.uncountedTerminatedPods.failed)
        self._note_failures(job, failed, now)

        if spec.suspend:
            await self._delete_pods(key, job, active)
            changed = set_condition(status.conditions, "Suspended", "True", "JobSuspended",
                                    "Job suspended", now)
            if changed:
                self.recorder.event(job, "Normal", "Suspended", "Job suspended")
            status.active, status.ready = 0, 0
            await self._write_status(job, status)
            return
        suspended = next((c for c in status.conditions if c.type == "Suspended"), None)
        if suspended is not None and suspended.status == "True":
            set_condition(status.conditions, "Suspended", "False", "JobResumed",
                          "Job resumed", now)
            status.ClearField("startTime")
            self.recorder.event(job, "Normal", "Resumed", "Job resumed")
        if not status.HasField("startTime"):
            status.startTime.CopyFrom(time_to_proto(now))

        # Finished?
        failure = None
        if failed + restart_count(active) > spec.backoffLimit:
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif spec.HasField("activeDeadlineSeconds"):
            deadline = time_from_proto(status.startTime) + \
                timedelta(seconds=spec.activeDeadlineSeconds)
            if now >= deadline:
                failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
            else:
                self.enqueue_after(key, (deadline - now).total_seconds())
        if spec.HasField("completions"):
            complete = succeeded >= spec.completions
        else:
            complete = succeeded > 0 and not active
        if failure is not None:
            reason, message = failure
            await self._delete_pods(key, job, active)
            set_condition(status.conditions, "FailureTarget", "True", reason, message, now)
            set_condition(status.conditions, "Failed", "True", reason, message, now,
                          probe_time=True)
            status.active, status.ready = 0, 0
            self.recorder.event(job, "Warning", reason, message)
            await self._write_status(job, status)
            return
        if complete:
            await self._delete_pods(key, job, active)
            message = "Reached expected number of succeeded pods"
            set_condition(status.conditions, "SuccessCriteriaMet", "True", "CompletionsReached",
                          message, now)
            set_condition(status.conditions, "Complete", "True", "CompletionsReached", message,
                          now, probe_time=True)
            status.completionTime.CopyFrom(time_to_proto(now))
            status.active, status.ready = 0, 0
            self.recorder.event(job, "Normal", "Completed", "Job completed")
            await self._write_status(job, status)
            return

        active, created = await self._manage_pods(key, job, active, succeeded, completed, now)
        status.active = len(active) + created
        status.ready = sum(1 for p in active if is_pod_ready(p))
        status.terminating = sum(1 for p in pods if p.metadata.HasField("deletionTimestamp")
                                 and p.status.phase not in ("Succeeded", "Failed"))
        await self._write_status(job, status)

    def _note_failures(self, job: batch_pb2.Job, failed: int, now: datetime) -> None:
        seen = self._failures.get(job.metadata.uid)
        if seen is None or failed > seen[0]:
            self._failures[job.metadata.uid] = (failed, now)

    def _backoff_remaining(self, job: batch_pb2.Job, now: datetime) -> float:
        seen = self._failures.get(job.metadata.uid)
        if seen is None or seen[0] == 0:
            return 0.0
        ready_at = seen[1] + timedelta(seconds=backoff_delay(seen[0]))
        return max((ready_at - now).total_seconds(), 0.0)

    async def _manage_pods(self, key: str, job: batch_pb2.Job, active: list[core_pb2.Pod],
                           succeeded: int, completed: set[int],
                           now: datetime) -> tuple[list[core_pb2.Pod], int]:
        """Create or delete pods; returns the active pods kept and how many were created."""
        spec = job.spec
        parallelism = spec.parallelism
        if spec.completionMode == "Indexed":
            return await self._manage_indexed(key, job, active, completed, now)
        if spec.HasField("completions"):
            want = min(parallelism, max(spec.completions - succeeded, 0))
        else:
            # A work-queue Job: once one pod succeeded, no new pods; the rest finish.
            want = len(active) if succeeded > 0 else parallelism
        if len(active) > want:
            extra = sorted(active, key=lambda p: (is_pod_ready(p), p.metadata.name))
            await self._delete_pods(key, job, extra[:len(active) - want])
            return extra[len(active) - want:], 0
        missing = want - len(active)
        created = await self._create_pods(key, job, [None] * missing, now) if missing > 0 else 0
        return active, created

    async def _manage_indexed(self, key: str, job: batch_pb2.Job,
                              active: list[core_pb2.Pod], completed: set[int],
                              now: datetime) -> tuple[list[core_pb2.Pod], int]:
        completions = job.spec.completions
        by_index: dict[int, list[core_pb2.Pod]] = {}
        doomed = []
        for pod in active:
            index = pod_index(pod)
            if index is None or index >= completions or index in completed:
                doomed.append(pod)
            else:
                by_index.setdefault(index, []).append(pod)
        for pods in by_index.values():
            pods.sort(key=lambda p: (not is_pod_ready(p), p.metadata.name))
            doomed.extend(pods[1:])  # one pod per index
            del pods[1:]
        kept = [pods[0] for pods in by_index.values()]
        pending = [i for i in range(completions) if i not in completed and i not in by_index]
        want = min(job.spec.parallelism, len(kept) + len(pending))
        if len(kept) > want:
            kept.sort(key=lambda p: (is_pod_ready(p), -(pod_index(p) or 0)))
            doomed.extend(kept[:len(kept) - want])
            kept = kept[len(kept) - want:]
        await self._delete_pods(key, job, doomed)
        room = want - len(kept)
        created = await self._create_pods(key, job, pending[:room], now) if room > 0 else 0
        return kept, created

    async def _create_pods(self, key: str, job: batch_pb2.Job, indexes: Sequence[int | None],
                           now: datetime) -> int:
        """Create pods for ``indexes`` (None: not Indexed) unless backing off; returns
        how many were created."""
        wait = self._backoff_remaining(job, now)
        if wait > 0:
            self.enqueue_after(key, wait)
            return 0
        self.expectations.expect_creations(key, len(indexes))
        for n, index in enumerate(indexes):
            try:
                created = await self.client.create(new_job_pod(job, index))
            except APIError as exc:
                for _ in indexes[n:]:
                    self.expectations.creation_failed(key)
                self.recorder.event(job, "Warning", "FailedCreate",
                                    f"Error creating: {exc.message}")
                raise
            self.recorder.event(job, "Normal", "SuccessfulCreate",
                                f"Created pod: {created.metadata.name}")
        return len(indexes)

    async def _delete_pods(self, key: str, job: batch_pb2.Job,
                           pods: list[core_pb2.Pod]) -> None:
        if not pods:
            return
        self.expectations.expect_deletions(key, [p.metadata.uid for p in pods])
        for pod in pods:
            try:
                await self.client.delete(core_pb2.Pod, pod.metadata.name,
                                         namespace=pod.metadata.namespace)
            except APIError as exc:
                if not exc.is_not_found():
                    self.expectations.deletion_observed(key, pod.metadata.uid)
                    raise
                self.expectations.deletion_observed(key, pod.metadata.uid)
            self.recorder.event(job, "Normal", "SuccessfulDelete",
                                f"Deleted pod: {pod.metadata.name}")

    async def _write_status(self, job: batch_pb2.Job, status: batch_pb2.JobStatus) -> None:
        if status == job.status:
            return
        new = copy_object(job)
        new.status.CopyFrom(status)
        await self._update_status(new)


class TTLAfterFinishedController(Controller):
    """Deletes finished Jobs ``ttlSecondsAfterFinished`` after they finished."""

    name = "ttl-after-finished"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.jobs = ctx.informers.informer_for(batch_pb2.Job)
        self.jobs.add_event_handler(
            on_add=self._enqueue_job,
            on_update=lambda old, new: self._enqueue_job(new))

    def _enqueue_job(self, job: batch_pb2.Job) -> None:
        if job.spec.HasField("ttlSecondsAfterFinished") and is_finished(job):
            self.enqueue(f"{job.metadata.namespace}/{job.metadata.name}")

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        job = self.jobs.get(name, namespace)
        if job is None or not job.spec.HasField("ttlSecondsAfterFinished") \
                or job.metadata.HasField("deletionTimestamp"):
            return
        cond = job_finished_condition(job)
        if cond is None:
            return
        finished = time_from_proto(cond.lastTransitionTime) if \
            cond.HasField("lastTransitionTime") else self.ctx.now()
        expires = finished + timedelta(seconds=job.spec.ttlSecondsAfterFinished)
        now = self.ctx.now()
        if now < expires:
            self.enqueue_after(key, (expires - now).total_seconds())
            return
        try:
            await self.client.delete(batch_pb2.Job, name, namespace=namespace,
                                     propagation_policy="Foreground",
                                     precondition_uid=job.metadata.uid)
        except APIError as exc:
            if not (exc.is_not_found() or exc.is_conflict()):
                raise


async def start_job(ctx: ControllerContext) -> None:
    controller = JobController(ctx)
    ctx.informers.start()
    await controller.run(workers=workers(ctx, controller.name))


async def start_ttl_after_finished(ctx: ControllerContext) -> None:
    controller = TTLAfterFinishedController(ctx)
    ctx.informers.start()
    await controller.run(workers=workers(ctx, controller.name))


DESCRIPTOR = ControllerDescriptor("job", start_job)
TTL_DESCRIPTOR = ControllerDescriptor("ttl-after-finished", start_ttl_after_finished)


def _revision(job: batch_pb2.Job) -> int:
    """The Job's resourceVersion as a number (pilothouse's are storage revisions); 0 if not."""
    try:
        return int(job.metadata.resourceVersion)
    except ValueError:
        return 0
