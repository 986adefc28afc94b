"""Leader election over the fake apiserver with a fake clock: every step is explicit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pilothouse.client import Client
from pilothouse.client.clock import AsyncFakeClock
from pilothouse.client.errors import APIConnectionError
from pilothouse.client.fake import FakeTransport
from pilothouse.client.leaderelection import LeaderElectionRecord, LeaderElector
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2


class Candidate:
    """One elector and what happened to it."""

    def __init__(self, client: Client, name: str, clock: AsyncFakeClock, **kw: Any) -> None:
        self.elector = LeaderElector(client, "kube-system", "lock", name, clock=clock,
                                     rand=lambda: 0.0, **kw)
        self.leading = asyncio.Event()
        self.stopped = False
        self.work_cancelled = False
        self.leaders: list[str] = []
        self.task: asyncio.Task[None] | None = None

    async def lead(self) -> None:
        self.leading.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.work_cancelled = True
            raise

    def start(self) -> None:
        self.task = asyncio.create_task(self.elector.run(
            self.lead, on_stopped_leading=self.on_stopped, on_new_leader=self.leaders.append))

    def on_stopped(self) -> None:
        self.stopped = True

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def settle(n: int = 50) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def lease(client: Client) -> coordination_pb2.Lease:
    return await client.get(coordination_pb2.Lease, "lock", namespace="kube-system")


@pytest.fixture
def clock() -> AsyncFakeClock:
    return AsyncFakeClock()


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def client(fake: FakeTransport) -> Client:
    return Client(fake)


async def test_one_leads_and_the_other_takes_over_after_release(
        client: Client, clock: AsyncFakeClock) -> None:
    a, b = Candidate(client, "a", clock), Candidate(client, "b", clock)
    a.start()
    await asyncio.wait_for(a.leading.wait(), 5)
    b.start()
    await clock.wait_for_sleepers(2)
    held = await lease(client)
    assert held.spec.holderIdentity == "a"
    assert held.spec.leaseDurationSeconds == 15 and held.spec.leaseTransitions == 0
    # Many retry periods: a renews, b keeps seeing a fresh lease and never leads.
    for _ in range(20):
        clock.advance(2)
        await settle()
        await clock.wait_for_sleepers(2)
    assert not b.leading.is_set() and a.elector.is_leader()
    assert b.elector.get_leader() == "a" and b.leaders == ["a"]
    renewed = await lease(client)
    assert renewed.spec.renewTime.seconds > held.spec.renewTime.seconds
    assert renewed.spec.acquireTime == held.spec.acquireTime
    await a.stop()
    assert a.stopped and a.work_cancelled
    released = await lease(client)
    assert released.spec.holderIdentity == "" and released.spec.leaseDurationSeconds == 1
    clock.advance(2)  # b's next try finds the lease free
    await asyncio.wait_for(b.leading.wait(), 5)
    taken = await lease(client)
    assert taken.spec.holderIdentity == "b" and taken.spec.leaseTransitions == 1
    assert b.leaders == ["a", "b"]
    await b.stop()


async def test_a_dead_leader_is_replaced_after_the_lease_duration(
        client: Client, clock: AsyncFakeClock) -> None:
    a = Candidate(client, "a", clock, release_on_cancel=False)
    a.start()
    await asyncio.wait_for(a.leading.wait(), 5)
    b = Candidate(client, "b", clock)
    b.start()
    await clock.wait_for_sleepers(2)
    await a.stop()  # dies without releasing
    assert (await lease(client)).spec.holderIdentity == "a"
    # b saw the lease at t=0; it is not expired until 15 s later on b's clock.
    for _ in range(7):
        clock.advance(2)
        await settle()
        await clock.wait_for_sleepers(1)
        assert not b.leading.is_set(), clock.monotonic()
    clock.advance(2)  # t=16 > 15
    await asyncio.wait_for(b.leading.wait(), 5)
    taken = await lease(client)
    assert taken.spec.holderIdentity == "b" and taken.spec.leaseTransitions == 1
    await b.stop()


async def test_leader_that_cannot_renew_steps_down(
        client: Client, fake: FakeTransport, clock: AsyncFakeClock) -> None:
    a = Candidate(client, "a", clock)
    a.start()
    await asyncio.wait_for(a.leading.wait(), 5)
    for _ in range(20):  # the apiserver is unreachable for every renewal attempt
        fake.fail_next("update", APIConnectionError("down"))
        fake.fail_next("get", APIConnectionError("down"))
    for _ in range(7):
        clock.advance(2)
        await settle()
        if a.task is not None and a.task.done():
            break
    assert a.task is not None
    await asyncio.wait_for(a.task, 5)  # run returned: leadership lost
    assert a.stopped and a.work_cancelled


async def test_work_that_fails_releases_and_propagates(
        client: Client, clock: AsyncFakeClock) -> None:
    elector = LeaderElector(client, "kube-system", "lock", "a", clock=clock)

    async def broken() -> None:
        raise RuntimeError("controller crashed")

    stopped: list[bool] = []
    with pytest.raises(RuntimeError, match="controller crashed"):
        await asyncio.wait_for(elector.run(broken, lambda: stopped.append(True)), 5)
    assert stopped == [True]
    assert (await lease(client)).spec.holderIdentity == ""


async def test_optimistic_concurrency_lets_only_one_win(
        client: Client, fake: FakeTransport, clock: AsyncFakeClock) -> None:
    a = LeaderElector(client, "kube-system", "lock", "a", clock=clock)
    b = LeaderElector(client, "kube-system", "lock", "b", clock=clock)
    # Both saw a released lease at the same revision; only the first write can succeed.
    seed = coordination_pb2.Lease()
    seed.metadata.name, seed.metadata.namespace = "lock", "kube-system"
    LeaderElectionRecord("", 1).write_to(seed)
    await client.create(seed)
    results = await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
    assert sorted(results) == [False, True]
    assert sum(a.verb == "update" for a in fake.actions) == 2  # both tried; one conflicted
    assert (await lease(client)).spec.holderIdentity in ("a", "b")


@pytest.mark.parametrize(("kw", "message"), [
    pytest.param({"lease_duration": 10, "renew_deadline": 10}, "leaseDuration", id="lease"),
    pytest.param({"renew_deadline": 2, "retry_period": 2}, "renewDeadline", id="renew"),
    pytest.param({"identity": ""}, "identity", id="identity"),
])
def test_bad_settings_are_clear_errors(client: Client, kw: dict[str, Any],
                                       message: str) -> None:
    args: dict[str, Any] = {"identity": "a"}
    args.update(kw)
    identity = args.pop("identity")
    with pytest.raises(ValueError, match=message):
        LeaderElector(client, "kube-system", "lock", identity, **args)
