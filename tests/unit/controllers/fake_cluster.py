"""A controller test bench: FakeTransport-backed client, informer caches kept
in step with the fake by hand (``settle``), a fake clock and an event log.

Controllers are tested as Kubernetes tests them: seed objects, call
``sync(key)``, look at what was written. ``settle()`` plays the informers'
part: it brings every cache in line with the fake apiserver and calls the
registered handlers for what changed (so expectations and work queues see
the events), without running any watch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.message import Message

from pilothouse.api.timeutil import time_to_proto
from pilothouse.client import Client, EventRecorder, SharedInformerFactory, copy_object
from pilothouse.client.clock import AsyncFakeClock
from pilothouse.client.fake import FakeTransport
from pilothouse.client.informer import meta_namespace_key
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.base import ControllerContext

M = TypeVar("M", bound=Message)


class RecordingRecorder(EventRecorder):
    """Keeps events in memory instead of writing them."""

    def __init__(self, client: Client) -> None:
        super().__init__(client, "test-controller-manager")
        self.recorded: list[tuple[str, str, str, str]] = []

    def event(self, obj: Message, type: str, reason: str, message: str) -> None:
        self.recorded.append((obj.metadata.name, type, reason, message))

    def reasons(self) -> list[str]:
        return [r[2] for r in self.recorded]


class FakeCluster:
    def __init__(self, settings: dict[str, object] | None = None,
                 start: datetime | None = None) -> None:
        self.fake = FakeTransport()
        self.client = Client(self.fake)
        self.clock = AsyncFakeClock(start)
        self.informers = SharedInformerFactory(self.client, clock=self.clock)
        self.recorder = RecordingRecorder(self.client)
        self.ctx = ControllerContext(self.client, self.informers, self.recorder,
                                     clock=self.clock, workers=1, settings=settings or {})

    def settle(self) -> None:
        """Bring every informer's cache in line with the fake, calling handlers."""
        for informer in self.informers.informers:
            stored = {meta_namespace_key(o): o for o in self.fake.objects(informer.kind)}
            indexer = informer.indexer
            for key in list(indexer.keys()):
                if key not in stored:
                    old = indexer.remove(key)
                    informer._deleted(old)
            for key, obj in stored.items():
                old = indexer.get(key)
                if old is None:
                    indexer.upsert(key, obj)
                    informer._added(obj)
                elif old.metadata.resourceVersion != obj.metadata.resourceVersion:  # type: ignore[attr-defined]
                    indexer.upsert(key, obj)
                    informer._updated(old, obj)

    async def add(self, obj: M) -> M:
        created = await self.client.create(obj)
        self.settle()
        return created

    async def put(self, obj: M) -> M:
        """Update an object (spec and status alike) and settle."""
        current = await self.client.get(type(obj), obj.metadata.name,  # type: ignore[attr-defined]
                                        namespace=obj.metadata.namespace)  # type: ignore[attr-defined]
        new = copy_object(obj)
        new.metadata.resourceVersion = current.metadata.resourceVersion  # type: ignore[attr-defined]
        updated = await self.client.update(new)
        if hasattr(new, "status"):
            new.metadata.resourceVersion = updated.metadata.resourceVersion  # type: ignore[attr-defined]
            kind = self.client.kind_of(new)
            if "status" in kind.subresources:
                updated = await self.client.update_status(new)
        self.settle()
        return updated

    async def remove(self, cls: type[Message], name: str, namespace: str = "") -> None:
        await self.client.delete(cls, name, namespace=namespace)
        self.settle()

    def objects(self, cls: type[M]) -> list[M]:
        return sorted((o for o in self.fake.objects(cls)),  # type: ignore[misc]
                      key=lambda o: (o.metadata.namespace, o.metadata.name))

    def get(self, cls: type[M], name: str, namespace: str = "default") -> M | None:
        for o in self.objects(cls):
            if o.metadata.name == name and o.metadata.namespace == (  # type: ignore[attr-defined]
                    namespace if self.client.kind_of(cls).namespaced else ""):
                return o
        return None

    def writes(self, verb: str = "", resource: str = "") -> list[Any]:
        return [a for a in self.fake.actions
                if a.verb in (("create", "update", "patch", "delete") if not verb else (verb,))
                and (not resource or a.resource == resource)]


# -- builders ------------------------------------------------------------------------------


def make_pod(name: str, *, namespace: str = "default", labels: dict[str, str] | None = None,
             ip: str = "", ready: bool | None = None, node: str = "", phase: str = "",
             ports: dict[str, int] | None = None, when: datetime | None = None,
             terminating: bool = False) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = namespace
    pod.metadata.labels.update(labels or {})
    container = pod.spec.containers.add(name="c", image="busybox")
    for port_name, number in (ports or {}).items():
        container.ports.add(name=port_name, containerPort=number, protocol="TCP")
    if node:
        pod.spec.nodeName = node
    if ip:
        pod.status.podIP = ip
        pod.status.podIPs.add(ip=ip)
    if phase:
        pod.status.phase = phase
    elif ip:
        pod.status.phase = "Running"
    if ready is not None:
        cond = pod.status.conditions.add(type="Ready", status="True" if ready else "False")
        if when is not None:
            cond.lastTransitionTime.CopyFrom(time_to_proto(when))
    if terminating:
        pod.metadata.deletionTimestamp.seconds = 1
    return pod


def make_node(name: str, *, labels: dict[str, str] | None = None, ready: str = "True",
              taints: list[core_pb2.Taint] | None = None,
              heartbeat: datetime | None = None) -> core_pb2.Node:
    node = core_pb2.Node()
    node.metadata.name = name
    node.metadata.labels.update({"kubernetes.io/hostname": name, **(labels or {})})
    node.spec.taints.extend(taints or [])
    cond = node.status.conditions.add(type="Ready", status=ready, reason="KubeletReady")
    if heartbeat is not None:
        cond.lastHeartbeatTime.CopyFrom(time_to_proto(heartbeat))
        cond.lastTransitionTime.CopyFrom(time_to_proto(heartbeat))
    return node
