"""Node lifecycle: health from Leases, Unknown after the grace period, taints, eviction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pilothouse.api.timeutil import micro_time_to_proto, time_to_proto
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.nodelifecycle import NodeLifecycleController
from pilothouse.services.controllers.nodelifecycle_utils import (
    desired_taints,
    eviction_time,
    min_toleration_seconds,
    reconcile_taints,
)
from pilothouse.services.controllers.pod_utils import (
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    get_condition,
    is_pod_ready,
)
from tests.unit.controllers.fake_cluster import FakeCluster, make_node, make_pod

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def tol(key: str = "", op: str = "Exists", effect: str = "NoExecute",
        seconds: int | None = None, value: str = "") -> core_pb2.Toleration:
    t = core_pb2.Toleration(key=key, operator=op, effect=effect, value=value)
    if seconds is not None:
        t.tolerationSeconds = seconds
    return t


def taint(key: str, effect: str = "NoExecute", added: datetime | None = T0,
          value: str = "") -> core_pb2.Taint:
    t = core_pb2.Taint(key=key, effect=effect, value=value)
    if added is not None:
        t.timeAdded.CopyFrom(time_to_proto(added))
    return t


@pytest.mark.parametrize(("tolerations", "expected"), [
    pytest.param([], None, id="none"),
    pytest.param([tol(seconds=300)], 300.0, id="one"),
    pytest.param([tol(seconds=300), tol(seconds=60)], 60.0, id="smallest"),
    pytest.param([tol(seconds=300), tol()], 300.0, id="forever-ignored-when-others-limit"),
    pytest.param([tol()], None, id="forever"),
    pytest.param([tol(seconds=-5)], 0.0, id="negative-is-now"),
])
def test_min_toleration_seconds(tolerations: list[core_pb2.Toleration],
                                expected: float | None) -> None:
    assert min_toleration_seconds(tolerations) == expected


@pytest.mark.parametrize(("tolerations", "taints", "expected"), [
    pytest.param([], [taint(TAINT_UNREACHABLE)], 0, id="untolerated-now"),
    pytest.param([tol(TAINT_UNREACHABLE, seconds=300)], [taint(TAINT_UNREACHABLE)], 300,
                 id="tolerated-for-300s-from-taint"),
    pytest.param([tol(TAINT_UNREACHABLE)], [taint(TAINT_UNREACHABLE)], None,
                 id="tolerated-forever"),
    pytest.param([tol(TAINT_UNREACHABLE, seconds=300)],
                 [taint(TAINT_UNREACHABLE), taint("dedicated", value="x")], 0,
                 id="second-taint-untolerated"),
    pytest.param([], [taint(TAINT_UNREACHABLE, effect="NoSchedule")], None,
                 id="noschedule-never-evicts"),
    pytest.param([tol("dedicated", op="Equal", value="x", effect="")],
                 [taint("dedicated", value="x")], None, id="equal-any-effect"),
    pytest.param([tol("dedicated", op="Equal", value="y")],
                 [taint("dedicated", value="x")], 0, id="equal-wrong-value"),
])
def test_eviction_time(tolerations: list[core_pb2.Toleration], taints: list[core_pb2.Taint],
                       expected: int | None) -> None:
    pod = make_pod("p")
    pod.spec.tolerations.extend(tolerations)
    when = eviction_time(pod, taints, first_seen=T0)
    assert when == (None if expected is None else T0 + timedelta(seconds=expected))


@pytest.mark.parametrize(("ready", "unschedulable", "expected"), [
    pytest.param("True", False, set(), id="ready"),
    pytest.param("False", False, {(TAINT_NOT_READY, "NoExecute"),
                                  (TAINT_NOT_READY, "NoSchedule")}, id="not-ready"),
    pytest.param("Unknown", False, {(TAINT_UNREACHABLE, "NoExecute"),
                                    (TAINT_UNREACHABLE, "NoSchedule")}, id="unknown"),
    pytest.param("True", True, {("node.kubernetes.io/unschedulable", "NoSchedule")},
                 id="cordoned"),
])
def test_desired_taints(ready: str, unschedulable: bool, expected: set[tuple[str, str]]) -> None:
    node = make_node("n", ready=ready)
    node.spec.unschedulable = unschedulable
    assert desired_taints(node) == expected


def test_reconcile_taints_keeps_foreign_taints() -> None:
    foreign = taint("dedicated", value="gpu")
    current = [foreign, taint(TAINT_NOT_READY)]
    new = reconcile_taints(current, {(TAINT_UNREACHABLE, "NoExecute")}, T0)
    assert new is not None
    assert [(t.key, t.effect) for t in new] == [("dedicated", "NoExecute"),
                                                 (TAINT_UNREACHABLE, "NoExecute")]
    assert new[1].timeAdded.seconds == int(T0.timestamp())
    assert reconcile_taints(new, {(TAINT_UNREACHABLE, "NoExecute")}, T0) is None


def make_lease(node: str, renew: datetime) -> coordination_pb2.Lease:
    lease = coordination_pb2.Lease()
    lease.metadata.name = node
    lease.metadata.namespace = "kube-node-lease"
    lease.spec.holderIdentity = node
    lease.spec.leaseDurationSeconds = 40
    lease.spec.renewTime.CopyFrom(micro_time_to_proto(renew))
    return lease


async def setup(settings: dict[str, object] | None = None,
                ) -> tuple[FakeCluster, NodeLifecycleController]:
    cluster = FakeCluster(settings=settings, start=T0)
    controller = NodeLifecycleController(cluster.ctx)
    await cluster.add(make_node("n1", heartbeat=T0))
    await cluster.add(make_lease("n1", T0))
    return cluster, controller


def node_taints(cluster: FakeCluster) -> set[tuple[str, str]]:
    node = cluster.get(core_pb2.Node, "n1")
    assert node is not None
    return {(t.key, t.effect) for t in node.spec.taints}


async def test_lease_stops_node_unknown_tainted_pods_evicted() -> None:
    cluster, controller = await setup()
    plain = make_pod("plain", node="n1", ip="10.0.0.1", ready=True)
    tolerant = make_pod("tolerant", node="n1", ip="10.0.0.2", ready=True)
    tolerant.spec.tolerations.append(tol(TAINT_UNREACHABLE, seconds=300))
    forever = make_pod("forever", node="n1", ip="10.0.0.3", ready=True)
    forever.spec.tolerations.append(tol(TAINT_UNREACHABLE))
    for pod in (plain, tolerant, forever):
        await cluster.add(pod)
    await controller.sync("n1")
    cluster.settle()
    assert node_taints(cluster) == set()
    assert cluster.writes("delete") == []
    # Lease renewed at 30 s keeps the node healthy past 40 s.
    cluster.clock.advance(30)
    await cluster.put(make_lease("n1", cluster.clock.now()))
    await controller.sync("n1")
    cluster.clock.advance(30)
    await controller.sync("n1")
    cluster.settle()
    node = cluster.get(core_pb2.Node, "n1")
    assert node is not None and get_condition(node.status.conditions, "Ready").status == "True"
    # Nothing for 41 s: Unknown, unreachable taints, pods not ready, the intolerant pod gone.
    cluster.clock.advance(41)
    await controller.sync("n1")
    cluster.settle()
    node = cluster.get(core_pb2.Node, "n1")
    assert node is not None
    ready = get_condition(node.status.conditions, "Ready")
    assert (ready.status, ready.reason) == ("Unknown", "NodeStatusUnknown")
    assert ready.message == "Kubelet stopped posting node status."
    assert ready.lastHeartbeatTime.seconds == int(T0.timestamp())  # not ours to move
    assert node_taints(cluster) == {(TAINT_UNREACHABLE, "NoExecute"),
                                    (TAINT_UNREACHABLE, "NoSchedule")}
    assert {p.metadata.name for p in cluster.objects(core_pb2.Pod)} == {"tolerant", "forever"}
    assert all(not is_pod_ready(p) for p in cluster.objects(core_pb2.Pod))
    assert "NodeNotReady" in cluster.recorder.reasons()
    assert cluster.recorder.reasons().count("TaintManagerEviction") == 1
    # 299 s later the tolerant pod stays; at 300 s it goes; the forever one stays.
    cluster.clock.advance(299)
    await controller.sync("n1")
    cluster.settle()
    assert len(cluster.objects(core_pb2.Pod)) == 2
    cluster.clock.advance(1)
    await controller.sync("n1")
    cluster.settle()
    assert [p.metadata.name for p in cluster.objects(core_pb2.Pod)] == ["forever"]
    assert cluster.recorder.reasons().count("TaintManagerEviction") == 2


async def test_recovery_removes_taints() -> None:
    cluster, controller = await setup()
    await controller.sync("n1")
    cluster.clock.advance(45)
    await controller.sync("n1")
    cluster.settle()
    assert (TAINT_UNREACHABLE, "NoExecute") in node_taints(cluster)
    # The kubelet comes back: Ready True with a new heartbeat.
    node = cluster.get(core_pb2.Node, "n1")
    assert node is not None
    cond = get_condition(node.status.conditions, "Ready")
    cond.status, cond.reason = "True", "KubeletReady"
    cond.lastHeartbeatTime.CopyFrom(time_to_proto(cluster.clock.now()))
    await cluster.put(node)
    await controller.sync("n1")
    cluster.settle()
    assert node_taints(cluster) == set()
    assert "NodeReady" in cluster.recorder.reasons()


async def test_kubelet_reports_not_ready() -> None:
    cluster, controller = await setup()
    node = cluster.get(core_pb2.Node, "n1")
    assert node is not None
    get_condition(node.status.conditions, "Ready").status = "False"
    await cluster.put(node)
    await controller.sync("n1")
    cluster.settle()
    assert node_taints(cluster) == {(TAINT_NOT_READY, "NoExecute"),
                                    (TAINT_NOT_READY, "NoSchedule")}


async def test_grace_period_is_a_setting_and_startup_grace_applies() -> None:
    cluster, controller = await setup({"node-monitor-grace-period": 10.0})
    never = core_pb2.Node()
    never.metadata.name = "fresh"
    await cluster.add(never)
    seeded = len(cluster.writes())
    await controller.sync("n1")
    await controller.sync("fresh")
    cluster.settle()
    assert len(cluster.writes()) == seeded
    cluster.clock.advance(11)
    await controller.sync("n1")
    await controller.sync("fresh")
    cluster.settle()
    n1 = cluster.get(core_pb2.Node, "n1")
    fresh = cluster.get(core_pb2.Node, "fresh")
    assert n1 is not None and fresh is not None
    assert get_condition(n1.status.conditions, "Ready").status == "Unknown"
    assert not fresh.status.conditions  # the 60 s startup grace is not over
    cluster.clock.advance(50)
    await controller.sync("fresh")
    cluster.settle()
    fresh = cluster.get(core_pb2.Node, "fresh")
    assert fresh is not None
    ready = get_condition(fresh.status.conditions, "Ready")
    assert (ready.status, ready.reason) == ("Unknown", "NodeStatusNeverUpdated")
    assert {t.key for t in fresh.spec.taints} == {TAINT_UNREACHABLE}


async def test_bad_setting_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="node-monitor-grace-period"):
        NodeLifecycleController(FakeCluster(settings={"node-monitor-grace-period": "x"}).ctx)


async def test_deleted_node_forgotten() -> None:
    cluster, controller = await setup()
    await controller.sync("n1")
    assert "n1" in controller.health
    await cluster.remove(core_pb2.Node, "n1")
    await controller.sync("n1")
    assert "n1" not in controller.health


@pytest.mark.parametrize(("settings", "expected"), [
    pytest.param({}, 1, id="context-default"),
    pytest.param({"concurrent-nodelifecycle-syncs": 4}, 4, id="concurrent"),
])
def test_workers_setting(settings: dict[str, object], expected: int) -> None:
    from pilothouse.services.controllers.settings import workers

    assert workers(FakeCluster(settings=settings).ctx, "nodelifecycle") == expected


@pytest.mark.parametrize("value", [0, "two", True])
def test_bad_workers_setting(value: object) -> None:
    from pilothouse.services.controllers.settings import workers

    with pytest.raises(ValueError, match="concurrent-job-syncs"):
        workers(FakeCluster(settings={"concurrent-job-syncs": value}).ctx, "job")
