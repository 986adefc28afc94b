"""Simulated nodes, as KWOK does: many Nodes with no kubelet behind them.

``FakeNodes`` registers ``count`` Nodes (capacity, zone labels, extra labels
and taints as asked, a Ready condition), keeps a Lease per node in
``kube-node-lease`` renewed every ``lease_renew_interval`` seconds (0: no
leases), and plays the kubelet for pods bound to them: a pod gets phase
Running, a pod IP from its node's /24, Ready conditions and running container
statuses; a pod being deleted (``deletionTimestamp``) is removed at once, as
a kubelet finishing its shutdown would.

The pod side is a controller: the informer's handlers enqueue keys and
``workers`` coroutines sync them (so a burst of bindings is absorbed, one
update per pod). ``pilothouse up --fake-nodes N`` is meant to call
``FakeNodes(...).run()``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pilothouse.api.timeutil import format_time, micro_time_to_proto, time_to_proto
from pilothouse.client import Client, ClientError, is_already_exists, is_not_found
from pilothouse.client.clock import AsyncClock, real_clock
from pilothouse.client.informer import Informer, SharedInformerFactory, object_of
from pilothouse.client.workqueue import WorkQueue, run_worker
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.scheduler.testing import make_node

__all__ = ["FakeNodes"]

log = logging.getLogger("pilothouse.fakenodes")

NODE_LEASE_NAMESPACE = "kube-node-lease"
FAKE_NODE_LABEL = "pilothouse.io/fake-node"


class FakeNodes:
    def __init__(self, client: Client, count: int, *, prefix: str = "fake-node-",
                 cpu: str = "32", memory: str = "256Gi", pods: str = "110",
                 zones: Sequence[str] = ("zone-a", "zone-b", "zone-c"),
                 labels: Mapping[str, str] | None = None,
                 taints: Iterable[tuple[str, str, str]] = (),
                 lease_duration: int = 40, lease_renew_interval: float = 10.0,
                 run_pods: bool = True, workers: int = 8, pod_cidr: str = "10.244.0.0/16",
                 clock: AsyncClock | None = None, factory: SharedInformerFactory | None = None,
                 create_concurrency: int = 32) -> None:
        if count < 0:
            raise ValueError("the number of fake nodes must not be negative")
        self.client = client
        self.count = count
        self.names = [f"{prefix}{i}" for i in range(count)]
        self._name_set = set(self.names)
        self.cpu, self.memory, self.pods_capacity = cpu, memory, pods
        self.zones = tuple(zones)
        self.labels = dict(labels or {})
        self.taints = tuple(taints)
        self.lease_duration = lease_duration
        self.lease_renew_interval = lease_renew_interval
        self.run_pods = run_pods
        self.workers = workers
        self.clock = clock or real_clock()
        self.create_concurrency = create_concurrency
        net = ipaddress.ip_network(pod_cidr)
        self._subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = (
            list(net.subnets(new_prefix=24)) if net.prefixlen <= 24 else [net])
        self._next_ip: dict[str, int] = {}
        self.factory = factory or SharedInformerFactory(client, clock=self.clock)
        self._own_factory = factory is None
        self.pods: Informer[core_pb2.Pod] | None = None
        self.queue: WorkQueue[str] = WorkQueue(clock=self.clock)
        self.started = 0  # pods moved to Running
        self.registered = asyncio.Event()  # set once every node and lease exists

    # -- nodes ---------------------------------------------------------------------

    def node(self, i: int) -> core_pb2.Node:
        name = self.names[i]
        labels = {FAKE_NODE_LABEL: "true", "type": "kwok", **self.labels}
        node = make_node(name, cpu=self.cpu, memory=self.memory, pods=self.pods_capacity,
                         zone=self.zones[i % len(self.zones)] if self.zones else "",
                         labels=labels, taints=self.taints)
        node.status.phase = "Running"
        node.status.nodeInfo.kubeletVersion = "fake"
        node.status.addresses.add(type="InternalIP", address=f"10.255.{i // 250}.{i % 250 + 1}")
        subnet = self._subnets[i % len(self._subnets)]
        node.spec.podCIDR = str(subnet)
        now = time_to_proto(self.clock.now())
        for cond in node.status.conditions:
            cond.lastHeartbeatTime.CopyFrom(now)
            cond.lastTransitionTime.CopyFrom(now)
            cond.reason = "KubeletReady"
        return node

    async def register(self) -> None:
        """Create (or keep) the nodes and their leases."""
        sem = asyncio.Semaphore(self.create_concurrency)

        async def one(i: int) -> None:
            async with sem:
                try:
                    await self.client.create(self.node(i))
                except ClientError as exc:
                    if not is_already_exists(exc):
                        raise
                if self.lease_renew_interval > 0:
                    await self._renew_lease(self.names[i])

        await asyncio.gather(*(one(i) for i in range(self.count)))

    async def _renew_lease(self, name: str) -> None:
        lease = coordination_pb2.Lease()
        lease.metadata.name = name
        lease.metadata.namespace = NODE_LEASE_NAMESPACE
        lease.spec.holderIdentity = name
        lease.spec.leaseDurationSeconds = self.lease_duration
        lease.spec.renewTime.CopyFrom(micro_time_to_proto(self.clock.now()))
        try:
            current = await self.client.get(coordination_pb2.Lease, name,
                                            namespace=NODE_LEASE_NAMESPACE)
        except ClientError as exc:
            if not is_not_found(exc):
                raise
            await self.client.create(lease)
            return
        current.spec.CopyFrom(lease.spec)
        await self.client.update(current)

    async def _lease_loop(self) -> None:
        while True:
            await self.clock.sleep(self.lease_renew_interval)
            for name in self.names:
                try:
                    await self._renew_lease(name)
                except ClientError as exc:
                    log.warning("renewing the lease of %s failed: %s", name, exc)

    # -- pods ----------------------------------------------------------------------

    def _pod_ip(self, node_name: str) -> str:
        i = self.names.index(node_name) if node_name in self._name_set else 0
        subnet = self._subnets[i % len(self._subnets)]
        n = self._next_ip.get(node_name, 1) + 1
        if n >= subnet.num_addresses - 1:
            n = 2
        self._next_ip[node_name] = n
        return str(subnet[n])

    def _enqueue(self, obj: Any) -> None:
        pod = object_of(obj)
        if pod.spec.nodeName in self._name_set:
            self.queue.add(f"{pod.metadata.namespace}/{pod.metadata.name}")

    async def sync(self, key: str) -> None:
        assert self.pods is not None
        namespace, _, name = key.partition("/")
        pod = self.pods.get(name, namespace)
        if pod is None or pod.spec.nodeName not in self._name_set:
            return
        if pod.metadata.HasField("deletionTimestamp"):
            try:
                await self.client.delete(core_pb2.Pod, name, namespace=namespace,
                                         grace_period_seconds=0,
                                         precondition_uid=pod.metadata.uid)
            except ClientError as exc:
                if not is_not_found(exc):
                    raise
            return
        if pod.status.phase == "Running":
            return
        now = self.clock.now()
        status: dict[str, Any] = {
            "phase": "Running", "podIP": self._pod_ip(pod.spec.nodeName),
            "hostIP": "", "startTime": format_time(now),
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": format_time(now)}
                           for t in ("PodReadyToStartContainers", "Initialized", "Ready",
                                     "ContainersReady", "PodScheduled")],
            "containerStatuses": [
                {"name": c.name, "image": c.image, "imageID": "", "ready": True,
                 "restartCount": 0, "started": True,
                 "state": {"running": {"startedAt": format_time(now)}}}
                for c in pod.spec.containers],
        }
        status["podIPs"] = [{"ip": status["podIP"]}]
        try:
            await self.client.patch(core_pb2.Pod, name, {"status": status}, namespace=namespace,
                                    patch_type="merge", subresource="status")
            self.started += 1
        except ClientError as exc:
            if not is_not_found(exc):
                raise

    # -- running -------------------------------------------------------------------

    async def run(self) -> None:
        """Register the nodes, then keep leases fresh and run pods until cancelled."""
        await self.register()
        self.registered.set()
        tasks: list[asyncio.Task[Any]] = []
        if self.lease_renew_interval > 0:
            tasks.append(asyncio.create_task(self._lease_loop(), name="fakenodes:leases"))
        if self.run_pods:
            self.pods = self.factory.informer_for(core_pb2.Pod)
            self.pods.add_event_handler(self._enqueue, lambda _o, n: self._enqueue(n))
            if self._own_factory:
                self.factory.start()
            tasks.extend(asyncio.create_task(run_worker(self.queue, self.sync),
                                             name=f"fakenodes:worker{i}")
                         for i in range(self.workers))
        try:
            if tasks:
                await asyncio.gather(*tasks)
            else:
                await asyncio.Event().wait()
        finally:
            self.queue.shut_down()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._own_factory:
                await self.factory.shutdown()
