"""Job controller: completions, parallelism, back-off, deadline, Indexed, suspend, TTL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pilothouse.gen.k8s.batch.v1 import batch_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.job import JobController, TTLAfterFinishedController
from pilothouse.services.controllers.job_utils import (
    COMPLETION_INDEX,
    JOB_TRACKING_FINALIZER,
    backoff_delay,
    format_indexes,
    parse_indexes,
)
from pilothouse.services.controllers.pod_utils import get_condition
from tests.unit.controllers.fake_cluster import FakeCluster

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("text", "indexes"), [
    pytest.param("", set(), id="empty"),
    pytest.param("3", {3}, id="one"),
    pytest.param("0-2,5", {0, 1, 2, 5}, id="range-and-one"),
    pytest.param("0-1,3-4,7", {0, 1, 3, 4, 7}, id="two-ranges"),
])
def test_indexes_round_trip(text: str, indexes: set[int]) -> None:
    assert parse_indexes(text) == indexes
    assert format_indexes(indexes) == text


@pytest.mark.parametrize(("failures", "delay"), [(0, 0.0), (1, 10.0), (2, 20.0), (3, 40.0),
                                                 (10, 360.0)])
def test_backoff_delay(failures: int, delay: float) -> None:
    assert backoff_delay(failures) == delay


def make_job(name: str = "pi", *, completions: int | None = 1, parallelism: int = 1,
             backoff: int = 6, indexed: bool = False, deadline: int | None = None,
             suspend: bool = False, ttl: int | None = None) -> batch_pb2.Job:
    job = batch_pb2.Job()
    job.metadata.name = name
    job.metadata.namespace = "default"
    if completions is not None:
        job.spec.completions = completions
    job.spec.parallelism = parallelism
    job.spec.backoffLimit = backoff
    job.spec.completionMode = "Indexed" if indexed else "NonIndexed"
    job.spec.suspend = suspend
    if deadline is not None:
        job.spec.activeDeadlineSeconds = deadline
    if ttl is not None:
        job.spec.ttlSecondsAfterFinished = ttl
    job.spec.template.metadata.labels["job-name"] = name
    job.spec.template.spec.restartPolicy = "Never"
    job.spec.template.spec.containers.add(name="pi", image="perl")
    return job


async def setup(job: batch_pb2.Job) -> tuple[FakeCluster, JobController, batch_pb2.Job]:
    cluster = FakeCluster(start=T0)
    controller = JobController(cluster.ctx)
    created = await cluster.add(job)
    return cluster, controller, created


def pods(cluster: FakeCluster) -> list[core_pb2.Pod]:
    return cluster.objects(core_pb2.Pod)


def job_of(cluster: FakeCluster, name: str = "pi") -> batch_pb2.Job:
    job = cluster.get(batch_pb2.Job, name)
    assert job is not None
    return job


async def finish(cluster: FakeCluster, pod: core_pb2.Pod, phase: str) -> None:
    pod.status.phase = phase
    await cluster.put(pod)


async def step(cluster: FakeCluster, controller: JobController, key: str = "default/pi") -> None:
    await controller.sync(key)
    cluster.settle()


async def test_completions_and_parallelism() -> None:
    cluster, controller, job = await setup(make_job(completions=3, parallelism=2))
    await step(cluster, controller)
    created = pods(cluster)
    assert len(created) == 2
    for pod in created:
        assert JOB_TRACKING_FINALIZER in pod.metadata.finalizers
        assert pod.metadata.name.startswith("pi-")
        assert pod.metadata.ownerReferences[0].uid == job.metadata.uid
        assert pod.metadata.labels["job-name"] == "pi"
    status = job_of(cluster).status
    assert (status.active, status.succeeded) == (2, 0)
    assert status.startTime.seconds == int(T0.timestamp())
    # Syncing again with the pods in cache creates nothing more.
    await step(cluster, controller)
    assert len(pods(cluster)) == 2
    # One succeeds: counted, finalizer removed, only one more is needed (3 - 1 - 1 active).
    await finish(cluster, created[0], "Succeeded")
    await step(cluster, controller)
    done = cluster.get(core_pb2.Pod, created[0].metadata.name)
    assert done is not None and JOB_TRACKING_FINALIZER not in done.metadata.finalizers
    status = job_of(cluster).status
    assert (status.succeeded, status.active) == (1, 2)
    assert not status.uncountedTerminatedPods.succeeded
    for pod in pods(cluster):
        if pod.status.phase != "Succeeded":
            await finish(cluster, pod, "Succeeded")
    await step(cluster, controller)
    await step(cluster, controller)
    job = job_of(cluster)
    assert job.status.succeeded == 3
    complete = get_condition(job.status.conditions, "Complete")
    assert complete is not None and complete.status == "True"
    assert get_condition(job.status.conditions, "SuccessCriteriaMet") is not None
    assert job.status.completionTime.seconds == int(T0.timestamp())
    assert "Completed" in cluster.recorder.reasons()
    assert cluster.recorder.reasons().count("SuccessfulCreate") == 3


async def test_backoff_limit_exceeded_with_backoff_between_retries() -> None:
    cluster, controller, _ = await setup(make_job(backoff=1))
    await step(cluster, controller)
    [first] = pods(cluster)
    await finish(cluster, first, "Failed")
    await step(cluster, controller)
    assert job_of(cluster).status.failed == 1
    assert len(pods(cluster)) == 1  # the replacement waits out the 10 s back-off
    cluster.clock.advance(10)
    await step(cluster, controller)
    assert len(pods(cluster)) == 2
    second = next(p for p in pods(cluster) if p.metadata.name != first.metadata.name)
    await finish(cluster, second, "Failed")
    await step(cluster, controller)
    await step(cluster, controller)
    job = job_of(cluster)
    failed = get_condition(job.status.conditions, "Failed")
    assert failed is not None and (failed.status, failed.reason) == ("True",
                                                                     "BackoffLimitExceeded")
    assert get_condition(job.status.conditions, "FailureTarget") is not None
    assert job.status.failed == 2
    assert "BackoffLimitExceeded" in cluster.recorder.reasons()
    assert not job.HasField("status") or not job.status.HasField("completionTime")


async def test_active_deadline() -> None:
    cluster, controller, _ = await setup(make_job(deadline=60))
    await step(cluster, controller)
    assert len(pods(cluster)) == 1
    cluster.clock.advance(60)
    await step(cluster, controller)
    job = job_of(cluster)
    failed = get_condition(job.status.conditions, "Failed")
    assert failed is not None and failed.reason == "DeadlineExceeded"
    assert pods(cluster) == []  # the running pod was deleted
    assert "DeadlineExceeded" in cluster.recorder.reasons()


async def test_indexed_job() -> None:
    cluster, controller, _ = await setup(make_job(completions=3, parallelism=2, indexed=True))
    await step(cluster, controller)
    created = pods(cluster)
    assert sorted(p.metadata.annotations[COMPLETION_INDEX] for p in created) == ["0", "1"]
    for pod in created:
        index = pod.metadata.annotations[COMPLETION_INDEX]
        assert pod.metadata.labels[COMPLETION_INDEX] == index
        assert pod.metadata.name.startswith(f"pi-{index}-")
        assert pod.spec.hostname == f"pi-{index}"
        [env] = pod.spec.containers[0].env
        assert env.name == "JOB_COMPLETION_INDEX"
        assert env.valueFrom.fieldRef.fieldPath == \
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    index1 = next(p for p in created if p.metadata.annotations[COMPLETION_INDEX] == "1")
    await finish(cluster, index1, "Succeeded")
    await step(cluster, controller)
    job = job_of(cluster)
    assert job.status.completedIndexes == "1"
    assert job.status.succeeded == 1
    active = [p for p in pods(cluster) if p.status.phase != "Succeeded"]
    assert sorted(p.metadata.annotations[COMPLETION_INDEX] for p in active) == ["0", "2"]
    for pod in active:
        await finish(cluster, pod, "Succeeded")
    await step(cluster, controller)
    await step(cluster, controller)
    job = job_of(cluster)
    assert job.status.completedIndexes == "0-2"
    assert get_condition(job.status.conditions, "Complete") is not None


async def test_suspend_and_resume() -> None:
    cluster, controller, job = await setup(make_job(suspend=True))
    await step(cluster, controller)
    assert pods(cluster) == []
    suspended = get_condition(job_of(cluster).status.conditions, "Suspended")
    assert suspended is not None and suspended.status == "True"
    job = job_of(cluster)
    job.spec.suspend = False
    await cluster.put(job)
    cluster.clock.advance(5)
    await step(cluster, controller)
    assert len(pods(cluster)) == 1
    job = job_of(cluster)
    assert get_condition(job.status.conditions, "Suspended").status == "False"
    assert job.status.startTime.seconds == int(T0.timestamp()) + 5
    assert cluster.recorder.reasons()[:2] == ["Suspended", "Resumed"]


async def test_expectations_prevent_double_create() -> None:
    cluster, controller, _ = await setup(make_job(completions=2, parallelism=2))
    await controller.sync("default/pi")
    await controller.sync("default/pi")  # cache not settled: must not create again
    assert len(cluster.fake.objects(core_pb2.Pod)) == 2


async def test_stale_cached_job_after_own_status_write_creates_nothing() -> None:
    # A pod's success is counted and its tracking finalizer removed; if the Job cache still
    # holds the Job from before that count, the pod is neither tracked nor counted there, and
    # acting on it would create a pod too many.
    cluster, controller, _ = await setup(make_job(completions=2, parallelism=2))
    await step(cluster, controller)
    stale = job_of(cluster)
    first, _second = pods(cluster)
    await finish(cluster, first, "Succeeded")
    await step(cluster, controller)
    assert job_of(cluster).status.succeeded == 1
    controller.jobs.indexer.upsert("default/pi", stale)
    await controller.sync("default/pi")
    assert len(cluster.fake.objects(core_pb2.Pod)) == 2
    cluster.settle()  # the real Job comes back: still nothing to create
    await step(cluster, controller)
    assert len(cluster.fake.objects(core_pb2.Pod)) == 2


async def test_gone_job_releases_pod_finalizers() -> None:
    cluster, controller, _ = await setup(make_job())
    await step(cluster, controller)
    await cluster.remove(batch_pb2.Job, "pi", "default")
    await step(cluster, controller)
    [pod] = pods(cluster)
    assert JOB_TRACKING_FINALIZER not in pod.metadata.finalizers


async def test_work_queue_job_without_completions() -> None:
    cluster, controller, _ = await setup(make_job(completions=None, parallelism=2))
    await step(cluster, controller)
    a, b = pods(cluster)
    await finish(cluster, a, "Succeeded")
    await step(cluster, controller)
    assert len(pods(cluster)) == 2  # no new pod after a success
    assert get_condition(job_of(cluster).status.conditions, "Complete") is None
    await finish(cluster, b, "Succeeded")
    await step(cluster, controller)
    await step(cluster, controller)
    assert get_condition(job_of(cluster).status.conditions, "Complete") is not None


async def test_ttl_after_finished() -> None:
    cluster, controller, _ = await setup(make_job(ttl=100))
    ttl = TTLAfterFinishedController(cluster.ctx)
    await step(cluster, controller)
    [pod] = pods(cluster)
    await finish(cluster, pod, "Succeeded")
    await step(cluster, controller)
    await step(cluster, controller)
    await ttl.sync("default/pi")
    assert cluster.get(batch_pb2.Job, "pi") is not None
    cluster.clock.advance(100)
    await ttl.sync("default/pi")
    assert cluster.get(batch_pb2.Job, "pi") is None


async def test_managed_by_other_controller_ignored() -> None:
    job = make_job()
    job.spec.managedBy = "example.com/other"
    cluster, controller, _ = await setup(job)
    await step(cluster, controller)
    assert pods(cluster) == []
