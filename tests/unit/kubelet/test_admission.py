"""Pod admission: the kubelet's checks of a pod bound to it, and what a rejected pod shows."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.client.errors import ClientError, is_not_found
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import admission
from pilothouse.services.kubelet.admission import Rejection, admit, pod_requests

from .conftest import Harness, make_pod


def node(cpu: str = "2", memory: str = "4Gi", pods: str = "3", storage: str = "10Gi",
         labels: dict[str, str] | None = None,
         extra: dict[str, str] | None = None) -> core_pb2.Node:
    n = core_pb2.Node()
    n.metadata.name = "node-a"
    n.metadata.labels["kubernetes.io/os"] = "linux"
    n.metadata.labels.update(labels or {})
    for k, v in {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": storage,
                 **(extra or {})}.items():
        n.status.allocatable[k].string = v
    return n


def pod(name: str = "new", *, requests: dict[str, str] | None = None,
        host_port: int = 0, **kw: Any) -> core_pb2.Pod:
    p = make_pod(name)
    c = p.spec.containers[0]
    for k, v in (requests or {}).items():
        c.resources.requests[k].string = v
    if host_port:
        c.ports.add(containerPort=80, hostPort=host_port, protocol="TCP")
    for k, v in kw.get("selector", {}).items():
        p.spec.nodeSelector[k] = v
    return p


def reason(rejection: Rejection | None) -> str:
    return rejection.reason if rejection is not None else ""


CASES = [
    ("fits", pod(requests={"cpu": "500m", "memory": "1Gi"}), [], None),
    ("cpu over allocatable", pod(requests={"cpu": "3"}), [pod("a", requests={"cpu": "100m"})],
     Rejection("OutOfcpu", "Node didn't have enough resource: cpu, requested: 3000, used: 100, "
                           "capacity: 2000")),
    ("cpu taken by admitted pods", pod(requests={"cpu": "1500m"}),
     [pod("a", requests={"cpu": "1"})],
     Rejection("OutOfcpu", "Node didn't have enough resource: cpu, requested: 1500, "
                           "used: 1000, capacity: 2000")),
    ("memory", pod(requests={"memory": "5Gi"}), [],
     Rejection("OutOfmemory", "Node didn't have enough resource: memory, requested: "
                              "5368709120, used: 0, capacity: 4294967296")),
    ("ephemeral-storage", pod(requests={"ephemeral-storage": "11Gi"}), [],
     Rejection("OutOfephemeral-storage", "Node didn't have enough resource: ephemeral-storage, "
                                         "requested: 11811160064, used: 0, "
                                         "capacity: 10737418240")),
    ("pods count first", pod(requests={"cpu": "5"}), [pod("a"), pod("b"), pod("c")],
     Rejection("OutOfpods", "Node didn't have enough resource: pods, requested: 1, used: 3, "
                            "capacity: 3")),
    ("host port taken", pod(host_port=8080), [pod("a", host_port=8080)],
     Rejection("NodePorts", "Predicate NodePorts failed: node(s) didn't have free ports for "
                            "the requested pod ports")),
    ("host port free", pod(host_port=8080), [pod("a", host_port=8081)], None),
    ("node selector", pod(selector={"disk": "ssd"}), [],
     Rejection("NodeAffinity", "Predicate NodeAffinity failed: node(s) didn't match Pod's "
                               "node affinity/selector")),
]


@pytest.mark.parametrize(("new", "others", "want"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_admit(new: core_pb2.Pod, others: list[core_pb2.Pod], want: Rejection | None) -> None:
    assert admit(new, node(), others) == want


def test_extended_resources() -> None:
    gpu = pod(requests={"example.com/gpu": "2"})
    assert admit(gpu, node(extra={"example.com/gpu": "1"}), []) == Rejection(
        "OutOfexample.com/gpu", "Node didn't have enough resource: example.com/gpu, "
                                "requested: 2, used: 0, capacity: 1")
    assert admit(gpu, node(extra={"example.com/gpu": "2"}), []) is None
    # One the node does not have at all is not the kubelet's to judge (cluster resources).
    assert admit(gpu, node(), []) is None


def test_required_node_affinity_and_node_name_and_taints() -> None:
    p = pod()
    term = p.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution \
        .nodeSelectorTerms.add()
    term.matchExpressions.add(key="zone", operator="In", values=["a"])
    assert admit(p, node(labels={"zone": "a"}), []) is None
    assert reason(admit(p, node(labels={"zone": "b"}), [])) == "NodeAffinity"
    other = pod()
    other.spec.nodeName = "node-b"
    assert admit(other, node(), []) == Rejection(
        "NodeName", "Predicate NodeName failed: node(s) didn't match the requested node name")
    tainted = node()
    tainted.spec.taints.add(key="dedicated", value="db", effect="NoExecute")
    tainted.spec.taints.add(key="soft", value="x", effect="NoSchedule")  # not the kubelet's
    got = admit(pod(), tainted, [])
    assert got is not None and got.reason == "TaintToleration"
    assert admit(pod(), tainted, [], static=True) is None
    tolerant = pod()
    tolerant.spec.tolerations.add(key="dedicated", operator="Exists", effect="NoExecute")
    assert admit(tolerant, tainted, []) is None


def test_os_label_and_field() -> None:
    p = pod()
    p.metadata.labels["kubernetes.io/os"] = "windows"
    assert reason(admit(p, node(), [])) == "PodOSSelectorNodeLabelDoesNotMatch"
    q = pod()
    q.spec.os.name = "windows"
    assert reason(admit(q, node(), [])) == "PodOSNotSupported"


def test_pod_requests_count_init_containers_sidecars_and_overhead() -> None:
    p = pod(requests={"cpu": "100m"})
    init = p.spec.initContainers.add(name="setup", image="busybox")
    init.resources.requests["cpu"].string = "1"
    side = p.spec.initContainers.add(name="proxy", image="busybox", restartPolicy="Always")
    side.resources.requests["cpu"].string = "200m"
    p.spec.overhead["cpu"].string = "10m"
    # Regular + sidecar = 300m; the init container ran before the sidecar started: 1000m.
    assert pod_requests(p)["cpu"] == 1000 + 10
    late = p.spec.initContainers.add(name="late", image="busybox")
    late.resources.requests["cpu"].string = "900m"  # runs beside the sidecar: 1100m
    assert pod_requests(p)["cpu"] == 1100 + 10


async def test_a_rejected_pod_is_failed_with_the_reason_and_never_started(
        harness: Harness) -> None:
    state = await harness.add(make_pod("big"))
    state.rejection = Rejection("OutOfcpu", "Node didn't have enough resource: cpu, "
                                            "requested: 3000, used: 0, capacity: 2000")
    assert await harness.syncer.sync(state) is None
    stored = await harness.stored("big")
    assert stored.status.phase == "Failed"
    assert stored.status.reason == "OutOfcpu"
    assert stored.status.message == ("Pod was rejected: Node didn't have enough resource: cpu, "
                                     "requested: 3000, used: 0, capacity: 2000")
    assert not stored.status.containerStatuses
    assert ("", "Warning", "OutOfcpu", state.rejection.message) in harness.events
    assert harness.backend.sandboxes == {} and harness.backend.containers == {}
    await harness.syncer.sync(state)  # nothing more happens
    assert harness.reasons().count("OutOfcpu") == 1
    # Deleting it: the final delete, nothing to stop.
    state.gone = False
    deleting = await harness.stored("big")
    deleting.metadata.deletionTimestamp.seconds = 1
    state.pod = deleting
    await harness.syncer.sync(state)
    assert state.finished
    with pytest.raises(ClientError) as gone:
        await harness.stored("big")
    assert is_not_found(gone.value)


def test_rejection_message_prefix() -> None:
    assert Rejection("OutOfpods", "x").status_message == admission.REJECTED_PREFIX + "x"


def test_admission_under_node_pressure() -> None:
    best_effort = pod()
    burstable = pod(requests={"memory": "64Mi"})
    critical = pod()
    critical.spec.priority = 2_000_000_000
    tolerant = pod()
    tolerant.spec.tolerations.add(key="node.kubernetes.io/memory-pressure", operator="Exists",
                                  effect="NoSchedule")
    under = admission.admit_under_pressure
    assert under(best_effort, set()) is None
    assert under(best_effort, {"MemoryPressure"}) == Rejection(
        "Evicted", "The node had condition: [MemoryPressure]. ")
    assert under(burstable, {"MemoryPressure"}) is None
    assert under(tolerant, {"MemoryPressure"}) is None
    assert under(critical, {"MemoryPressure", "DiskPressure"}) is None
    assert under(burstable, {"PIDPressure", "MemoryPressure"}) == Rejection(
        "Evicted", "The node had condition: [MemoryPressure PIDPressure]. ")
    assert under(tolerant, {"DiskPressure"}) == Rejection(
        "Evicted", "The node had condition: [DiskPressure]. ")
