"""Pure helpers of the DaemonSet controller: which nodes run a daemon pod, the
pod for a node, and the rolling-update budgets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pilothouse.api.intstr import scaled_value
from pilothouse.api.selectors import compile_node_selector
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.pod_utils import (
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
    pod_from_template,
    taint_tolerated,
)

__all__ = [
    "NodeFit",
    "daemon_tolerations",
    "node_fit",
    "pod_for_node",
    "pod_node_name",
    "rolling_budgets",
]

# The tolerations Kubernetes adds to every daemon pod: daemons keep running on
# unhealthy nodes (no tolerationSeconds) and may land on pressured or cordoned ones.
_AUTO_TOLERATIONS = (
    (TAINT_NOT_READY, "NoExecute"),
    (TAINT_UNREACHABLE, "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    (TAINT_UNSCHEDULABLE, "NoSchedule"),
)
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"


def daemon_tolerations(spec: core_pb2.PodSpec) -> list[core_pb2.Toleration]:
    """The template's tolerations plus the automatic ones it does not have yet."""
    out = list(spec.tolerations)
    auto = list(_AUTO_TOLERATIONS)
    if spec.hostNetwork:
        auto.append((NETWORK_UNAVAILABLE, "NoSchedule"))
    for key, effect in auto:
        if not any(t.key == key and t.effect == effect for t in out):
            out.append(core_pb2.Toleration(key=key, operator="Exists", effect=effect))
    return out


@dataclass(frozen=True)
class NodeFit:
    """should_run: a new daemon pod belongs there; should_continue: an existing one may stay."""

    should_run: bool
    should_continue: bool


def node_fit(ds: apps_pb2.DaemonSet, node: core_pb2.Node) -> NodeFit:
    """Whether the DaemonSet's pod belongs on ``node`` (Kubernetes' NodeShouldRunDaemonPod).

    nodeSelector and required node affinity must match; every NoSchedule
    and NoExecute taint must be tolerated to start a pod, and every
    NoExecute taint to keep one.
    """
    spec = ds.spec.template.spec
    labels = dict(node.metadata.labels)
    if any(labels.get(k) != v for k, v in spec.nodeSelector.items()):
        return NodeFit(False, False)
    required = spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
    if spec.affinity.nodeAffinity.HasField("requiredDuringSchedulingIgnoredDuringExecution"):
        selector = compile_node_selector(required)
        if not selector.matches(labels, {"metadata.name": node.metadata.name}):
            return NodeFit(False, False)
    tolerations = daemon_tolerations(spec)
    run = keep = True
    for taint in node.spec.taints:
        if taint.effect == "PreferNoSchedule" or taint_tolerated(taint, tolerations):
            continue
        run = False
        if taint.effect == "NoExecute":
            keep = False
    return NodeFit(run, keep)


def pod_for_node(ds: apps_pb2.DaemonSet, node_name: str, revision_hash: str,
                 template: core_pb2.PodTemplateSpec | None = None) -> core_pb2.Pod:
    """The daemon pod for a node: pinned by required node affinity on
    ``metadata.name`` (the scheduler still binds it), automatic tolerations,
    the ``controller-revision-hash`` label."""
    tmpl = template if template is not None else ds.spec.template
    pod = pod_from_template(tmpl, ds, "apps/v1", "DaemonSet")
    pod.metadata.labels["controller-revision-hash"] = revision_hash
    del pod.spec.tolerations[:]
    pod.spec.tolerations.extend(daemon_tolerations(tmpl.spec))
    required = pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
    del required.nodeSelectorTerms[:]
    term = required.nodeSelectorTerms.add()
    term.matchFields.add(key="metadata.name", operator="In", values=[node_name])
    return pod


def pod_node_name(pod: core_pb2.Pod) -> str:
    """The node a daemon pod is for: where it is bound, else its affinity pin."""
    if pod.spec.nodeName:
        return str(pod.spec.nodeName)
    required = pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
    for term in required.nodeSelectorTerms:
        for field in term.matchFields:
            if field.key == "metadata.name" and field.operator == "In" and len(field.values) == 1:
                return str(field.values[0])
    return ""


def rolling_budgets(ds: apps_pb2.DaemonSet, desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts for ``desired`` nodes; both zero means
    one unavailable, as Kubernetes does."""
    rolling = ds.spec.updateStrategy.rollingUpdate
    surge = scaled_value(rolling.maxSurge, desired, True) if rolling.HasField("maxSurge") else 0
    unavailable = scaled_value(rolling.maxUnavailable, desired, True) \
        if rolling.HasField("maxUnavailable") else 1
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def oldest_first(pods: Sequence[core_pb2.Pod]) -> list[core_pb2.Pod]:
    return sorted(pods, key=lambda p: (p.metadata.creationTimestamp.seconds, p.metadata.name))
