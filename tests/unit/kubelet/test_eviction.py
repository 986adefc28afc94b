"""The eviction manager on a fake summary and a fake clock: thresholds, node conditions,
Kubernetes' ranking and messages, local storage limits; and an evicted pod's status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pilothouse.client.clock import AsyncFakeClock
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import eviction as ev
from pilothouse.services.kubelet.eviction import (
    ContainerUsage,
    EvictionManager,
    FsStats,
    PodUsage,
    Summary,
    Threshold,
    parse_thresholds,
)
from pilothouse.services.kubelet.pod_sync import EvictionRequest, PodState

from .conftest import Harness, make_pod

Mi = 1024 * 1024
Gi = 1024 * Mi


def pod(name: str, *, memory_request: str = "", storage_request: str = "",
        priority: int | None = None, **kw: Any) -> core_pb2.Pod:
    p = make_pod(name)
    c = p.spec.containers[0]
    if memory_request:
        c.resources.requests["memory"].string = memory_request
    if storage_request:
        c.resources.requests["ephemeral-storage"].string = storage_request
    if "storage_limit" in kw:
        c.resources.limits["ephemeral-storage"].string = kw["storage_limit"]
    if priority is not None:
        p.spec.priority = priority
    if "empty_dir" in kw:
        name_, limit = kw["empty_dir"]
        v = p.spec.volumes.add(name=name_)
        v.volumeSource.emptyDir.SetInParent()
        if limit:
            v.volumeSource.emptyDir.sizeLimit.string = limit
    return p


def usage(memory: int | None = None, rootfs: int = 0, logs: int = 0,
          volumes: dict[str, int] | None = None, processes: int | None = None) -> PodUsage:
    return PodUsage([ContainerUsage("main", memory, rootfs, logs)], volumes or {}, processes)


@dataclass
class World:
    clock: AsyncFakeClock
    summary: Summary
    pods: list[core_pb2.Pod]
    evicted: list[tuple[str, str]] = field(default_factory=list)
    reclaims: int = 0
    reclaim_frees: Summary | None = None
    manager: EvictionManager | None = None

    async def provide(self, pods: list[core_pb2.Pod]) -> Summary:
        return self.summary

    async def reclaim(self) -> int:
        self.reclaims += 1
        if self.reclaim_frees is not None:
            self.summary = self.reclaim_frees
        return 0

    def evict(self, p: core_pb2.Pod, message: str) -> bool:
        self.evicted.append((p.metadata.name, message))
        self.pods = [q for q in self.pods if q.metadata.uid != p.metadata.uid]
        return True


class Provider:
    def __init__(self, world: World) -> None:
        self.world = world

    async def summary(self, pods: list[core_pb2.Pod]) -> Summary:
        return await self.world.provide(pods)


def world(pods: list[core_pb2.Pod], *, memory_available: int = 8 * Gi,
          disk_available: int = 50 * Gi, pods_usage: dict[str, PodUsage] | None = None,
          thresholds: str = ev.DEFAULT_EVICTION_HARD, pids: tuple[int, int] | None = None
          ) -> World:
    summary = Summary(memory_available=memory_available, memory_capacity=16 * Gi,
                      nodefs=FsStats(disk_available, 100 * Gi, 900_000, 1_000_000),
                      pid_available=pids[0] if pids else None,
                      pid_capacity=pids[1] if pids else None,
                      pods={f"uid-{k}": v for k, v in (pods_usage or {}).items()})
    w = World(AsyncFakeClock(), summary, pods)
    w.manager = EvictionManager(thresholds=parse_thresholds(thresholds), provider=Provider(w),
                                clock=w.clock, pods=lambda: w.pods, evict=w.evict,
                                reclaim_disk=w.reclaim)
    return w


# -- thresholds ---------------------------------------------------------------------------


def test_default_thresholds_are_kubernetes() -> None:
    got = {t.signal: (str(t.quantity) if t.quantity else t.percentage)
           for t in parse_thresholds(ev.DEFAULT_EVICTION_HARD)}
    assert got == {"memory.available": "100Mi", "nodefs.available": 0.10,
                   "nodefs.inodesFree": 0.05, "imagefs.available": 0.15,
                   "imagefs.inodesFree": 0.05}
    assert parse_thresholds("") == []
    assert parse_thresholds("pid.available<10%,memory.available<1Gi") == [
        Threshold("pid.available", percentage=0.10),
        Threshold("memory.available", quantity=parse_thresholds("memory.available<1Gi")[0]
                  .quantity)]


@pytest.mark.parametrize(("text", "error"), [
    ("memory.available>1Gi", "only the < operator"),
    ("memory.free<1Gi", "unknown signal 'memory.free'"),
    ("memory.available<lots", "'lots' is not a quantity or a percentage"),
    ("nodefs.available<150%", "percentage must be 0-100%"),
    ("nodefs.available<x%", "'x%' is not a percentage"),
    ("memory.available<1Gi,memory.available<2Gi", "given twice"),
], ids=["operator", "signal", "quantity", "percent-range", "percent-number", "twice"])
def test_bad_thresholds_are_clear_errors(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_thresholds(text)


# -- memory --------------------------------------------------------------------------------


async def test_no_pressure_no_eviction_no_condition() -> None:
    w = world([pod("a")], pods_usage={"a": usage(memory=10 * Mi)})
    assert w.manager is not None
    assert await w.manager.synchronize() is None
    assert w.evicted == [] and w.manager.pressure() == set()


async def test_memory_pressure_evicts_the_pod_most_over_its_request_first() -> None:
    pods = [pod("guaranteed", memory_request="500Mi"), pod("besteffort"),
            pod("burstable", memory_request="100Mi")]
    w = world(pods, memory_available=90 * Mi, pods_usage={
        "guaranteed": usage(memory=400 * Mi), "besteffort": usage(memory=50 * Mi),
        "burstable": usage(memory=300 * Mi)})
    assert w.manager is not None
    evicted = await w.manager.synchronize()
    assert evicted is not None and evicted.metadata.name == "burstable"
    assert w.evicted == [("burstable",
                          "The node was low on resource: memory. Threshold quantity: 100Mi, "
                          "available: 90Mi. Container main was using 300Mi, request is 100Mi, "
                          "has larger consumption of memory. ")]
    assert w.manager.pressure() == {"MemoryPressure"}
    # One pod per round; the next round takes the next one (still over its request).
    await w.manager.synchronize()
    assert [name for name, _ in w.evicted] == ["burstable", "besteffort"]
    assert w.evicted[1][1].endswith("Container main was using 50Mi, request is 0, has larger "
                                     "consumption of memory. ")
    await w.manager.synchronize()
    assert [name for name, _ in w.evicted][-1] == "guaranteed"  # within its request: last


async def test_lower_priority_goes_before_larger_usage() -> None:
    pods = [pod("important", priority=1000), pod("batch", priority=-10)]
    w = world(pods, memory_available=50 * Mi, pods_usage={
        "important": usage(memory=900 * Mi), "batch": usage(memory=10 * Mi)})
    assert w.manager is not None
    await w.manager.synchronize()
    assert w.evicted[0][0] == "batch"


async def test_pods_without_stats_go_first() -> None:
    w = world([pod("measured"), pod("unknown")], memory_available=50 * Mi,
              pods_usage={"measured": usage(memory=900 * Mi)})
    assert w.manager is not None
    await w.manager.synchronize()
    assert w.evicted[0][0] == "unknown"


async def test_pressure_condition_holds_for_the_transition_period() -> None:
    w = world([pod("a")], memory_available=50 * Mi, pods_usage={"a": usage(memory=Mi)})
    assert w.manager is not None
    await w.manager.synchronize()
    w.summary.memory_available = 8 * Gi
    await w.manager.synchronize()
    assert w.manager.pressure() == {"MemoryPressure"}  # no flapping
    w.clock.advance(299)
    assert w.manager.pressure() == {"MemoryPressure"}
    w.clock.advance(2)
    assert w.manager.pressure() == set()


# -- disk and pids ------------------------------------------------------------------------------


async def test_disk_pressure_reclaims_images_before_evicting() -> None:
    w = world([pod("a")], disk_available=5 * Gi, pods_usage={"a": usage(rootfs=Gi)})
    assert w.manager is not None
    freed = Summary(**{**w.summary.__dict__, "nodefs": FsStats(40 * Gi, 100 * Gi)})
    w.reclaim_frees = freed
    assert await w.manager.synchronize() is None
    assert w.reclaims == 1 and w.evicted == []
    assert w.manager.pressure() == {"DiskPressure"}  # it was met this round


async def test_disk_pressure_evicts_by_ephemeral_usage_over_requests() -> None:
    pods = [pod("small", storage_request="1Gi", empty_dir=("cache", "")),
            pod("writer", storage_request="1Gi", empty_dir=("cache", ""))]
    w = world(pods, disk_available=5 * Gi, pods_usage={
        "small": usage(rootfs=100 * Mi, logs=Mi),
        "writer": usage(rootfs=Gi, logs=Gi, volumes={"cache": 2 * Gi})})
    assert w.manager is not None
    await w.manager.synchronize()
    assert w.reclaims == 1  # not enough: a pod goes
    name, message = w.evicted[0]
    assert name == "writer"
    assert message == ("The node was low on resource: ephemeral-storage. Threshold quantity: "
                       "10Gi, available: 5Gi. Container main was using 2Gi, request is 1Gi, "
                       "has larger consumption of ephemeral-storage. ")


async def test_pid_pressure_when_configured() -> None:
    pods = [pod("forky", priority=0), pod("calm", priority=0)]
    usage_ = {"forky": usage(processes=500), "calm": usage(processes=3)}
    w = world(pods, thresholds="pid.available<10%", pids=(100, 4000), pods_usage=usage_)
    assert w.manager is not None
    await w.manager.synchronize()
    assert w.manager.pressure() == {"PIDPressure"}
    assert w.evicted == [("forky", "The node was low on resource: pids. Threshold quantity: "
                                   "400, available: 100. ")]
    # Without a pid threshold (Kubernetes' defaults), no PIDPressure.
    w2 = world(pods, pids=(100, 4000), pods_usage=usage_)
    assert w2.manager is not None
    await w2.manager.synchronize()
    assert w2.manager.pressure() == set() and w2.evicted == []


# -- local storage limits -------------------------------------------------------------------


async def test_empty_dir_over_its_size_limit_is_evicted_without_node_pressure() -> None:
    pods = [pod("ok", empty_dir=("scratch", "1Gi")), pod("big", empty_dir=("scratch", "1Mi"))]
    w = world(pods, pods_usage={"ok": usage(volumes={"scratch": Mi}),
                                "big": usage(volumes={"scratch": 2 * Mi})})
    assert w.manager is not None
    await w.manager.synchronize()
    assert w.evicted == [("big", 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". ')]
    assert w.manager.pressure() == set()


async def test_ephemeral_storage_limits() -> None:
    w = world([pod("p", storage_limit="100Mi")],
              pods_usage={"p": usage(rootfs=90 * Mi, logs=20 * Mi)})
    assert w.manager is not None
    await w.manager.synchronize()
    assert w.evicted == [("p", "Pod ephemeral local storage usage exceeds the total limit of "
                               "containers 100Mi. ")]
    assert ev.local_storage_violation(pod("q", storage_limit="100Mi"),
                                      usage(rootfs=10 * Mi)) is None


# -- the evicted pod ----------------------------------------------------------------------------


async def test_an_evicted_pod_is_killed_and_failed_with_kubernetes_status(
        harness: Harness) -> None:
    state = await harness.add(make_pod("victim"))
    await harness.syncer.sync(state)
    assert (await harness.stored("victim")).status.phase == "Running"
    message = 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". '
    state.eviction = EvictionRequest(message, ev.IMMEDIATE_GRACE)
    assert await harness.syncer.sync(state) is None
    stored = await harness.stored("victim")
    assert (stored.status.phase, stored.status.reason, stored.status.message) == (
        "Failed", "Evicted", message)
    target = next(c for c in stored.status.conditions if c.type == "DisruptionTarget")
    assert (target.status, target.reason, target.message) == (
        "True", "TerminationByKubelet", message)
    assert harness.containers("main")[0].state == cri.CONTAINER_EXITED
    assert all(sb.state == cri.SANDBOX_NOTREADY for sb in harness.backend.sandboxes.values())
    assert ("", "Warning", "Evicted", message) in harness.events
    # Nothing restarts it, and a later sync (or a restarted kubelet) keeps why it ended.
    await harness.syncer.sync(state)
    assert len(harness.containers("main")) == 1
    fresh = PodState(pod=await harness.stored("victim"), first_seen=0)
    await harness.syncer.sync(fresh)
    again = await harness.stored("victim")
    assert (again.status.reason, again.status.message) == ("Evicted", message)
