"""Admission of pods over the node's capacity, and eviction of a pod whose emptyDir grows
past its sizeLimit, with a real apiserver, a real runtime and the kubelet."""

from __future__ import annotations

from pilothouse.api.quantity import Quantity
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import cri_config, eviction
from pilothouse.services.kubelet.runtime import RuntimeClient

from .conftest import NODE, Node, busybox_pod, wait_for
from .test_kubelet import running


def failed(pod: core_pb2.Pod) -> bool:
    return pod.status.phase == "Failed"


async def test_pods_over_capacity_or_on_a_taken_host_port_are_rejected(
        process_node: Node) -> None:
    node = process_node
    await node.start_kubelet()
    n = await node.client.get(core_pb2.Node, NODE)
    capacity = Quantity(n.status.allocatable["cpu"].string).milli_value()
    small = busybox_pod("small", "sleep 3600")
    small.spec.containers[0].resources.requests["cpu"].string = "100m"
    small.spec.containers[0].ports.add(containerPort=80, hostPort=18080, hostIP="127.0.0.1")
    await node.run_pod(small)
    await node.wait_pod("small", running, what="Running")

    huge = busybox_pod("huge", "sleep 3600")
    huge.spec.containers[0].resources.requests["cpu"].string = f"{capacity + 1000}m"
    await node.run_pod(huge)
    pod = await node.wait_pod("huge", failed, what="Failed")
    assert pod.status.reason == "OutOfcpu"
    assert pod.status.message == (
        f"Pod was rejected: Node didn't have enough resource: cpu, requested: "
        f"{capacity + 1000}, used: 100, capacity: {capacity}")
    assert not pod.status.containerStatuses

    clash = busybox_pod("clash", "sleep 3600")
    clash.spec.containers[0].ports.add(containerPort=80, hostPort=18080)
    await node.run_pod(clash)
    pod = await node.wait_pod("clash", failed, what="Failed")
    assert (pod.status.reason, pod.status.message) == (
        "NodePorts", "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free "
                     "ports for the requested pod ports")

    async def events_written() -> bool:
        reasons = {e.reason for e in await node.events("huge") + await node.events("clash")}
        return {"OutOfcpu", "NodePorts"} <= reasons

    await wait_for(events_written, what="the rejection events")
    # Neither started anything; the admitted pod runs on.
    names = {sb.metadata.name for sb in await node.sandboxes()}
    assert names == {"small"}
    assert (await node.pod("small")).status.phase == "Running"
    # A rejected pod is deleted like any other.
    await node.client.delete(core_pb2.Pod, "huge", namespace="default")

    async def gone() -> bool:
        return "huge" not in {p.metadata.name for p in
                              (await node.client.list(core_pb2.Pod, namespace="default")).items}

    await wait_for(gone, what="the rejected pod deleted")


async def test_an_empty_dir_over_its_size_limit_gets_the_pod_evicted(node: Node) -> None:
    node.overrides = {"eviction_monitoring_interval": 0.3}
    kubelet = await node.start_kubelet()
    pod = busybox_pod("filler", "dd if=/dev/zero of=/scratch/fill bs=1024 count=2048 2>/dev/null; "
                      "echo filled; sleep 3600", restart_policy="Never")
    v = pod.spec.volumes.add(name="scratch")
    v.volumeSource.emptyDir.sizeLimit.string = "1Mi"
    pod.spec.containers[0].volumeMounts.add(name="scratch", mountPath="/scratch")
    created = await node.run_pod(pod)
    message = 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". '
    evicted = await node.wait_pod("filler", failed, within=60, what="evicted")
    assert (evicted.status.reason, evicted.status.message) == ("Evicted", message)
    target = next(c for c in evicted.status.conditions if c.type == "DisruptionTarget")
    assert (target.status, target.reason) == ("True", "TerminationByKubelet")
    cs = evicted.status.containerStatuses[0]
    assert cs.state.HasField("terminated") and not cs.ready

    async def evicted_event() -> bool:
        return any(e.reason == "Evicted" and e.message == message
                   for e in await node.events("filler"))

    await wait_for(evicted_event, what="the Evicted event")
    # The disk is given back: the pod's volumes are gone, the pod object and its log stay.
    volumes = kubelet.volumes.pod_dir(created.metadata.uid) / "volumes"

    async def volumes_removed() -> bool:
        return not volumes.exists()

    await wait_for(volumes_removed, what="the evicted pod's emptyDir removed")
    assert await node.logs("filler", "main") in ("", "filled\n")
    assert not [c for c in await node.containers() if c.state == 1]  # nothing running


class LowMemory:
    """The real node's summary, except that memory is nearly gone."""

    def __init__(self, real: eviction.SummaryProvider) -> None:
        self.real = real
        self.low = False

    async def summary(self, pods: list[core_pb2.Pod]) -> eviction.Summary:
        s = await self.real.summary(pods)
        if self.low:
            s.memory_available = 50 * 1024 * 1024
        return s


async def test_memory_pressure_sets_the_node_condition_and_evicts_a_pod(node: Node) -> None:
    node.overrides = {"eviction_monitoring_interval": 0.3, "node_status_update_frequency": 0.5}
    runtime = RuntimeClient(node.socket)
    root = node.kubelet_root
    low = LowMemory(eviction.NodeSummaryProvider(
        runtime=runtime, root_dir=root, pod_dir=lambda uid: root / "pods" / uid,
        log_dir=lambda pod: cri_config.log_directory(root, pod), pid_max=32768))
    try:
        await node.start_kubelet(summary_provider=low)
        await node.run_pod(busybox_pod("hog", "sleep 3600"))
        hog = await node.wait_pod("hog", running, what="Running")
        # The real summary measures the pod: memory from the CRI's container stats, its
        # processes from the sandbox stats, its log on disk; and the node.
        real = await low.real.summary([hog])
        usage = real.pods[hog.metadata.uid]
        assert [c.name for c in usage.containers] == ["main"]
        assert (usage.containers[0].memory_working_set or 0) > 0
        # (containerd's own CRI has pod stats because the kubelet names the pod's cgroup.)
        assert usage.processes is not None and usage.processes >= 1
        assert real.memory_capacity > real.memory_available > 0
        assert real.nodefs.capacity > real.nodefs.available > 0

        async def condition(status: str) -> bool:
            n = await node.client.get(core_pb2.Node, NODE)
            return {c.type: c.status for c in n.status.conditions}["MemoryPressure"] == status

        assert await condition("False")
        low.low = True
        pod = await node.wait_pod("hog", failed, what="evicted")
        assert pod.status.reason == "Evicted"
        assert pod.status.message.startswith(
            "The node was low on resource: memory. Threshold quantity: 100Mi, "
            "available: 50Mi. ")
        await wait_for(lambda: condition("True"), what="MemoryPressure True on the Node")
        # Under memory pressure a new BestEffort pod is not admitted.
        await node.run_pod(busybox_pod("late", "sleep 3600"))
        late = await node.wait_pod("late", failed, what="rejected")
        assert (late.status.reason, late.status.message) == (
            "Evicted", "Pod was rejected: The node had condition: [MemoryPressure]. ")
    finally:
        await node.stop_kubelet()  # its eviction manager uses ``runtime`` until it stops
        await runtime.close()
