"""The kubelet's pod logic against the in-memory CRI runtime (served over real gRPC on a
unix socket) and the in-memory apiserver, with a fake clock."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pilothouse.client import Client
from pilothouse.client.clock import AsyncFakeClock
from pilothouse.client.fake import FakeTransport
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.runtime_shim.errors import RuntimeFailure
from pilothouse.runtime_shim.fake import FakeBackend
from pilothouse.runtime_shim.server import start_server
from pilothouse.services.kubelet.backoff import Backoff
from pilothouse.services.kubelet.config import KubeletConfig
from pilothouse.services.kubelet.metrics import KubeletMetrics
from pilothouse.services.kubelet.pod_sync import PodState, PodSyncer, SyncDeps
from pilothouse.services.kubelet.probes import ProbeManager
from pilothouse.services.kubelet.runtime import RuntimeClient
from pilothouse.services.kubelet.volumes import VolumeManager

NODE = "node-a"
NODE_IP = "192.0.2.10"


class Backend(FakeBackend):
    """The fake runtime, plus images that cannot be pulled."""

    def __init__(self) -> None:
        super().__init__(images=["busybox", "docker.io/library/busybox:latest"])
        self.unpullable: set[str] = set()

    async def pull_image(self, req: cri.PullImageRequest) -> cri.PullImageResponse:
        if req.image.image in self.unpullable:
            self.calls.append("PullImage")
            raise RuntimeFailure(f"pull access denied for {req.image.image}")
        return await super().pull_image(req)


def make_pod(name: str = "web", *, containers: list[dict[str, Any]] | None = None,
             init: list[dict[str, Any]] | None = None, restart_policy: str = "Always",
             uid: str = "", grace: int | None = None) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = "default"
    pod.metadata.uid = uid or f"uid-{name}"
    pod.spec.nodeName = NODE
    pod.spec.restartPolicy = restart_policy
    if grace is not None:
        pod.spec.terminationGracePeriodSeconds = grace
    for spec, target in ((containers or [{"name": "main"}], pod.spec.containers),
                         (init or [], pod.spec.initContainers)):
        for c in spec:
            container = target.add(name=c["name"], image=c.get("image", "busybox"),
                                   imagePullPolicy=c.get("pull", "IfNotPresent"))
            container.command.extend(c.get("command", ["sleep", "3600"]))
            if "restartPolicy" in c:
                container.restartPolicy = c["restartPolicy"]
            for k, v in c.get("env", {}).items():
                container.env.add(name=k, value=v)
    pod.status.phase = "Pending"
    pod.status.conditions.add(type="PodScheduled", status="True")
    return pod


@dataclass
class Harness:
    backend: Backend
    transport: FakeTransport
    client: Client
    clock: AsyncFakeClock
    runtime: RuntimeClient
    syncer: PodSyncer
    probes: ProbeManager
    root: Path
    # (container, type, reason, message)
    events: list[tuple[str, str, str, str]] = field(default_factory=list)
    woken: list[str] = field(default_factory=list)

    async def add(self, pod: core_pb2.Pod) -> PodState:
        created = await self.client.create(pod)
        return PodState(pod=created, first_seen=self.clock.monotonic())

    async def stored(self, name: str) -> core_pb2.Pod:
        return await self.client.get(core_pb2.Pod, name, namespace="default")

    def containers(self, name: str) -> list[cri.ContainerStatus]:
        """The runtime's containers called ``name``, newest first."""
        found = [c for c in self.backend.containers.values() if c.metadata.name == name]
        return sorted(found, key=lambda c: c.created_at, reverse=True)

    def running(self, name: str) -> cri.ContainerStatus:
        found = [c for c in self.containers(name) if c.state == cri.CONTAINER_RUNNING]
        assert len(found) == 1, f"expected one running {name}, found {len(found)}"
        return found[0]

    def reasons(self) -> list[str]:
        return [e[2] for e in self.events]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="phk-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def harness(short_dir: Path, tmp_path: Path) -> AsyncIterator[Harness]:
    backend = Backend()
    endpoint = f"unix://{short_dir}/cri.sock"
    server = await start_server(backend, endpoint)
    transport = FakeTransport()
    client = Client(transport)
    clock = AsyncFakeClock()
    metrics = KubeletMetrics()
    runtime = RuntimeClient(endpoint, metrics=metrics, timeout=10)
    await runtime.version()
    config = KubeletConfig(node_name=NODE, runtime_endpoint=endpoint, root_dir=tmp_path / "kl")
    events: list[tuple[str, str, str, str]] = []
    woken: list[str] = []
    probes = ProbeManager(runtime, clock, on_change=woken.append)
    syncer = PodSyncer(SyncDeps(
        config=config, client=client, runtime=runtime, clock=clock, probes=probes,
        volumes=VolumeManager(config.root_dir, can_mount=False),
        backoff=Backoff(clock=clock), image_backoff=Backoff(clock=clock), metrics=metrics,
        event=lambda pod, c, t, r, m: events.append((c, t, r, m)), node_ip=NODE_IP))
    h = Harness(backend, transport, client, clock, runtime, syncer, probes,
                config.root_dir, events, woken)
    try:
        yield h
    finally:
        await probes.close()
        await runtime.close()
        await server.stop(None)
