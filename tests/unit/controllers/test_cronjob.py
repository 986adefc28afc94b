"""CronJob: schedule parsing, due times, concurrency policies, history, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pilothouse.api.timeutil import time_to_proto
from pilothouse.gen.k8s.batch.v1 import batch_pb2
from pilothouse.services.controllers.cron import ScheduleError, parse_schedule
from pilothouse.services.controllers.cronjob import CronJobController
from pilothouse.services.controllers.cronjob_utils import (
    SCHEDULED_TIMESTAMP,
    due_time,
    job_name,
    load_time_zone,
)
from pilothouse.services.controllers.pod_utils import set_condition
from tests.unit.controllers.fake_cluster import FakeCluster

T0 = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday, 00:00


def at(text: str, tz: str = "UTC") -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


@pytest.mark.parametrize(("schedule", "after", "expected"), [
    pytest.param("*/15 * * * *", "2024-01-01T00:07", "2024-01-01T00:15", id="step"),
    pytest.param("0 * * * *", "2024-01-01T00:00", "2024-01-01T01:00", id="strictly-after"),
    pytest.param("@hourly", "2024-01-01T10:30", "2024-01-01T11:00", id="hourly"),
    pytest.param("@daily", "2024-01-01T10:30", "2024-01-02T00:00", id="daily"),
    pytest.param("@weekly", "2024-01-01T10:30", "2024-01-07T00:00", id="weekly-sunday"),
    pytest.param("@monthly", "2024-01-31T10:30", "2024-02-01T00:00", id="monthly"),
    pytest.param("@yearly", "2024-03-01T00:00", "2025-01-01T00:00", id="yearly"),
    pytest.param("30 9 * * mon-fri", "2024-01-05T10:00", "2024-01-08T09:30", id="weekday-names"),
    pytest.param("0 0 * JAN,mar *", "2024-01-31T01:00", "2024-03-01T00:00", id="month-names"),
    pytest.param("0 12 1-7/3 * *", "2024-01-01T13:00", "2024-01-04T12:00", id="range-step"),
    pytest.param("0 0 13 * 5", "2024-01-01T00:00", "2024-01-05T00:00", id="dom-or-dow"),
    pytest.param("0 0 * * 7", "2024-01-01T00:00", "2024-01-07T00:00", id="seven-is-sunday"),
    pytest.param("5/20 * * * *", "2024-01-01T00:30", "2024-01-01T00:45", id="start-step"),
    pytest.param("0 0 29 2 *", "2024-03-01T00:00", "2028-02-29T00:00", id="leap-day"),
])
def test_next(schedule: str, after: str, expected: str) -> None:
    assert parse_schedule(schedule).next(at(after)) == at(expected)


def test_every_and_time_zone() -> None:
    assert parse_schedule("@every 1h30m").next(at("2024-01-01T00:00:10.5")) == \
        at("2024-01-01T01:30:10")
    tokyo = ZoneInfo("Asia/Tokyo")
    nxt = parse_schedule("0 9 * * *").next(datetime(2024, 1, 1, 1, 0, tzinfo=UTC)
                                           .astimezone(tokyo))
    assert nxt is not None and nxt.astimezone(UTC) == datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
    # 02:30 does not exist on the night clocks go forward: that run is skipped.
    berlin = "Europe/Berlin"
    assert parse_schedule("30 2 * * *").next(at("2024-03-30T03:00", berlin)) == \
        at("2024-04-01T02:30", berlin)


@pytest.mark.parametrize(("schedule", "message"), [
    pytest.param("", "empty", id="empty"),
    pytest.param("* * * *", "exactly 5 fields", id="four-fields"),
    pytest.param("61 * * * *", "out of range", id="minute-range"),
    pytest.param("* * * foo *", "not a number", id="bad-name"),
    pytest.param("*/0 * * * *", "bad step", id="zero-step"),
    pytest.param("@fortnightly", "unrecognized descriptor", id="descriptor"),
    pytest.param("@every 0s", "at least one second", id="every-zero"),
    pytest.param("@every banana", "failed to parse duration", id="every-bad"),
])
def test_bad_schedules(schedule: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(schedule)


def test_due_time_counts_missed_and_finds_next() -> None:
    sched = parse_schedule("*/10 * * * *")
    due = due_time(sched, T0, T0 + timedelta(minutes=35), ZoneInfo("UTC"))
    assert due.scheduled == T0 + timedelta(minutes=30)
    assert due.missed == 3
    assert due.next == T0 + timedelta(minutes=40)
    far = due_time(parse_schedule("* * * * *"), T0, T0 + timedelta(days=30), ZoneInfo("UTC"))
    assert far.scheduled == T0 + timedelta(days=30)
    assert far.missed > 100


def test_job_name_and_zone() -> None:
    assert job_name("hello", T0 + timedelta(minutes=1)) == f"hello-{int(T0.timestamp()) // 60 + 1}"
    with pytest.raises(ValueError, match="unknown time zone"):
        load_time_zone("Mars/Olympus")


def make_cronjob(schedule: str = "*/5 * * * *", *, policy: str = "Allow",
                 deadline: int | None = None, suspend: bool = False, tz: str = "",
                 ok_limit: int = 3, failed_limit: int = 1) -> batch_pb2.CronJob:
    cj = batch_pb2.CronJob()
    cj.metadata.name = "hello"
    cj.metadata.namespace = "default"
    cj.spec.schedule = schedule
    cj.spec.concurrencyPolicy = policy
    cj.spec.suspend = suspend
    if tz:
        cj.spec.timeZone = tz
    if deadline is not None:
        cj.spec.startingDeadlineSeconds = deadline
    cj.spec.successfulJobsHistoryLimit = ok_limit
    cj.spec.failedJobsHistoryLimit = failed_limit
    cj.spec.jobTemplate.metadata.labels["app"] = "hello"
    cj.spec.jobTemplate.spec.template.spec.restartPolicy = "OnFailure"
    cj.spec.jobTemplate.spec.template.spec.containers.add(name="hello", image="busybox")
    return cj


async def setup(cj: batch_pb2.CronJob) -> tuple[FakeCluster, CronJobController]:
    cluster = FakeCluster(start=T0)
    controller = CronJobController(cluster.ctx)
    created = await cluster.add(cj)
    # The fake stamps creation with the real time; start the schedule at T0 instead.
    created.status.lastScheduleTime.CopyFrom(time_to_proto(T0))
    await cluster.put(created)
    return cluster, controller


async def step(cluster: FakeCluster, controller: CronJobController) -> None:
    await controller.sync("default/hello")
    cluster.settle()


def jobs(cluster: FakeCluster) -> list[batch_pb2.Job]:
    return cluster.objects(batch_pb2.Job)


def cronjob(cluster: FakeCluster) -> batch_pb2.CronJob:
    cj = cluster.get(batch_pb2.CronJob, "hello")
    assert cj is not None
    return cj


async def finish(cluster: FakeCluster, job: batch_pb2.Job, how: str = "Complete",
                 when: datetime | None = None) -> None:
    set_condition(job.status.conditions, how, "True", "", "", when or cluster.clock.now())
    if how == "Complete":
        job.status.completionTime.CopyFrom(time_to_proto(when or cluster.clock.now()))
    job.status.startTime.CopyFrom(time_to_proto(when or cluster.clock.now()))
    await cluster.put(job)


async def test_creates_job_at_schedule_and_tracks_it() -> None:
    cluster, controller = await setup(make_cronjob())
    await step(cluster, controller)
    assert jobs(cluster) == []
    cluster.clock.advance(5 * 60)
    await step(cluster, controller)
    [job] = jobs(cluster)
    scheduled = T0 + timedelta(minutes=5)
    assert job.metadata.name == f"hello-{int(scheduled.timestamp()) // 60}"
    assert job.metadata.labels["app"] == "hello"
    assert job.metadata.annotations[SCHEDULED_TIMESTAMP] == "2024-01-01T00:05:00Z"
    assert job.metadata.ownerReferences[0].kind == "CronJob"
    cj = cronjob(cluster)
    assert [r.name for r in cj.status.active] == [job.metadata.name]
    assert cj.status.lastScheduleTime.seconds == int(scheduled.timestamp())
    # Same time again: no second job. The job completes: active empties.
    await step(cluster, controller)
    assert len(jobs(cluster)) == 1
    await finish(cluster, job)
    await step(cluster, controller)
    cj = cronjob(cluster)
    assert list(cj.status.active) == []
    assert cj.status.lastSuccessfulTime.seconds == int(scheduled.timestamp())
    assert cluster.recorder.reasons() == ["SuccessfulCreate", "SawCompletedJob"]


@pytest.mark.parametrize(("policy", "expected_jobs", "reason"), [
    pytest.param("Allow", 2, "SuccessfulCreate", id="allow"),
    pytest.param("Forbid", 1, "JobAlreadyActive", id="forbid"),
    pytest.param("Replace", 1, "SuccessfulDelete", id="replace"),
])
async def test_concurrency_policy(policy: str, expected_jobs: int, reason: str) -> None:
    cluster, controller = await setup(make_cronjob(policy=policy))
    cluster.clock.advance(5 * 60)
    await step(cluster, controller)
    [first] = jobs(cluster)
    cluster.clock.advance(5 * 60)
    await step(cluster, controller)
    names = [j.metadata.name for j in jobs(cluster)]
    assert len(names) == expected_jobs
    assert reason in cluster.recorder.reasons()
    if policy == "Replace":
        assert first.metadata.name not in names
    active = [r.name for r in cronjob(cluster).status.active]
    assert len(active) == expected_jobs


async def test_starting_deadline_missed() -> None:
    cluster, controller = await setup(make_cronjob("0 * * * *", deadline=30))
    cluster.clock.advance(3600 + 60)  # one minute late, 30 s allowed
    await step(cluster, controller)
    assert jobs(cluster) == []
    cluster.clock.advance(3600 - 60)  # the next hour, on time
    await step(cluster, controller)
    assert len(jobs(cluster)) == 1


async def test_suspend_and_bad_schedule_and_zone() -> None:
    cluster, controller = await setup(make_cronjob(suspend=True))
    cluster.clock.advance(600)
    await step(cluster, controller)
    assert jobs(cluster) == []
    for cj_change, reason in ((dict(schedule="not a schedule"), "UnparseableSchedule"),
                              (dict(timeZone="Nowhere/Land"), "UnknownTimeZone")):
        cj = cronjob(cluster)
        cj.spec.suspend = False
        cj.spec.schedule = cj_change.get("schedule", "*/5 * * * *")
        cj.spec.timeZone = cj_change.get("timeZone", "")
        await cluster.put(cj)
        await step(cluster, controller)
        assert jobs(cluster) == []
        assert cluster.recorder.reasons()[-1] == reason


async def test_time_zone_schedule() -> None:
    # 09:00 in Tokyo is 00:00 UTC: the first run after T0 is the next day's 00:00 UTC.
    cluster, controller = await setup(make_cronjob("0 9 * * *", tz="Asia/Tokyo"))
    cluster.clock.advance(23 * 3600)
    await step(cluster, controller)
    assert jobs(cluster) == []
    cluster.clock.advance(3600)
    await step(cluster, controller)
    [job] = jobs(cluster)
    assert job.metadata.annotations[SCHEDULED_TIMESTAMP] == "2024-01-02T00:00:00Z"


async def test_history_limits() -> None:
    cluster, controller = await setup(make_cronjob(ok_limit=1, failed_limit=0))
    for i in range(3):
        cluster.clock.advance(5 * 60)
        await step(cluster, controller)
        job = next(j for j in jobs(cluster) if not j.status.conditions)
        await finish(cluster, job, "Complete" if i < 2 else "Failed")
    await step(cluster, controller)
    remaining = jobs(cluster)
    assert len(remaining) == 1
    assert remaining[0].status.conditions[0].type == "Complete"
    assert remaining[0].metadata.name == job_name("hello", T0 + timedelta(minutes=10))
