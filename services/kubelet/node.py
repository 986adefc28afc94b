"""The node agent: registers the Node, heartbeats through its Lease, posts status on change.

As Kubernetes' kubelet does since NodeLease: the Lease in ``kube-node-lease``
named after the node is renewed every ``node_lease_renew_interval`` (10 s);
the Node's status is recomputed every ``node_status_update_frequency`` and
written only when something changed, or at least every
``node_status_report_frequency`` (5 min) so the heartbeat times stay fresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pilothouse.api.timeutil import micro_time_to_proto
from pilothouse.client import Client, copy_object, is_already_exists, is_conflict, is_not_found
from pilothouse.client.clock import AsyncClock
from pilothouse.client.errors import ClientError
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import nodestatus
from pilothouse.services.kubelet.config import KubeletConfig

log = logging.getLogger("pilothouse.kubelet.node")

LEASE_NAMESPACE = "kube-node-lease"

HealthProbe = Callable[[], Awaitable[nodestatus.NodeHealth]]


class NodeAgent:
    def __init__(self, *, client: Client, clock: AsyncClock, config: KubeletConfig,
                 machine: nodestatus.MachineInfo, node_ip: str, kubelet_port: int,
                 runtime_version: str, health: HealthProbe) -> None:
        self.client = client
        self.clock = clock
        self.config = config
        self.machine = machine
        self.node_ip = node_ip
        self.kubelet_port = kubelet_port
        self.runtime_version = runtime_version
        self.health = health
        self.node: core_pb2.Node | None = None
        self.node_uid = ""
        self._last_report = 0.0
        self.lease_renewals = 0
        self.status_writes = 0

    @property
    def name(self) -> str:
        return self.config.node_name

    def _desired(self, base: core_pb2.Node) -> core_pb2.Node:
        node = copy_object(base)
        nodestatus.set_machine_status(node, self.machine, node_ip=self.node_ip,
                                      kubelet_port=self.kubelet_port,
                                      runtime_version=self.runtime_version,
                                      max_pods=self.config.max_pods)
        for k, v in nodestatus.node_labels(self.name, self.machine,
                                           self.config.node_labels).items():
            node.metadata.labels[k] = v
        return node

    async def register(self) -> core_pb2.Node:
        """Create the Node, or adopt the existing one (updating labels and status)."""
        health = await self.health()
        node = nodestatus.build_node(self.name, self.machine, node_ip=self.node_ip,
                                     kubelet_port=self.kubelet_port,
                                     runtime_version=self.runtime_version,
                                     max_pods=self.config.max_pods,
                                     labels=self.config.node_labels)
        nodestatus.set_conditions(node, health, self.clock.now())
        try:
            created = await self.client.create(node)
        except ClientError as e:
            if not is_already_exists(e):
                raise
            existing = await self.client.get(core_pb2.Node, self.name)
            desired = self._desired(existing)
            if dict(desired.metadata.labels) != dict(existing.metadata.labels):
                existing = await self.client.update(desired)
                desired = self._desired(existing)
            nodestatus.set_conditions(desired, health, self.clock.now())
            created = await self.client.update_status(desired)
        else:
            if nodestatus.status_changed(created, node):
                node.metadata.resourceVersion = created.metadata.resourceVersion
                node.metadata.uid = created.metadata.uid
                created = await self.client.update_status(node)
        self.node = created
        self.node_uid = created.metadata.uid
        self._last_report = self.clock.monotonic()
        self.status_writes += 1
        log.info("node %s registered (%s)", self.name, self.node_ip)
        return created

    # -- status ------------------------------------------------------------------------

    async def sync_status(self, *, force: bool = False) -> bool:
        """Recompute the status; write it when changed (or the report is due). True if written."""
        health = await self.health()
        for attempt in range(3):
            current = self.node
            if current is None or attempt > 0:
                current = await self.client.get(core_pb2.Node, self.name)
            desired = self._desired(current)
            changed = nodestatus.set_conditions(desired, health, self.clock.now())
            changed = changed or nodestatus.status_changed(current, desired)
            due = self.clock.monotonic() - self._last_report >= \
                self.config.node_status_report_frequency
            if not (changed or due or force):
                return False
            try:
                self.node = await self.client.update_status(desired)
            except ClientError as e:
                if is_conflict(e) and attempt < 2:
                    continue
                if is_not_found(e):  # someone deleted our Node: register again
                    await self.register()
                    return True
                raise
            self._last_report = self.clock.monotonic()
            self.status_writes += 1
            return True
        return False

    # -- lease -----------------------------------------------------------------------

    async def renew_lease(self) -> coordination_pb2.Lease:
        """Create or renew ``kube-node-lease/<node>`` (owned by the Node)."""
        now = micro_time_to_proto(self.clock.now())
        try:
            lease = await self.client.get(coordination_pb2.Lease, self.name,
                                          namespace=LEASE_NAMESPACE)
        except ClientError as e:
            if not is_not_found(e):
                raise
            lease = coordination_pb2.Lease()
            lease.metadata.name = self.name
            lease.metadata.namespace = LEASE_NAMESPACE
            if self.node_uid:
                lease.metadata.ownerReferences.add(apiVersion="v1", kind="Node",
                                                   name=self.name, uid=self.node_uid)
            lease.spec.holderIdentity = self.name
            lease.spec.leaseDurationSeconds = self.config.node_lease_duration
            lease.spec.renewTime.CopyFrom(now)
            created = await self.client.create(lease)
            self.lease_renewals += 1
            return created
        lease = copy_object(lease)
        lease.spec.holderIdentity = self.name
        lease.spec.leaseDurationSeconds = self.config.node_lease_duration
        lease.spec.renewTime.CopyFrom(now)
        updated = await self.client.update(lease)
        self.lease_renewals += 1
        return updated

    # -- loops -----------------------------------------------------------------------

    async def run(self) -> None:
        """Heartbeat and status loops until cancelled (registration and the first lease
        renewal already done)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._loop(self.config.node_lease_renew_interval,
                                      self.renew_lease, "lease renewal"))
            tg.create_task(self._loop(self.config.node_status_update_frequency,
                                      self.sync_status, "node status"))

    async def _loop(self, period: float, step: Callable[[], Awaitable[object]],
                    what: str) -> None:
        while True:
            await self.clock.sleep(period)
            try:
                await step()
            except ClientError as e:
                log.warning("%s failed: %s", what, e)
