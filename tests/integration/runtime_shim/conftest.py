"""Fixtures for the CRI conformance suite: a real shim on a unix socket, per backend.

Every fixture cleans up what it made — sandboxes through the CRI, then, as a
safety net, supervisors and pid holders found in the root's state files,
network namespaces, the test's own bridge and cgroups — so a failing test
leaves nothing running on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from pilothouse.runtime_shim.containerd import images as containerd_images
from pilothouse.runtime_shim.containerd.backend import ContainerdBackend
from pilothouse.runtime_shim.containerd.client import Client
from pilothouse.runtime_shim.containerd.daemon import Containerd
from pilothouse.runtime_shim.images import oci
from pilothouse.runtime_shim.images.store import ImageStore
from pilothouse.runtime_shim.process.backend import ProcessBackend
from pilothouse.runtime_shim.server import start_server
from tests.containerd_support import free_cidr
from tests.support import wait_for

BUSYBOX = oci.BUSYBOX_TAG


@pytest.fixture(scope="session")
def image_archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("images")
    busybox, pause = out / "busybox.tar", out / "pause.tar"
    oci.write_oci_layout(busybox, [oci.build_busybox()])
    oci.write_oci_layout(pause, [oci.build_pause()])
    return {"busybox": busybox, "pause": pause}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short path for unix sockets (108-byte limit) and log files."""
    path = Path(tempfile.mkdtemp(prefix="ph-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _proc_start(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def kill_leftovers(root: Path) -> None:
    """Kill supervisors, containers and pid holders recorded under ``root``."""
    for state in root.glob("containers/*/state.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            doc = json.loads(state.read_text())
            for pid, start in ((doc["pid"], doc["pid_start_time"]),
                               (doc["supervisor_pid"], doc["supervisor_start_time"])):
                if _proc_start(pid) == start:
                    os.kill(pid, signal.SIGKILL)
    for sandbox in root.glob("sandboxes/*/sandbox.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            doc = json.loads(sandbox.read_text())
            if doc.get("pid_holder") and _proc_start(doc["pid_holder"]) == doc[
                    "pid_holder_start"]:
                os.kill(doc["pid_holder"], signal.SIGKILL)
            if doc.get("netns"):
                subprocess.run(["ip", "netns", "del", doc["netns"]], capture_output=True,
                               check=False)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mountpoint = line.split()[4]
        if mountpoint.startswith(str(root) + "/"):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)


@dataclass
class Shim:
    """A running shim and CRI clients connected to it."""

    backend_name: str
    root: Path
    socket: str
    log_dir: Path
    pod_cidr: str
    start_fn: Callable[[Shim], Awaitable[None]]
    stop_fn: Callable[[Shim], Awaitable[None]]
    runtime: cri_grpc.RuntimeServiceStub = field(init=False)
    images: cri_grpc.ImageServiceStub = field(init=False)
    channel: grpc.aio.Channel | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> bool:
        """containerd's own CRI plugin: the suite documents where it differs from ours."""
        return self.backend_name == "containerd-cri"

    async def connect(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.socket)
        self.runtime = cri_grpc.RuntimeServiceStub(self.channel)
        self.images = cri_grpc.ImageServiceStub(self.channel)

    async def restart(self) -> None:
        """Stop the shim process/server (containers keep running) and start a new one."""
        await self.stop_fn(self)
        await self.start_fn(self)

    # -- helpers used by the tests ---------------------------------------------------
    def sandbox_config(self, name: str, **kw: Any) -> cri.PodSandboxConfig:
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name=name, namespace="default",
                                            uid=f"uid-{name}-{secrets.token_hex(3)}"),
            hostname=kw.pop("hostname", name), log_directory=str(self.log_dir / name),
            labels=kw.pop("labels", {"app": name}))
        opts = config.linux.security_context.namespace_options
        opts.pid = cri.CONTAINER
        if kw.pop("host_network", False):
            opts.network = cri.NODE
            config.hostname = ""
        assert not kw, kw
        return config

    async def run_sandbox(self, name: str, **kw: Any) -> tuple[str, cri.PodSandboxConfig]:
        config = self.sandbox_config(name, **kw)
        resp = await self.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=config))
        return resp.pod_sandbox_id, config

    async def create(self, sandbox: tuple[str, cri.PodSandboxConfig], name: str,
                     command: list[str] | None = None, **kw: Any) -> str:
        sid, sconfig = sandbox
        config = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=name), image=cri.ImageSpec(image=BUSYBOX),
            command=command or [], args=kw.pop("args", []), log_path=f"{name}.log",
            envs=[cri.KeyValue(key=k, value=v) for k, v in kw.pop("env", {}).items()],
            working_dir=kw.pop("working_dir", ""), mounts=kw.pop("mounts", []))
        config.linux.security_context.namespace_options.pid = cri.CONTAINER
        if "memory" in kw:
            config.linux.resources.memory_limit_in_bytes = kw.pop("memory")
        if "cpu_quota" in kw:
            config.linux.resources.cpu_quota = kw.pop("cpu_quota")
            config.linux.resources.cpu_period = 100000
        if "uid" in kw:
            config.linux.security_context.run_as_user.value = kw.pop("uid")
        if "image" in kw:
            config.image.image = kw.pop("image")
        assert not kw, kw
        resp = await self.runtime.CreateContainer(cri.CreateContainerRequest(
            pod_sandbox_id=sid, config=config, sandbox_config=sconfig))
        return resp.container_id

    async def run(self, sandbox: tuple[str, cri.PodSandboxConfig], name: str,
                  command: list[str] | None = None, **kw: Any) -> str:
        cid = await self.create(sandbox, name, command, **kw)
        await self.runtime.StartContainer(cri.StartContainerRequest(container_id=cid))
        return cid

    async def status(self, cid: str) -> cri.ContainerStatus:
        resp = await self.runtime.ContainerStatus(cri.ContainerStatusRequest(container_id=cid))
        return resp.status

    async def wait_exited(self, cid: str, within: float = 20.0) -> cri.ContainerStatus:
        seen: list[cri.ContainerStatus] = []

        async def exited() -> bool:
            seen[:] = [await self.status(cid)]
            return seen[0].state == cri.CONTAINER_EXITED

        await wait_for(exited, within=within, what=f"container {cid} exited")
        return seen[0]

    async def exec(self, cid: str, *cmd: str, timeout: int = 10) -> cri.ExecSyncResponse:
        return await self.runtime.ExecSync(
            cri.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=timeout))

    async def cleanup(self) -> None:
        """Remove every sandbox through the CRI (each on its own: one failure stops none)."""
        if self.channel is None:
            return
        try:
            listed = await self.runtime.ListPodSandbox(cri.ListPodSandboxRequest())
        except grpc.aio.AioRpcError:
            return
        for sb in listed.items:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.runtime.RemovePodSandbox(
                    cri.RemovePodSandboxRequest(pod_sandbox_id=sb.id))



async def _start_process(shim: Shim) -> None:
    backend = ProcessBackend(root=shim.root, bridge=shim.state["bridge"], pod_cidr=shim.pod_cidr,
                             cgroup_parent=shim.state["cgroup_parent"])
    shim.state["backend"] = backend
    shim.state["server"] = await start_server(backend, shim.socket)
    await shim.connect()


async def _stop_process(shim: Shim) -> None:
    if shim.channel is not None:
        await shim.channel.close()
    server = shim.state.pop("server", None)
    if server is not None:
        await server.stop(None)
    backend = shim.state.pop("backend", None)
    if backend is not None:
        await backend.close()


@pytest.fixture
async def process_shim(tmp_path: Path, short_dir: Path,
                       image_archives: dict[str, Path]) -> AsyncIterator[Shim]:
    root = tmp_path / "root"
    ImageStore(root / "images").import_archive(image_archives["busybox"])
    tag = secrets.token_hex(3)
    shim = Shim("process", root, f"unix://{short_dir}/cri.sock", short_dir / "logs",
                free_cidr(), _start_process, _stop_process,
                state={"bridge": f"pht{tag}", "cgroup_parent": f"/pilothouse-test-{tag}"})
    await _start_process(shim)
    try:
        yield shim
    finally:
        if "server" not in shim.state:  # a test left the shim stopped
            await _start_process(shim)
        await shim.cleanup()
        await _stop_process(shim)
        kill_leftovers(root)
        subprocess.run(["ip", "link", "del", shim.state["bridge"]], capture_output=True,
                       check=False)
        _remove_cgroups(shim.state["cgroup_parent"])


def _remove_cgroups(parent: str) -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / parent.lstrip("/")
        if top.is_dir():
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(
                    p.parts)):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


async def _start_containerd(shim: Shim) -> None:
    daemon: Containerd = shim.state["containerd"]
    await asyncio.to_thread(daemon.start)
    shim.socket = f"unix://{daemon.address}"
    await shim.connect()

    async def serving() -> bool:  # the CRI plugin initialises after the socket appears
        try:
            await shim.runtime.Status(cri.StatusRequest())
        except grpc.aio.AioRpcError:
            return False
        return True

    await wait_for(serving, within=30)


async def _stop_containerd(shim: Shim) -> None:
    if shim.channel is not None:
        await shim.channel.close()
    await asyncio.to_thread(shim.state["containerd"].stop)


@pytest.fixture
async def containerd_cri_shim(short_dir: Path,
                              image_archives: dict[str, Path]) -> AsyncIterator[Shim]:
    """containerd's own CRI plugin: the reference our backends are compared with."""
    tag = secrets.token_hex(3)
    cidr = free_cidr()
    daemon = Containerd(short_dir / "ctd", bridge=f"phc{tag}", subnet=cidr)
    shim = Shim("containerd-cri", short_dir / "ctd", "", short_dir / "logs", cidr,
                _start_containerd, _stop_containerd, state={"containerd": daemon})
    await _start_containerd(shim)
    try:
        for archive in image_archives.values():
            await asyncio.to_thread(daemon.import_image, archive)
        yield shim
    finally:
        if daemon.process is None:  # a test left it stopped: pods are torn down through it
            await _start_containerd(shim)
        await shim.cleanup()
        await _stop_containerd(shim)
        await asyncio.to_thread(daemon.cleanup)


async def _start_ours(shim: Shim) -> None:
    daemon: Containerd = shim.state["containerd"]
    if daemon.process is None:
        await asyncio.to_thread(daemon.start)
    backend = ContainerdBackend(root=shim.root, address=f"unix://{daemon.address}",
                                namespace="pilothouse", bridge=shim.state["bridge"],
                                pod_cidr=shim.pod_cidr,
                                cgroup_parent=shim.state["cgroup_parent"])
    shim.state["backend"] = backend
    shim.state["server"] = await start_server(backend, shim.socket)
    await shim.connect()


@pytest.fixture
async def containerd_shim(short_dir: Path,
                          image_archives: dict[str, Path]) -> AsyncIterator[Shim]:
    """Our shim's containerd backend, driving a private containerd over its gRPC API."""
    tag = secrets.token_hex(3)
    cidr = free_cidr()
    daemon = Containerd(short_dir / "ctd", bridge=f"phd{tag}", subnet=free_cidr())
    await asyncio.to_thread(daemon.start)
    client = Client(daemon.address, "pilothouse")
    await client.ensure_namespace()
    await containerd_images.import_archive(client, image_archives["busybox"])
    await client.close()
    root = short_dir / "shim"
    shim = Shim("containerd", root, f"unix://{short_dir}/cri.sock", short_dir / "logs", cidr,
                _start_ours, _stop_process,
                state={"containerd": daemon, "bridge": f"phc{tag}",
                       "cgroup_parent": f"/pilothouse-ctd-test-{tag}"})
    try:
        await _start_ours(shim)
        yield shim
    finally:
        if "server" not in shim.state:
            await _start_ours(shim)
        await shim.cleanup()
        await _stop_process(shim)
        for sandbox in root.glob("sandboxes/*"):
            subprocess.run(["ip", "netns", "del", f"phc-{sandbox.name[:12]}"],
                           capture_output=True, check=False)
        await asyncio.to_thread(daemon.cleanup)
        subprocess.run(["ip", "link", "del", shim.state["bridge"]], capture_output=True,
                       check=False)
        _remove_cgroups(shim.state["cgroup_parent"])


@pytest.fixture(params=["process", "containerd", "containerd_cri"])
def shim(request: pytest.FixtureRequest) -> Shim:
    fixture: Shim = request.getfixturevalue(f"{request.param}_shim")
    return fixture
