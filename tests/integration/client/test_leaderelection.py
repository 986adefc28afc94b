"""Two electors against a real apiserver: exactly one leads; when it stops, the other leads.

Time is a fake clock shared by both candidates (the apiserver is real): the test
moves it forward in retry periods and waits for both candidates to go back to
sleep between steps, so no step depends on wall-clock timing.
"""

from __future__ import annotations

import asyncio

from pilothouse.client import Client
from pilothouse.client.clock import AsyncFakeClock
from pilothouse.client.leaderelection import LeaderElector
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from tests.support import wait_for


async def test_exactly_one_leads_and_the_other_takes_over(client: Client) -> None:
    clock = AsyncFakeClock()
    leading: dict[str, bool] = {"a": False, "b": False}
    ever_both = False
    observed_leaders: dict[str, list[str]] = {"a": [], "b": []}

    def make(identity: str) -> tuple[LeaderElector, asyncio.Task[None]]:
        elector = LeaderElector(client, "kube-system", "scheduler", identity, clock=clock,
                                rand=lambda: 0.0)

        async def lead() -> None:
            nonlocal ever_both
            leading[identity] = True
            ever_both = ever_both or all(leading.values())
            try:
                await asyncio.Event().wait()
            finally:
                leading[identity] = False

        task = asyncio.create_task(elector.run(
            lead, on_new_leader=observed_leaders[identity].append))
        return elector, task

    a, a_task = make("a")
    await wait_for(lambda: leading["a"], what="a leads")
    b, b_task = make("b")
    await clock.wait_for_sleepers(2)
    for _ in range(10):
        clock.advance(2)
        await clock.wait_for_sleepers(2)
        assert leading == {"a": True, "b": False}
    lease = await client.get(coordination_pb2.Lease, "scheduler", namespace="kube-system")
    assert lease.spec.holderIdentity == "a"
    assert observed_leaders["b"] == ["a"]

    a_task.cancel()
    await asyncio.gather(a_task, return_exceptions=True)
    assert not leading["a"]
    released = await client.get(coordination_pb2.Lease, "scheduler", namespace="kube-system")
    assert released.spec.holderIdentity == ""
    clock.advance(2)
    await wait_for(lambda: leading["b"], what="b takes over")
    taken = await client.get(coordination_pb2.Lease, "scheduler", namespace="kube-system")
    assert taken.spec.holderIdentity == "b"
    assert taken.spec.leaseTransitions == 1
    assert int(taken.metadata.resourceVersion) > int(released.metadata.resourceVersion)
    assert observed_leaders["b"] == ["a", "b"]
    assert not ever_both
    assert b.is_leader() and not a.is_leader()
    b_task.cancel()
    await asyncio.gather(b_task, return_exceptions=True)
