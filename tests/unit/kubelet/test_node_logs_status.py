"""Node status (capacity, conditions, lease), CRI log reading, pod phase and QoS (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pilothouse.client import Client
from pilothouse.client.clock import AsyncFakeClock
from pilothouse.client.fake import FakeTransport
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import logs as logslib
from pilothouse.services.kubelet import nodestatus, podstatus
from pilothouse.services.kubelet.config import KubeletConfig
from pilothouse.services.kubelet.node import NodeAgent

MACHINE = nodestatus.MachineInfo(cores=2, memory_bytes=8 * 2**30,
                                 ephemeral_storage_bytes=100 * 2**30, hostname="h",
                                 kernel_version="6.1", os_image="Debian", architecture="amd64")


@pytest.mark.parametrize("cores,pods", [(1, 10), (2, 20), (11, 110), (64, 110)])
def test_max_pods(cores: int, pods: int) -> None:
    assert nodestatus.max_pods_for(cores) == pods


def test_capacity_and_allocatable() -> None:
    node = nodestatus.build_node("n1", MACHINE, node_ip="192.0.2.1", kubelet_port=10250,
                                 runtime_version="fake://1", labels={"zone": "a"})
    cap = {k: v.string for k, v in node.status.capacity.items()}
    assert cap == {"cpu": "2", "memory": f"{8 * 2**20}Ki",
                   "ephemeral-storage": f"{100 * 2**20}Ki", "pods": "20"}
    alloc = {k: v.string for k, v in node.status.allocatable.items()}
    assert alloc["memory"] == f"{(8 * 2**30 - 100 * 2**20) // 1024}Ki"
    assert node.metadata.labels["kubernetes.io/arch"] == "amd64"
    assert node.metadata.labels["zone"] == "a"
    assert node.status.nodeInfo.kubeletVersion.startswith("v1.32")
    assert node.status.daemonEndpoints.kubeletEndpoint.Port == 10250


def test_conditions_change_only_on_flips() -> None:
    node = core_pb2.Node()
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    assert nodestatus.set_conditions(node, nodestatus.NodeHealth(), t0)
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert not nodestatus.set_conditions(node, nodestatus.NodeHealth(), t0 + timedelta(10))
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.lastTransitionTime.seconds == int(t0.timestamp())
    assert ready.lastHeartbeatTime.seconds > ready.lastTransitionTime.seconds
    down = nodestatus.NodeHealth(runtime_ready=False, runtime_message="gone")
    assert nodestatus.set_conditions(node, down, t0 + timedelta(20))
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason, ready.message) == ("False", "KubeletNotReady", "gone")
    pressure = nodestatus.NodeHealth(pressure={"MemoryPressure", "PIDPressure"})
    nodestatus.set_conditions(node, pressure, t0)
    conds = {c.type: (c.status, c.reason) for c in node.status.conditions}
    assert conds["MemoryPressure"] == ("True", "KubeletHasInsufficientMemory")
    assert conds["PIDPressure"] == ("True", "KubeletHasInsufficientPID")
    assert conds["DiskPressure"] == ("False", "KubeletHasNoDiskPressure")


async def test_node_agent_registers_renews_and_writes_status_on_change() -> None:
    transport = FakeTransport()
    client = Client(transport)
    clock = AsyncFakeClock()
    health = nodestatus.NodeHealth()

    async def probe() -> nodestatus.NodeHealth:
        return health

    agent = NodeAgent(client=client, clock=clock,
                      config=KubeletConfig(node_name="n1", runtime_endpoint="unix:///x"),
                      machine=MACHINE, node_ip="192.0.2.1", kubelet_port=1234,
                      runtime_version="fake://1", health=probe)
    node = await agent.register()
    assert node.status.addresses[0].address == "192.0.2.1"
    lease = await agent.renew_lease()
    assert lease.spec.holderIdentity == "n1"
    assert lease.metadata.ownerReferences[0].uid == node.metadata.uid
    first = lease.spec.renewTime.seconds
    clock.advance(10)
    lease = await agent.renew_lease()
    assert lease.spec.renewTime.seconds == first + 10
    stored = await client.get(coordination_pb2.Lease, "n1", namespace="kube-node-lease")
    assert stored.spec.renewTime.seconds == first + 10
    writes = agent.status_writes
    assert not await agent.sync_status()  # nothing changed
    health.runtime_ready = False
    assert await agent.sync_status()
    assert agent.status_writes == writes + 1
    clock.advance(301)
    health.runtime_ready = False
    assert await agent.sync_status()  # no change, but the 5-minute report is due
    # A second agent (a restarted kubelet) adopts the existing Node.
    again = NodeAgent(client=client, clock=clock,
                      config=KubeletConfig(node_name="n1", runtime_endpoint="unix:///x",
                                           node_labels={"extra": "yes"}),
                      machine=MACHINE, node_ip="192.0.2.1", kubelet_port=1234,
                      runtime_version="fake://1", health=probe)
    adopted = await again.register()
    assert adopted.metadata.uid == node.metadata.uid
    assert adopted.metadata.labels["extra"] == "yes"


# -- logs -------------------------------------------------------------------------------------


def write_log(path: Path) -> None:
    path.write_bytes(
        b"2024-01-01T00:00:01.000000001Z stdout F one\n"
        b"2024-01-01T00:00:02.5Z stderr F two\n"
        b"2024-01-01T00:00:03Z stdout P thr\n"
        b"2024-01-01T00:00:03.1Z stdout F ee\n"
        b"garbage line\n"
        b"2024-01-01T00:00:04Z stdout P tail-without-newline\n")


@pytest.mark.parametrize("opts,expected", [
    (logslib.LogOptions(), b"one\ntwo\nthree\ntail-without-newline"),
    (logslib.LogOptions(tail_lines=2), b"three\ntail-without-newline"),
    (logslib.LogOptions(tail_lines=0), b""),
    (logslib.LogOptions(limit_bytes=6), b"one\ntw"),
    (logslib.LogOptions(since_ns=logslib.parse_ts("2024-01-01T00:00:02Z")),
     b"two\nthree\ntail-without-newline"),
    (logslib.LogOptions(timestamps=True, tail_lines=2),
     b"2024-01-01T00:00:03Z three\n2024-01-01T00:00:04Z tail-without-newline"),
], ids=["all", "tail", "tail-0", "limit", "since", "timestamps"])
def test_read_log(tmp_path: Path, opts: logslib.LogOptions, expected: bytes) -> None:
    path = tmp_path / "0.log"
    write_log(path)
    assert logslib.read_log(path, opts) == expected


async def test_follow_streams_appended_lines_until_the_container_stops(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"2024-01-01T00:00:01Z stdout F first\n")
    state = {"running": True, "checks": 0}

    async def running() -> bool:
        state["checks"] += 1
        if state["checks"] == 1:
            with path.open("ab") as f:
                f.write(b"2024-01-01T00:00:02Z stdout F second\n")
        return state["checks"] < 3

    chunks = [c async for c in logslib.stream_log(path, logslib.LogOptions(follow=True),
                                                  running)]
    assert b"".join(chunks) == b"first\nsecond\n"


def test_missing_log_is_empty(tmp_path: Path) -> None:
    assert logslib.read_log(tmp_path / "nope", logslib.LogOptions()) == b""


# -- pod status ---------------------------------------------------------------------------------


def with_resources(*containers: dict[str, dict[str, str]]) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    for i, spec in enumerate(containers):
        c = pod.spec.containers.add(name=f"c{i}")
        for kind in ("requests", "limits"):
            for k, v in spec.get(kind, {}).items():
                getattr(c.resources, kind)[k].string = v
    return pod


@pytest.mark.parametrize("containers,qos", [
    ([{}], "BestEffort"),
    ([{"requests": {"cpu": "100m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}],
     "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}],
     "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}, {}],
     "Burstable"),
], ids=["none", "request-only", "equal", "unequal", "one-of-two"])
def test_qos_class(containers: list[dict[str, dict[str, str]]], qos: str) -> None:
    assert podstatus.qos_class(with_resources(*containers)) == qos


def record(name: str, state: int, exit_code: int = 0, restarts: int = 0,
           created: int = 1) -> podstatus.ContainerRecord:
    return podstatus.ContainerRecord(id=f"{name}-{restarts}", name=name, state=state,
                                     exit_code=exit_code, restart_count=restarts,
                                     created_at=created, started_at=1_000_000_000,
                                     finished_at=2_000_000_000)


R, E = podstatus.RUNNING, podstatus.EXITED


@pytest.mark.parametrize("policy,records,phase", [
    ("Always", [record("a", R)], "Running"),
    ("Always", [record("a", E, 1)], "Running"),
    ("Never", [record("a", E, 0)], "Succeeded"),
    ("Never", [record("a", E, 2)], "Failed"),
    ("OnFailure", [record("a", E, 0)], "Succeeded"),
    ("Never", [record("a", R), record("b", E, 0)], "Running"),
    ("Never", [record("a", E, 0), record("b", E, 1)], "Failed"),
    ("Always", [], "Pending"),
], ids=["running", "always-restarting", "never-ok", "never-failed", "onfailure-ok",
        "one-still-running", "one-failed", "nothing-yet"])
def test_phase(policy: str, records: list[podstatus.ContainerRecord], phase: str) -> None:
    pod = core_pb2.Pod()
    pod.spec.restartPolicy = policy
    pod.spec.containers.add(name="a")
    if any(r.name == "b" for r in records):
        pod.spec.containers.add(name="b")
    rp = podstatus.RuntimePod("u", [podstatus.SandboxRecord("s", True, 1, ip="10.0.0.1")],
                              records)
    status = podstatus.generate(pod, rp, podstatus.WorkerView(), runtime_name="x",
                                host_ip="h", now=datetime(2024, 1, 1, tzinfo=UTC))
    assert status.phase == phase


def test_last_state_and_restart_count_of_a_restarted_container() -> None:
    pod = core_pb2.Pod()
    pod.spec.containers.add(name="a", image="busybox")
    rp = podstatus.RuntimePod("u", [podstatus.SandboxRecord("s", True, 1, ip="10.0.0.1")],
                              [record("a", R, restarts=1, created=2),
                               record("a", E, 137, restarts=0, created=1)])
    status = podstatus.generate(pod, rp, podstatus.WorkerView(), runtime_name="rt",
                                host_ip="h", now=datetime(2024, 1, 1, tzinfo=UTC))
    cs = status.containerStatuses[0]
    assert cs.restartCount == 1 and cs.state.HasField("running") and cs.ready
    assert cs.lastState.terminated.exitCode == 137
    assert cs.lastState.terminated.containerID == "rt://a-0"
    assert cs.containerID == "rt://a-1"


def test_a_sync_before_the_write_comes_back_keeps_its_times() -> None:
    """The kubelet's own conditions and startTime carry on from the status it last wrote
    while the watch still shows the older one: the same runtime, the same status (no
    second write with moved transition times)."""
    pod = core_pb2.Pod()
    pod.spec.containers.add(name="a", image="busybox")
    rp = podstatus.RuntimePod("u", [podstatus.SandboxRecord("s", True, 1, ip="10.0.0.1")],
                              [record("a", R)])
    first = podstatus.generate(pod, rp, podstatus.WorkerView(), runtime_name="rt",
                               host_ip="h", now=datetime(2024, 1, 1, tzinfo=UTC))
    later = datetime(2024, 1, 1, 0, 0, 3, tzinfo=UTC)
    again = podstatus.generate(pod, rp, podstatus.WorkerView(), runtime_name="rt",
                               host_ip="h", now=later, written=first)
    assert podstatus.status_equal(first, again)
    moved = podstatus.generate(pod, rp, podstatus.WorkerView(), runtime_name="rt",
                               host_ip="h", now=later)  # what happened before
    assert not podstatus.status_equal(first, moved)
