"""Pod admission: may this node run a pod the scheduler (or a user) bound here? (pure)

What Kubernetes' kubelet does in its predicate admit handler before a pod's
first sync: the node checks the scheduler made (or would have made), against
the node as the kubelet knows it and the pods it has already admitted. A pod
that fails gets phase ``Failed`` with the first failure as its reason, and the
message ``Pod was rejected: <message>``; it never starts.

Checks, in Kubernetes' order (the first failure is the one reported):

- node pressure (the eviction manager's admission, ``admit_under_pressure``): under
  MemoryPressure alone only BestEffort pods are refused (unless they tolerate the
  memory-pressure taint); under DiskPressure or PIDPressure every pod is; critical pods
  (priority >= 2000000000) always get in. Reason ``Evicted``, "The node had condition:
  [DiskPressure]. ";
- the pod's ``kubernetes.io/os`` label and ``spec.os`` against the node's OS;
- resources: the pods count, then cpu, memory, ephemeral-storage and extended
  resources the node has, each against allocatable minus what admitted pods
  request (``OutOfpods``, ``OutOfcpu``, ... with "Node didn't have enough
  resource: cpu, requested: 4000, used: 100, capacity: 2000" in milli-CPUs,
  bytes or counts);
- ``NodeAffinity`` (nodeSelector and required node affinity), ``NodeName``,
  ``NodePorts`` (a host port another admitted pod holds);
- ``TaintToleration``: a ``NoExecute`` taint the pod does not tolerate (not for
  static pods).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pilothouse.api.quantity import Quantity, QuantityError
from pilothouse.api.selectors import compile_node_selector
from pilothouse.gen.k8s.core.v1 import core_pb2

OS_LABEL: Final = "kubernetes.io/os"
NODE_OS: Final = "linux"
REJECTED_PREFIX: Final = "Pod was rejected: "

# Resources counted in thousandths (cpu) or whole units (everything else).
_MILLI: Final = frozenset({"cpu"})
_NATIVE: Final = ("cpu", "memory", "ephemeral-storage")
_OUT_OF: Final = {"cpu": "OutOfcpu", "memory": "OutOfmemory",
                  "ephemeral-storage": "OutOfephemeral-storage", "pods": "OutOfpods"}

ERR_NODE_AFFINITY: Final = "node(s) didn't match Pod's node affinity/selector"
ERR_NODE_NAME: Final = "node(s) didn't match the requested node name"
ERR_NODE_PORTS: Final = "node(s) didn't have free ports for the requested pod ports"
ERR_TAINTS: Final = "node(s) had taints that the pod didn't tolerate"
ANY_IP: Final = "0.0.0.0"


@dataclass(frozen=True)
class Rejection:
    """Why a pod may not run here: ``reason`` goes to status.reason, ``message`` (without
    the "Pod was rejected: " prefix) to status.message and the event."""

    reason: str
    message: str

    @property
    def status_message(self) -> str:
        return REJECTED_PREFIX + self.message


def _amount(name: str, q: Any) -> int:
    text = q if isinstance(q, str) else q.string
    try:
        quantity = Quantity(text)
    except QuantityError:
        return 0  # the apiserver validates quantities; a broken one counts as nothing
    return quantity.milli_value() if name in _MILLI else quantity.value()


def _resources(rl: Mapping[str, Any]) -> dict[str, int]:
    return {name: _amount(name, q) for name, q in rl.items()}


def _add(into: dict[str, int], other: Mapping[str, int]) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


def _max(into: dict[str, int], other: Mapping[str, int]) -> None:
    for k, v in other.items():
        into[k] = max(into.get(k, 0), v)


def pod_requests(pod: core_pb2.Pod) -> dict[str, int]:
    """A pod's effective requests (cpu in milli-CPUs, others in units), as Kubernetes counts
    them: the sum of its containers and sidecars, at least the largest init container
    (with the sidecars started before it), plus the pod overhead."""
    total: dict[str, int] = {}
    for c in pod.spec.containers:
        _add(total, _resources(c.resources.requests))
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for c in pod.spec.initContainers:
        reqs = _resources(c.resources.requests)
        if c.restartPolicy == "Always":
            _add(total, reqs)
            _add(sidecars, reqs)
            _max(init_peak, sidecars)
        else:
            during = dict(reqs)
            _add(during, sidecars)
            _max(init_peak, during)
    _max(total, init_peak)
    _add(total, _resources(pod.spec.overhead))
    return total


def host_ports(pod: core_pb2.Pod) -> list[tuple[str, str, int]]:
    """(host IP, protocol, host port) of every container port with a hostPort."""
    out = []
    for c in list(pod.spec.initContainers) + list(pod.spec.containers):
        for p in c.ports:
            if p.hostPort:
                out.append((p.hostIP or ANY_IP, p.protocol or "TCP", p.hostPort))
    return out


def _ports_conflict(wanted: list[tuple[str, str, int]],
                    used: set[tuple[str, str, int]]) -> bool:
    for ip, proto, port in wanted:
        for uip, uproto, uport in used:
            if uport == port and uproto == proto and (ip == uip or ANY_IP in (ip, uip)):
                return True
    return False


def _tolerates(tol: core_pb2.Toleration, taint: core_pb2.Taint) -> bool:
    if tol.effect and tol.effect != taint.effect:
        return False
    if tol.key and tol.key != taint.key:
        return False
    if tol.operator == "Exists":
        return True
    return tol.operator in ("", "Equal") and tol.value == taint.value


SYSTEM_CRITICAL_PRIORITY: Final = 2_000_000_000
PRESSURE_ORDER: Final = ("MemoryPressure", "DiskPressure", "PIDPressure")


def _is_best_effort(pod: core_pb2.Pod) -> bool:
    for c in list(pod.spec.initContainers) + list(pod.spec.containers):
        for rl in (c.resources.requests, c.resources.limits):
            if any(name in ("cpu", "memory") and _amount(name, q) for name, q in rl.items()):
                return False
    return True


def admit_under_pressure(pod: core_pb2.Pod, pressure: set[str]) -> Rejection | None:
    """The eviction manager's admission: None, or why a node under ``pressure`` (condition
    types) refuses the pod."""
    if not pressure:
        return None
    if pod.spec.HasField("priority") and pod.spec.priority >= SYSTEM_CRITICAL_PRIORITY:
        return None
    if pressure == {"MemoryPressure"}:
        if not _is_best_effort(pod):
            return None
        taint = core_pb2.Taint(key="node.kubernetes.io/memory-pressure", effect="NoSchedule")
        if any(_tolerates(t, taint) for t in pod.spec.tolerations):
            return None
    conditions = " ".join(c for c in PRESSURE_ORDER if c in pressure)
    return Rejection("Evicted", f"The node had condition: [{conditions}]. ")


def _insufficient(name: str, requested: int, used: int, capacity: int) -> Rejection:
    reason = _OUT_OF.get(name, f"OutOf{name}")
    return Rejection(reason, f"Node didn't have enough resource: {name}, requested: "
                             f"{requested}, used: {used}, capacity: {capacity}")


def _predicate(name: str, desc: str) -> Rejection:
    return Rejection(name, f"Predicate {name} failed: {desc}")


def admit(pod: core_pb2.Pod, node: core_pb2.Node, admitted: Iterable[core_pb2.Pod], *,
          static: bool = False) -> Rejection | None:
    """None if ``node`` can run ``pod`` next to the ``admitted`` (active) pods, else the
    first reason it cannot, as Kubernetes' kubelet reports it."""
    if pod.metadata.labels.get(OS_LABEL, NODE_OS) != node.metadata.labels.get(OS_LABEL,
                                                                               NODE_OS):
        return Rejection("PodOSSelectorNodeLabelDoesNotMatch",
                         "Failed to admit pod as the `kubernetes.io/os` label doesn't match "
                         "node label")
    if pod.spec.HasField("os") and pod.spec.os.name and pod.spec.os.name != NODE_OS:
        return Rejection("PodOSNotSupported",
                         "Failed to admit pod as the OS field doesn't match node OS")
    others = [p for p in admitted if p.metadata.uid != pod.metadata.uid]
    allocatable = _resources(node.status.allocatable)
    failures: list[Rejection] = []
    # Resources: the pods count first, then each requested resource the node knows.
    allowed_pods = allocatable.get("pods", 0)
    if len(others) + 1 > allowed_pods:
        failures.append(_insufficient("pods", 1, len(others), allowed_pods))
    want = pod_requests(pod)
    # Extended resources the node does not have are not the kubelet's to judge (cluster-level
    # resources, DRA), as in Kubernetes.
    want = {k: v for k, v in want.items() if k in _NATIVE or k in allocatable}
    if any(want.values()):
        used: dict[str, int] = {}
        for other in others:
            _add(used, pod_requests(other))
        names = [n for n in _NATIVE if n in want] + sorted(n for n in want if n not in _NATIVE)
        for name in names:
            requested = want[name]
            if requested <= 0:
                continue
            capacity = allocatable.get(name, 0)
            if requested > capacity - used.get(name, 0):
                failures.append(_insufficient(name, requested, used.get(name, 0), capacity))
    # Node affinity, node name, host ports.
    if not _affinity_matches(pod, node):
        failures.append(_predicate("NodeAffinity", ERR_NODE_AFFINITY))
    if pod.spec.nodeName and pod.spec.nodeName != node.metadata.name:
        failures.append(_predicate("NodeName", ERR_NODE_NAME))
    wanted_ports = host_ports(pod)
    if wanted_ports:
        taken = {p for other in others for p in host_ports(other)}
        if _ports_conflict(wanted_ports, taken):
            failures.append(_predicate("NodePorts", ERR_NODE_PORTS))
    if not static:
        for taint in node.spec.taints:
            if taint.effect == "NoExecute" and not any(_tolerates(t, taint)
                                                       for t in pod.spec.tolerations):
                failures.append(_predicate("TaintToleration", ERR_TAINTS))
                break
    return failures[0] if failures else None


def _affinity_matches(pod: core_pb2.Pod, node: core_pb2.Node) -> bool:
    labels = dict(node.metadata.labels)
    for k, v in pod.spec.nodeSelector.items():
        if labels.get(k) != v:
            return False
    spec = pod.spec
    if spec.HasField("affinity") and spec.affinity.HasField("nodeAffinity") and \
            spec.affinity.nodeAffinity.HasField(
                "requiredDuringSchedulingIgnoredDuringExecution"):
        required = compile_node_selector(
            spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution)
        return required.matches(labels, {"metadata.name": node.metadata.name})
    return True
