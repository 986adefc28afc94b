"""Node lifecycle controller: node health from Leases, NotReady/Unknown, taints, eviction.

Level-triggered over node names. A node is healthy while its kubelet shows
signs of life: its Lease in ``kube-node-lease`` is renewed, or its Ready
condition's ``lastHeartbeatTime`` moves. The controller notes *on its own
clock* when it last saw either change (the probe time, as Kubernetes does,
so clock skew between machines does not matter). ``sync(node)``:

1. If nothing moved for ``node-monitor-grace-period`` (40 s;
   ``node-startup-grace-period``, 60 s, for a node that never posted
   status), every kubelet-owned condition (Ready, MemoryPressure,
   DiskPressure, PIDPressure) becomes Unknown with reason NodeStatusUnknown
   ("Kubelet stopped posting node status."), and a NodeNotReady Event is
   recorded. Otherwise the node is looked at again when the grace period
   would run out.
2. Taints follow the Ready condition: False -> ``node.kubernetes.io/not-ready``,
   Unknown -> ``node.kubernetes.io/unreachable``, each NoExecute and
   NoSchedule; True removes them. A cordoned node gets
   ``node.kubernetes.io/unschedulable:NoSchedule``.
3. On a node that is not Ready, pods' Ready conditions are set False (so
   Services stop sending them traffic).
4. Taint-based eviction: a pod that does not tolerate every NoExecute taint
   is deleted at once; one that tolerates them for ``tolerationSeconds``
   (the apiserver adds 300 s for not-ready/unreachable by default) is
   deleted when that runs out, counted from the taint's ``timeAdded``. Each
   deletion is a TaintManagerEviction Event on the pod.

Not done: zone-aware eviction rate limiting (Kubernetes slows down taint
writes when a whole zone looks unhealthy).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pilothouse.api.timeutil import time_to_proto
from pilothouse.client import APIError, copy_object
from pilothouse.client.informer import NODE_NAME_INDEX, object_of
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.base import Controller, ControllerContext, ControllerDescriptor
from pilothouse.services.controllers.nodelifecycle_utils import (
    desired_taints,
    eviction_time,
    ready_status,
    reconcile_taints,
)
from pilothouse.services.controllers.pod_utils import (
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    get_condition,
    is_pod_ready,
)
from pilothouse.services.controllers.settings import seconds, workers

__all__ = ["DESCRIPTOR", "NodeLifecycleController"]

NODE_LEASE_NAMESPACE = "kube-node-lease"
DEFAULT_GRACE = 40.0
DEFAULT_STARTUP_GRACE = 60.0
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


@dataclass
class NodeHealth:
    """What the controller last saw of a node's signs of life, and when (its clock)."""

    probe_time: datetime
    lease_renew: tuple[int, int] | None
    heartbeat: tuple[int, int] | None


def _heartbeat(node: core_pb2.Node) -> tuple[int, int] | None:
    cond = get_condition(node.status.conditions, "Ready")
    if cond is None or not cond.HasField("lastHeartbeatTime"):
        return None
    return int(cond.lastHeartbeatTime.seconds), int(cond.lastHeartbeatTime.nanos)


class NodeLifecycleController(Controller):
    name = "nodelifecycle"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.grace = seconds(ctx, "node-monitor-grace-period", DEFAULT_GRACE)
        self.startup_grace = seconds(ctx, "node-startup-grace-period", DEFAULT_STARTUP_GRACE)
        self.nodes = ctx.informers.informer_for(core_pb2.Node)
        self.leases = ctx.informers.informer_for(coordination_pb2.Lease)
        self.pods = ctx.informers.informer_for(core_pb2.Pod)
        self.health: dict[str, NodeHealth] = {}
        # When eviction of a pod on a tainted node was first considered (uid -> time).
        self._first_seen: dict[str, datetime] = {}
        self.nodes.add_event_handler(
            on_add=self._enqueue_node,
            on_update=lambda old, new: self._enqueue_node(new),
            on_delete=self._enqueue_node)
        self.leases.add_event_handler(
            on_add=self._lease_changed,
            on_update=lambda old, new: self._lease_changed(new))
        self.pods.add_event_handler(
            on_add=self._pod_changed,
            on_update=lambda old, new: self._pod_changed(new))

    def _enqueue_node(self, obj: Any) -> None:
        self.enqueue(object_of(obj).metadata.name)

    def _lease_changed(self, lease: coordination_pb2.Lease) -> None:
        if lease.metadata.namespace == NODE_LEASE_NAMESPACE:
            self.enqueue(lease.metadata.name)

    def _pod_changed(self, pod: core_pb2.Pod) -> None:
        # Only pods that land on a tainted or unhealthy node need a look.
        node = self.nodes.get(pod.spec.nodeName) if pod.spec.nodeName else None
        if node is not None and (any(t.effect == "NoExecute" for t in node.spec.taints)
                                 or ready_status(node) != "True"):
            self.enqueue(pod.spec.nodeName)

    # -- health -------------------------------------------------------------------------

    def observe(self, node: core_pb2.Node, now: datetime) -> NodeHealth:
        """Update (and return) what we know of the node's signs of life."""
        lease = self.leases.get(node.metadata.name, NODE_LEASE_NAMESPACE)
        renew = None
        if lease is not None and lease.spec.HasField("renewTime"):
            renew = int(lease.spec.renewTime.seconds), int(lease.spec.renewTime.nanos)
        heartbeat = _heartbeat(node)
        health = self.health.get(node.metadata.name)
        if health is None:
            health = NodeHealth(now, renew, heartbeat)
            self.health[node.metadata.name] = health
        elif renew != health.lease_renew or heartbeat != health.heartbeat:
            health.probe_time, health.lease_renew, health.heartbeat = now, renew, heartbeat
        return health

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            self.health.pop(key, None)
            return
        now = self.ctx.now()
        health = self.observe(node, now)
        grace = self.grace if health.heartbeat is not None or health.lease_renew \
            else self.startup_grace
        deadline = health.probe_time + timedelta(seconds=grace)
        if now >= deadline:
            node = await self._mark_unknown(node, now)
        else:
            self.enqueue_after(key, (deadline - now).total_seconds())
        node = await self._update_taints(node, now)
        if ready_status(node) != "True":
            await self._mark_pods_not_ready(node, now)
        await self._evict(node, now)

    async def _mark_unknown(self, node: core_pb2.Node, now: datetime) -> core_pb2.Node:
        changed = copy_object(node)
        conditions = changed.status.conditions
        never = _heartbeat(node) is None
        touched = False
        for type_ in KUBELET_CONDITIONS:
            cond = get_condition(conditions, type_)
            if cond is None:
                if type_ != "Ready":
                    continue
                cond = conditions.add(type="Ready")
            if cond.status == "Unknown" and cond.reason in ("NodeStatusUnknown",
                                                            "NodeStatusNeverUpdated"):
                continue
            cond.status = "Unknown"
            if never:
                cond.reason = "NodeStatusNeverUpdated"
                cond.message = "Kubelet never posted node status."
            else:
                cond.reason = "NodeStatusUnknown"
                cond.message = "Kubelet stopped posting node status."
            cond.lastTransitionTime.CopyFrom(time_to_proto(now))
            touched = True
        if not touched:
            return node
        was_ready = ready_status(node) == "True"
        updated = await self.client.update_status(changed)
        if was_ready:
            self.recorder.event(node, "Normal", "NodeNotReady",
                                f"Node {node.metadata.name} status is now: NodeNotReady")
        return updated

    async def _update_taints(self, node: core_pb2.Node, now: datetime) -> core_pb2.Node:
        taints = reconcile_taints(list(node.spec.taints), desired_taints(node), now)
        if taints is None:
            return node
        changed = copy_object(node)
        del changed.spec.taints[:]
        changed.spec.taints.extend(taints)
        updated = await self.client.update(changed)
        was_tainted = any(t.key in (TAINT_NOT_READY, TAINT_UNREACHABLE) for t in node.spec.taints)
        if ready_status(node) == "True" and was_tainted:
            self.recorder.event(node, "Normal", "NodeReady",
                                f"Node {node.metadata.name} status is now: NodeReady")
        return updated

    async def _mark_pods_not_ready(self, node: core_pb2.Node, now: datetime) -> None:
        for pod in self.pods.by_index(NODE_NAME_INDEX, node.metadata.name):
            if not is_pod_ready(pod) or pod.status.phase in ("Succeeded", "Failed"):
                continue
            changed = copy_object(pod)
            cond = get_condition(changed.status.conditions, "Ready")
            assert cond is not None  # is_pod_ready found it
            cond.status = "False"
            cond.lastTransitionTime.CopyFrom(time_to_proto(now))
            try:
                await self.client.update_status(changed)
            except APIError as exc:
                if not (exc.is_not_found() or exc.is_conflict()):
                    raise
                self.enqueue_after(node.metadata.name, 1.0)  # look again with fresh data
            else:
                self.recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")

    async def _evict(self, node: core_pb2.Node, now: datetime) -> None:
        taints = [t for t in node.spec.taints if t.effect == "NoExecute"]
        pods = self.pods.by_index(NODE_NAME_INDEX, node.metadata.name)
        if not taints:
            for pod in pods:
                self._first_seen.pop(pod.metadata.uid, None)
            return
        next_check: float | None = None
        for pod in pods:
            if pod.metadata.HasField("deletionTimestamp"):
                continue
            first_seen = self._first_seen.setdefault(pod.metadata.uid, now)
            when = eviction_time(pod, taints, first_seen)
            if when is None:
                continue
            if when > now:
                wait = (when - now).total_seconds()
                next_check = wait if next_check is None else min(next_check, wait)
                continue
            self.recorder.event(pod, "Normal", "TaintManagerEviction",
                                f"Marking for deletion Pod {pod.metadata.namespace}/"
                                f"{pod.metadata.name}")
            try:
                await self.client.delete(core_pb2.Pod, pod.metadata.name,
                                         namespace=pod.metadata.namespace,
                                         precondition_uid=pod.metadata.uid)
            except APIError as exc:
                if not (exc.is_not_found() or exc.is_conflict()):
                    raise
            self._first_seen.pop(pod.metadata.uid, None)
        if next_check is not None:
            self.enqueue_after(node.metadata.name, next_check)


async def start_nodelifecycle(ctx: ControllerContext) -> None:
    controller = NodeLifecycleController(ctx)
    ctx.informers.start()
    await controller.run(workers=workers(ctx, controller.name))


DESCRIPTOR = ControllerDescriptor("nodelifecycle", start_nodelifecycle)
