"""Builders for pods and nodes, for tests, benches and simulated nodes.

``make_pod(cpu="500m")`` and ``make_node(zone="a")`` build the protobuf
objects with the few fields scheduling cares about; everything is keyword-only
and optional.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.scheduler.framework.types import LABEL_HOSTNAME, LABEL_ZONE

__all__ = ["make_node", "make_pod"]


def make_node(name: str = "node", *, cpu: str = "4", memory: str = "32Gi",
              pods: str = "110", ephemeral_storage: str = "", zone: str = "",
              labels: Mapping[str, str] | None = None,
              taints: Iterable[tuple[str, str, str]] = (), unschedulable: bool = False,
              extended: Mapping[str, str] | None = None,
              images: Iterable[tuple[Sequence[str], int]] = (),
              ready: bool = True) -> core_pb2.Node:
    """A node with allocatable = capacity; ``taints`` as (key, value, effect)."""
    node = core_pb2.Node()
    node.metadata.name = name
    node.metadata.labels[LABEL_HOSTNAME] = name
    if zone:
        node.metadata.labels[LABEL_ZONE] = zone
    for k, v in (labels or {}).items():
        node.metadata.labels[k] = v
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    if ephemeral_storage:
        resources["ephemeral-storage"] = ephemeral_storage
    resources.update(extended or {})
    for k, v in resources.items():
        node.status.capacity[k].string = v
        node.status.allocatable[k].string = v
    for key, value, effect in taints:
        node.spec.taints.add(key=key, value=value, effect=effect)
    node.spec.unschedulable = unschedulable
    for names, size in images:
        img = node.status.images.add()
        img.names.extend(names)
        img.sizeBytes = size
    cond = node.status.conditions.add()
    cond.type = "Ready"
    cond.status = "True" if ready else "False"
    return node


def make_pod(name: str = "pod", *, namespace: str = "default", cpu: str = "",
             memory: str = "", node_name: str = "", labels: Mapping[str, str] | None = None,
             priority: int | None = None, priority_class: str = "",
             preemption_policy: str = "", scheduler_name: str = "default-scheduler",
             node_selector: Mapping[str, str] | None = None,
             tolerations: Iterable[Mapping[str, Any]] = (),
             host_ports: Iterable[int | tuple[int, str, str]] = (),
             image: str = "registry.k8s.io/pause:3.10", containers: int = 1,
             init_cpu: str = "", init_memory: str = "",
             overhead: Mapping[str, str] | None = None,
             extended: Mapping[str, str] | None = None,
             affinity: Mapping[str, Any] | None = None,
             spread: Iterable[Mapping[str, Any]] = (),
             scheduling_gates: Iterable[str] = (), uid: str = "",
             nominated_node: str = "", start_time: int = 0) -> core_pb2.Pod:
    """A pod; ``affinity`` and ``spread`` are Kubernetes JSON (``{"nodeAffinity": ...}``,
    ``[{"maxSkew": 1, "topologyKey": ..., ...}]``); ``host_ports`` as port or
    (port, protocol, hostIP)."""
    from pilothouse.api.codec import dict_to_message as from_json_dict

    pod = core_pb2.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = namespace
    pod.metadata.uid = uid or f"uid-{namespace}-{name}"
    for k, v in (labels or {}).items():
        pod.metadata.labels[k] = v
    spec = pod.spec
    spec.schedulerName = scheduler_name
    spec.nodeName = node_name
    if priority is not None:
        spec.priority = priority
    spec.priorityClassName = priority_class
    spec.preemptionPolicy = preemption_policy
    for k, v in (node_selector or {}).items():
        spec.nodeSelector[k] = v
    for t in tolerations:
        spec.tolerations.add(**t)
    for i in range(containers):
        c = spec.containers.add(name=f"c{i}", image=image)
        if cpu:
            c.resources.requests["cpu"].string = cpu
        if memory:
            c.resources.requests["memory"].string = memory
        for k, v in (extended or {}).items():
            c.resources.requests[k].string = v
        if i == 0:
            for hp in host_ports:
                port, proto, ip = (hp, "TCP", "") if isinstance(hp, int) else hp
                c.ports.add(containerPort=port, hostPort=port, protocol=proto, hostIP=ip)
    if init_cpu or init_memory:
        ic = spec.initContainers.add(name="init", image=image)
        if init_cpu:
            ic.resources.requests["cpu"].string = init_cpu
        if init_memory:
            ic.resources.requests["memory"].string = init_memory
    for k, v in (overhead or {}).items():
        spec.overhead[k].string = v
    if affinity:
        from_json_dict(spec.affinity, dict(affinity))
    for constraint in spread:
        from_json_dict(spec.topologySpreadConstraints.add(), dict(constraint))
    for g in scheduling_gates:
        spec.schedulingGates.add(name=g)
    if nominated_node:
        pod.status.nominatedNodeName = nominated_node
    if start_time:
        pod.status.startTime.seconds = start_time
    pod.status.phase = "Pending"
    return pod
