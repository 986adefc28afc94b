"""A real apiserver, a CRI runtime and a kubelet, all in-process; every sandbox, process,
namespace, bridge, mount and cgroup made is removed afterwards.

The ``node`` fixture runs each test against three CRI runtimes (the kubelet talks to any
CRI endpoint): ``process`` (our shim's process backend, as root with network namespaces),
``containerd`` (our shim's containerd backend over a private containerd) and
``containerd_cri`` (containerd's own CRI plugin). Tests that are about one runtime ask for
``process_node``."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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
from tests.containerd_support import (
    K8S_NAMESPACE,
    OUR_NAMESPACE,
    containerd_backend_shim,
    containerd_cri,
    free_cidr,
    import_into_namespace,
    remove_all_sandboxes,
    remove_cgroups,
)
from tests.integration.runtime_shim.conftest import kill_leftovers
from tests.support import wait_for

NODE = "node-1"



BACKENDS = ["process", "containerd", "containerd_cri"]
# The runtime name each backend reports (Node nodeInfo, containerStatuses[].containerID).
RUNTIME_NAMES = {"process": "pilothouse-process", "containerd": "pilothouse-containerd",
                 "containerd_cri": "containerd"}


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images") / "busybox.tar"
    oci.write_oci_layout(out, [oci.build_busybox()])
    return out


EXTRA_IMAGE = "example.com/pilothouse/extra:1"


@pytest.fixture(scope="session")
def extra_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image no pod uses (busybox with another default command: another image ID)."""
    out = tmp_path_factory.mktemp("images") / "extra.tar"
    oci.write_oci_layout(out, [oci.build(EXTRA_IMAGE, cmd=("echo", "extra"))])
    return out


@pytest.fixture(scope="session")
def pause_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images") / "pause.tar"
    oci.write_oci_layout(out, [oci.build_pause()])
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
    backend: str  # one of BACKENDS
    socket: str
    kubelet_root: Path
    state: dict[str, Any] = field(default_factory=dict)
    kubelet: Kubelet | None = None
    task: asyncio.Task[None] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # KubeletConfig fields
    cgroup_root: str = ""  # the kubelet's --cgroup-root (removed afterwards)
    # Puts an image archive into the runtime's image store (as an operator would).
    import_image: Callable[[Path], Awaitable[None]] | None = None

    # -- the kubelet -------------------------------------------------------------------
    def config(self) -> KubeletConfig:
        return KubeletConfig(node_name=NODE, runtime_endpoint=self.socket,
                             apiserver=f"grpc://{self.api.grpc_address}",
                             root_dir=self.kubelet_root, address="127.0.0.1", port=0,
                             pleg_relist_period=0.2, resync_period=2.0,
                             static_pod_path=self.kubelet_root.parent / "manifests",
                             file_check_frequency=0.5,
                             **{"cgroup_root": self.cgroup_root, **self.overrides})

    async def start_kubelet(self, **kwargs: Any) -> Kubelet:
        """Start a kubelet (``kwargs``: Kubelet's own, e.g. a ``summary_provider``)."""
        kubelet = Kubelet(self.config(), **kwargs)
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
    def runtime_name(self) -> str:
        return RUNTIME_NAMES[self.backend]

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


@contextlib.asynccontextmanager
async def _process_runtime(root: Path, short_dir: Path,
                           busybox_archive: Path) -> AsyncIterator[str]:
    ImageStore(root / "images").import_archive(busybox_archive)
    tag = secrets.token_hex(3)
    bridge, cgroup_parent = f"phk{tag}", f"/pilothouse-kl-{tag}"
    backend = ProcessBackend(root=root, bridge=bridge, pod_cidr=free_cidr(),
                             cgroup_parent=cgroup_parent)
    socket = f"unix://{short_dir}/cri.sock"
    server = await start_server(backend, socket)
    try:
        yield socket
    finally:
        await remove_all_sandboxes(socket)
        await server.stop(None)
        await backend.close()
        kill_leftovers(root)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        remove_cgroups(cgroup_parent)


@contextlib.asynccontextmanager
async def _node(backend: str, tmp_path: Path, short_dir: Path, busybox_archive: Path,
                pause_archive: Path) -> AsyncIterator[Node]:
    api = APIServer(APIServerConfig(data_dir=tmp_path / "api", port=0, grpc_port=0))
    await api.start()
    client = connect(f"grpc://{api.grpc_address}")
    (tmp_path / "manifests").mkdir()
    try:
        async with contextlib.AsyncExitStack() as stack:
            cgroup_root = f"/pilothouse-klpods-{secrets.token_hex(3)}"
            stack.callback(remove_cgroups, cgroup_root)  # last: after the runtime is gone
            importer: Callable[[Path], Awaitable[None]]
            if backend == "process":
                socket = await stack.enter_async_context(
                    _process_runtime(tmp_path / "shim", short_dir, busybox_archive))
                store = ImageStore(tmp_path / "shim" / "images")

                async def importer(archive: Path) -> None:
                    await asyncio.to_thread(store.import_archive, archive)
            elif backend == "containerd":
                endpoint = await stack.enter_async_context(
                    containerd_backend_shim(short_dir, [busybox_archive]))
                socket = endpoint.socket
                address = endpoint.daemon.address

                async def importer(archive: Path) -> None:
                    await import_into_namespace(address, OUR_NAMESPACE, archive)
            else:
                endpoint = await stack.enter_async_context(
                    containerd_cri(short_dir / "ctd", [busybox_archive, pause_archive]))
                socket = endpoint.socket
                daemon = endpoint.daemon

                async def importer(archive: Path) -> None:
                    await asyncio.to_thread(daemon.import_image, archive, K8S_NAMESPACE)
            n = Node(api, client, backend, socket, tmp_path / "kubelet",
                     import_image=importer, cgroup_root=cgroup_root)
            try:
                yield n
            finally:
                await n.stop_kubelet()
    finally:
        await client.close()
        await api.stop()


@pytest.fixture(params=BACKENDS)
async def node(request: pytest.FixtureRequest, tmp_path: Path, short_dir: Path,
               busybox_archive: Path, pause_archive: Path) -> AsyncIterator[Node]:
    """The kubelet's world, once per CRI runtime."""
    async with _node(request.param, tmp_path, short_dir, busybox_archive,
                     pause_archive) as n:
        yield n


@pytest.fixture
async def process_node(tmp_path: Path, short_dir: Path, busybox_archive: Path,
                       pause_archive: Path) -> AsyncIterator[Node]:
    """The kubelet's world on the process backend only (tests not about the runtime)."""
    async with _node("process", tmp_path, short_dir, busybox_archive, pause_archive) as n:
        yield n
