"""Scheduling queue with a fake clock, and the cache's incremental snapshots."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.api.timeutil import FakeClock
from pilothouse.services.scheduler.cache import Cache
from pilothouse.services.scheduler.framework import ClusterEvent, PodInfo, Snapshot
from pilothouse.services.scheduler.plugins.queuesort import PrioritySort
from pilothouse.services.scheduler.plugins.schedulinggates import SchedulingGates
from pilothouse.services.scheduler.queue import SchedulingQueue
from pilothouse.services.scheduler.testing import make_node, make_pod


def new_queue(clock: FakeClock, **kw: object) -> SchedulingQueue:
    return SchedulingQueue(clock=clock, sort_key=PrioritySort().sort_key,
                           pre_enqueue=SchedulingGates().pre_enqueue, **kw)  # type: ignore[arg-type]


async def pop_key(q: SchedulingQueue) -> str:
    qpi = await asyncio.wait_for(q.pop(), 5)
    assert qpi is not None
    return qpi.key


async def test_active_queue_orders_by_priority_then_time() -> None:
    clock = FakeClock()
    q = new_queue(clock)
    for name, prio in (("low", 1), ("high", 100), ("mid", 50)):
        q.add(PodInfo(make_pod(name, priority=prio)))
        clock.advance(1)
    q.add(PodInfo(make_pod("high2", priority=100)))
    assert [await pop_key(q) for _ in range(4)] == [
        "default/high", "default/high2", "default/mid", "default/low"]


async def test_backoff_doubles_to_the_maximum() -> None:
    clock = FakeClock()
    q = new_queue(clock)
    q.add(PodInfo(make_pod("p")))
    expected = [1, 2, 4, 8, 10, 10]
    for want in expected:
        qpi = await asyncio.wait_for(q.pop(), 5)
        assert qpi is not None
        q.add_unschedulable(qpi, q.scheduling_cycle)  # no plugins: an error -> back-off
        assert q.where("default/p") == "backoff"
        assert q.backoff_duration(qpi) == want
        clock.advance(want - 0.001)
        assert q.flush_backoff_completed() == 0
        clock.advance(0.001)
        assert q.flush_backoff_completed() == 1
        assert q.where("default/p") == "active"


async def test_unschedulable_pods_move_back_only_on_events_their_plugins_registered() -> None:
    clock = FakeClock()
    events = {"NodeResourcesFit": [ClusterEvent("Node", "Add"),
                                   ClusterEvent("AssignedPod", "Delete")]}
    q = new_queue(clock, plugin_events=events)
    q.add(PodInfo(make_pod("p")))
    qpi = await asyncio.wait_for(q.pop(), 5)
    assert qpi is not None
    qpi.unschedulable_plugins = {"NodeResourcesFit"}
    q.add_unschedulable(qpi, q.scheduling_cycle)
    assert q.where("default/p") == "unschedulable"
    assert q.pending() == {"active": 0, "backoff": 0, "unschedulable": 1, "gated": 0}
    assert q.move_all_to_active_or_backoff(ClusterEvent("Node", "Update")) == 0
    assert q.move_all_to_active_or_backoff(ClusterEvent("Node", "Add")) == 1
    assert q.where("default/p") == "backoff"  # still within its 1 s back-off
    clock.advance(1)
    q.flush_backoff_completed()
    assert await pop_key(q) == "default/p"


async def test_move_request_during_the_attempt_sends_the_pod_to_backoff() -> None:
    clock = FakeClock()
    q = new_queue(clock)
    q.add(PodInfo(make_pod("p")))
    qpi = await asyncio.wait_for(q.pop(), 5)
    assert qpi is not None
    cycle = q.scheduling_cycle
    q.move_all_to_active_or_backoff(ClusterEvent("Node", "Add"))  # while p is in flight
    qpi.unschedulable_plugins = {"NodeResourcesFit"}
    q.add_unschedulable(qpi, cycle)
    assert q.where("default/p") == "backoff"


async def test_unschedulable_timeout() -> None:
    clock = FakeClock()
    q = new_queue(clock, plugin_events={"X": [ClusterEvent("Node", "Add")]})
    q.add(PodInfo(make_pod("p")))
    qpi = await asyncio.wait_for(q.pop(), 5)
    assert qpi is not None
    qpi.unschedulable_plugins = {"X"}
    q.add_unschedulable(qpi, q.scheduling_cycle)
    clock.advance(299)
    assert q.flush_unschedulable_left_over() == 0
    clock.advance(2)
    assert q.flush_unschedulable_left_over() == 1 and q.where("default/p") == "active"


async def test_gated_pods_wait_for_their_gates_to_go() -> None:
    clock = FakeClock()
    q = new_queue(clock)
    q.add(PodInfo(make_pod("p", scheduling_gates=["wait"])))
    assert q.where("default/p") == "gated"
    q.update(PodInfo(make_pod("p")))
    assert q.where("default/p") == "active"


async def test_deleted_while_in_flight_is_dropped_and_pop_waits() -> None:
    clock = FakeClock()
    q = new_queue(clock)
    q.add(PodInfo(make_pod("p")))
    qpi = await asyncio.wait_for(q.pop(), 5)
    assert qpi is not None
    q.delete("default/p")
    q.add_unschedulable(qpi, q.scheduling_cycle)
    assert q.where("default/p") == ""
    waiter = asyncio.ensure_future(q.pop())
    await asyncio.sleep(0)
    assert not waiter.done()
    q.add(PodInfo(make_pod("q")))
    got = await asyncio.wait_for(waiter, 5)
    assert got is not None and got.key == "default/q"
    q.close()
    assert await asyncio.wait_for(q.pop(), 5) is None


# -- cache -------------------------------------------------------------------------------

def test_snapshot_copies_only_changed_node_infos() -> None:
    cache = Cache()
    for i in range(10):
        cache.add_node(make_node(f"n{i}", zone="ab"[i % 2]))
    snap = Snapshot()
    assert cache.update_snapshot(snap) == 10
    assert [n.name for n in snap.list()][:4] == ["n0", "n1", "n2", "n3"]
    listed = snap.get("n3")
    assert cache.update_snapshot(snap) == 0
    cache.assume_pod(PodInfo(make_pod("p", cpu="1")), "n3")
    assert cache.update_snapshot(snap) == 1
    assert snap.get("n3") is listed and listed is not None and listed.req_cpu == 1000
    assert snap.list()[3] is listed  # the list still points at the updated object


def test_assume_confirm_forget() -> None:
    cache = Cache()
    cache.add_node(make_node("n1"))
    pod = make_pod("p", cpu="1")
    cache.assume_pod(PodInfo(pod), "n1")
    assert cache.is_assumed("default/p")
    with pytest.raises(ValueError):
        cache.assume_pod(PodInfo(pod), "n1")
    cache.forget_pod("default/p")
    snap = Snapshot()
    cache.update_snapshot(snap)
    info = snap.get("n1")
    assert info is not None and info.req_cpu == 0 and info.pods == []
    cache.assume_pod(PodInfo(pod), "n1")
    bound = make_pod("p", cpu="1", node_name="n1")
    cache.add_pod(bound)  # the informer saw the binding
    assert not cache.is_assumed("default/p")
    cache.update_snapshot(snap)
    assert info.req_cpu == 1000 and len(info.pods) == 1


def test_node_removal_and_affinity_lists() -> None:
    cache = Cache()
    cache.add_node(make_node("n1"))
    cache.add_node(make_node("n2"))
    snap = Snapshot()
    cache.update_snapshot(snap)
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    cache.add_pod(make_pod("x", node_name="n2", affinity=anti))
    cache.update_snapshot(snap)
    assert [n.name for n in snap.have_pods_with_required_anti_affinity_list] == ["n2"]
    cache.remove_node("n1")
    cache.update_snapshot(snap)
    assert [n.name for n in snap.list()] == ["n2"]
    cache.remove_node("n2")  # a pod still points at it
    cache.update_snapshot(snap)
    assert snap.list() == [] and snap.have_pods_with_required_anti_affinity_list == []
    cache.remove_pod("default/x")
    assert cache.node_count == 0


def test_affinity_lists_patched_in_place_equal_a_rebuild() -> None:
    import random

    rng = random.Random(5)
    cache = Cache()
    for i in range(8):
        cache.add_node(make_node(f"n{i}"))
    snap = Snapshot()
    cache.update_snapshot(snap)
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    placed: list[str] = []
    grew = False
    for step in range(200):
        if rng.random() < 0.6 or not placed:
            shape = rng.choice([anti, aff, None])
            cache.add_pod(make_pod(f"p{step}", node_name=f"n{rng.randrange(8)}",
                                   affinity=shape))
            placed.append(f"default/p{step}")
        else:
            cache.remove_pod(placed.pop(rng.randrange(len(placed))))
        cache.update_snapshot(snap)
        want = Snapshot()
        want.node_info_map = snap.node_info_map
        want.rebuild_lists([n.name for n in snap.list()])
        assert {id(n) for n in snap.have_pods_with_affinity_list} == \
            {id(n) for n in want.have_pods_with_affinity_list}, step
        assert {id(n) for n in snap.have_pods_with_required_anti_affinity_list} == \
            {id(n) for n in want.have_pods_with_required_anti_affinity_list}, step
        assert len(snap.have_pods_with_affinity_list) == len(want.have_pods_with_affinity_list)
        grew = grew or len(want.have_pods_with_required_anti_affinity_list) > 2
    assert grew
