"""A real apiserver, our CRI shim (process backend, as root with network namespaces) and a
kubelet, all in-process; every sandbox, process, namespace, bridge and cgroup made is
removed afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from pilothouse.client import Client, connect
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.runtime_shim.images import oci
from pilothouse.runtime_shim.images.store import ImageStore
from pilothouse.runtime_shim.process.backend import ProcessBackend
from pilothouse.runtime_shim.server import start_server
from pilothouse.services.apiserver.server import APIServer, APIServerConfig
from pilothouse.services.kubelet.config import KubeletConfig
from pilothouse.services.kubelet.kubelet import Kubelet
from tests.integration.runtime_shim.conftest import _free_cidr, _remove_cgroups, kill_leftovers
from tests.support import wait_for

NODE = "node-1"



@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images") / "busybox.tar"
    oci.write_oci_layout(out, [oci.build_busybox()])
    return out


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="phkl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Node:
    """The running pieces and helpers the tests use."""

    api: APIServer
    client: Client
    shim_root: Path
    socket: str
    kubelet_root: Path
    state: dict[str, Any] = field(default_factory=dict)
    kubelet: Kubelet | None = None
    task: asyncio.Task[None] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # KubeletConfig fields

    # -- the kubelet -------------------------------------------------------------------
    def config(self) -> KubeletConfig:
        return KubeletConfig(node_name=NODE, runtime_endpoint=self.socket,
                             apiserver=f"grpc://{self.api.grpc_address}",
                             root_dir=self.kubelet_root, address="127.0.0.1", port=0,
                             pleg_relist_period=0.2, resync_period=2.0,
                             static_pod_path=self.kubelet_root.parent / "manifests",
                             file_check_frequency=0.5, **self.overrides)

    async def start_kubelet(self) -> Kubelet:
        kubelet = Kubelet(self.config())
        self.kubelet = kubelet
        self.task = asyncio.create_task(kubelet.run())
        ready = asyncio.ensure_future(kubelet.synced.wait())
        await asyncio.wait([ready, self.task], timeout=30,
                           return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            self.task.result()
        assert kubelet.synced.is_set(), "the kubelet did not start within 30s"
        return kubelet

    async def stop_kubelet(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    @property
    def kubelet_url(self) -> str:
        assert self.kubelet is not None
        return f"http://127.0.0.1:{self.kubelet.server.port}"

    # -- pods --------------------------------------------------------------------------
    async def run_pod(self, pod: core_pb2.Pod) -> core_pb2.Pod:
        """Create and bind (what the scheduler would do)."""
        pod.metadata.namespace = pod.metadata.namespace or "default"
        created = await self.client.create(pod)
        await self.client.bind(created.metadata.namespace, created.metadata.name, NODE)
        return created

    async def pod(self, name: str) -> core_pb2.Pod:
        return await self.client.get(core_pb2.Pod, name, namespace="default")

    async def wait_pod(self, name: str, check: Callable[[core_pb2.Pod], bool],
                       within: float = 30.0, what: str = "") -> core_pb2.Pod:
        latest: list[core_pb2.Pod] = []

        async def ok() -> bool:
            try:
                p = await self.pod(name)
            except Exception:
                return False
            latest[:] = [p]
            return check(p)

        try:
            await wait_for(ok, within, what or f"pod {name}")
        except AssertionError:
            raise AssertionError(f"{what or 'condition'} on pod {name} not met; last status: "
                                 f"{latest[0].status if latest else None}") from None
        return latest[0]

    async def logs(self, name: str, container: str, **query: str) -> str:
        async with httpx.AsyncClient(timeout=30) as http:
            resp = await http.get(f"{self.kubelet_url}/containerLogs/default/{name}/{container}",
                                  params=query)
        assert resp.status_code == 200, resp.text
        return resp.text

    async def events(self, name: str) -> list[core_pb2.Event]:
        listed = await self.client.list(core_pb2.Event, namespace="default")
        return [e for e in listed.items if e.involvedObject.name == name]

    async def sandboxes(self) -> list[cri.PodSandbox]:
        async with grpc.aio.insecure_channel(self.socket) as ch:
            resp = await cri_grpc.RuntimeServiceStub(ch).ListPodSandbox(
                cri.ListPodSandboxRequest())
        return list(resp.items)

    async def containers(self) -> list[cri.Container]:
        async with grpc.aio.insecure_channel(self.socket) as ch:
            resp = await cri_grpc.RuntimeServiceStub(ch).ListContainers(
                cri.ListContainersRequest())
        return list(resp.containers)


def busybox_pod(name: str, script: str, **kw: Any) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = name
    pod.spec.restartPolicy = kw.pop("restart_policy", "Always")
    pod.spec.terminationGracePeriodSeconds = kw.pop("grace", 5)
    c = pod.spec.containers.add(name=kw.pop("container", "main"), image="busybox",
                                imagePullPolicy="IfNotPresent")
    c.command.extend(["sh", "-c", script])
    assert not kw, kw
    return pod


@pytest.fixture
async def node(tmp_path: Path, short_dir: Path, busybox_archive: Path) -> AsyncIterator[Node]:
    api = APIServer(APIServerConfig(data_dir=tmp_path / "api", port=0, grpc_port=0))
    await api.start()
    shim_root = tmp_path / "shim"
    ImageStore(shim_root / "images").import_archive(busybox_archive)
    tag = secrets.token_hex(3)
    bridge, cgroup_parent = f"phk{tag}", f"/pilothouse-kl-{tag}"
    backend = ProcessBackend(root=shim_root, bridge=bridge, pod_cidr=_free_cidr(),
                             cgroup_parent=cgroup_parent)
    socket = f"unix://{short_dir}/cri.sock"
    server = await start_server(backend, socket)
    client = connect(f"grpc://{api.grpc_address}")
    (tmp_path / "manifests").mkdir()
    n = Node(api, client, shim_root, socket, tmp_path / "kubelet")
    try:
        yield n
    finally:
        await n.stop_kubelet()
        with contextlib.suppress(grpc.aio.AioRpcError):
            async with grpc.aio.insecure_channel(socket) as ch:
                stub = cri_grpc.RuntimeServiceStub(ch)
                for sb in (await stub.ListPodSandbox(cri.ListPodSandboxRequest())).items:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await stub.RemovePodSandbox(
                            cri.RemovePodSandboxRequest(pod_sandbox_id=sb.id))
        await server.stop(None)
        await backend.close()
        kill_leftovers(shim_root)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        _remove_cgroups(cgroup_parent)
        await client.close()
        await api.stop()
