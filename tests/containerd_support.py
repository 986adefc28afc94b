"""A private containerd for tests: started, fed local images, and removed without a trace.

Shared by the suites that run against containerd (the runtime shim's CRI
conformance and the kubelet's integration suite). Each test gets its own
containerd (``runtime_shim.containerd.daemon.Containerd``: a ``version = 2``
config in its own directory with ``restrict_oom_score_adj``, the local pause
image as ``sandbox_image`` and a CNI bridge from /usr/lib/cni), so nothing
depends on a system containerd and no image is pulled from a registry.

Two ways to reach it through the CRI:

- ``containerd_cri(...)``: containerd's own CRI plugin (images in ``k8s.io``);
- ``containerd_backend_shim(...)``: our runtime shim's containerd backend
  (``pilothouse runtime-shim --backend containerd``) served on its own socket,
  driving the same kind of private containerd over containerd's gRPC API.

Both are async context managers yielding a ``CRIEndpoint`` (the
``unix://`` address to give a CRI client) and, on the way out, remove every
sandbox through the CRI, stop the daemon, kill its runc shims, unmount what it
mounted and delete its bridge, netns files and cgroups.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from pilothouse.runtime_shim.containerd import images as containerd_images
from pilothouse.runtime_shim.containerd.backend import ContainerdBackend
from pilothouse.runtime_shim.containerd.client import Client
from pilothouse.runtime_shim.containerd.daemon import Containerd
from pilothouse.runtime_shim.server import start_server
from tests.support import wait_for

K8S_NAMESPACE = "k8s.io"  # where containerd's CRI plugin keeps its images and containers
OUR_NAMESPACE = "pilothouse"


@dataclass
class CRIEndpoint:
    """A CRI runtime.v1 server a test talks to."""

    name: str  # "containerd" (our backend) or "containerd_cri" (containerd's own plugin)
    socket: str  # unix:///...
    daemon: Containerd
    bridge: str
    pod_cidr: str
    state: dict[str, object] = field(default_factory=dict)


def free_cidr() -> str:
    """A /24 in 10.100-249.x.0 that no interface on this machine uses."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True,
                          check=False).stdout
    while True:
        cidr = f"10.{secrets.randbelow(150) + 100}.{secrets.randbelow(256)}.0/24"
        net = ipaddress.IPv4Network(cidr)
        if str(net.network_address)[:-1] not in used:
            return cidr


def remove_cgroups(parent: str) -> None:
    """Remove ``parent`` and everything under it in every cgroup hierarchy (v1 or v2)."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / parent.lstrip("/")
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()),
                        key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


async def cri_serving(socket: str, within: float = 30.0) -> None:
    """Wait until the CRI server at ``socket`` answers Status (containerd's CRI plugin
    initialises a moment after its socket accepts connections)."""
    async def serving() -> bool:
        try:
            async with grpc.aio.insecure_channel(socket) as ch:
                await cri_grpc.RuntimeServiceStub(ch).Status(cri.StatusRequest(), timeout=5)
        except grpc.aio.AioRpcError:
            return False
        return True

    await wait_for(serving, within=within, what=f"a CRI server at {socket}")


async def remove_all_sandboxes(socket: str) -> None:
    """Remove every sandbox through the CRI, one at a time (one failure stops none)."""
    with contextlib.suppress(grpc.aio.AioRpcError):
        async with grpc.aio.insecure_channel(socket) as ch:
            stub = cri_grpc.RuntimeServiceStub(ch)
            listed = await stub.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=30)
            for sb in listed.items:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.StopPodSandbox(
                        cri.StopPodSandboxRequest(pod_sandbox_id=sb.id), timeout=60)
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.RemovePodSandbox(
                        cri.RemovePodSandboxRequest(pod_sandbox_id=sb.id), timeout=60)


async def import_into_namespace(address: str, namespace: str, archive: Path) -> None:
    """Import an OCI/docker archive into a containerd namespace over its gRPC API."""
    client = Client(address, namespace)
    try:
        await client.ensure_namespace()
        await containerd_images.import_archive(client, archive)
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def containerd_cri(directory: Path, images: list[Path],
                         tag: str = "") -> AsyncIterator[CRIEndpoint]:
    """containerd's own CRI plugin on a private containerd in ``directory`` (keep it short:
    unix socket paths are limited to 108 bytes), with ``images`` (OCI/docker archives;
    include the pause image) imported into ``k8s.io``."""
    tag = tag or secrets.token_hex(3)
    cidr = free_cidr()
    daemon = Containerd(directory, bridge=f"phc{tag}", subnet=cidr)
    endpoint = CRIEndpoint("containerd_cri", f"unix://{daemon.address}", daemon,
                           daemon.bridge, cidr)
    try:
        await asyncio.to_thread(daemon.start)
        await cri_serving(endpoint.socket)
        for archive in images:
            await asyncio.to_thread(daemon.import_image, archive, K8S_NAMESPACE)
        yield endpoint
    finally:
        if daemon.process is None:  # stopped by the test: pods are torn down through it
            with contextlib.suppress(RuntimeError):
                await asyncio.to_thread(daemon.start)
                await cri_serving(endpoint.socket)
        if daemon.process is not None:
            await remove_all_sandboxes(endpoint.socket)
        await asyncio.to_thread(daemon.cleanup)


@contextlib.asynccontextmanager
async def containerd_backend_shim(directory: Path, images: list[Path],
                                  tag: str = "") -> AsyncIterator[CRIEndpoint]:
    """Our shim's containerd backend (served in-process on ``directory/cri.sock``) over a
    private containerd in ``directory/ctd``; ``images`` imported into ``pilothouse`` (the
    backend builds the pause image itself when containerd lacks it).

    ``endpoint.state["restart"]`` is a coroutine function restarting the shim (not
    containerd): containers keep running across it."""
    tag = tag or secrets.token_hex(3)
    cidr = free_cidr()
    daemon = Containerd(directory / "ctd", bridge=f"phd{tag}", subnet=free_cidr())
    bridge, cgroup_parent = f"phb{tag}", f"/pilothouse-ctd-kl-{tag}"
    root = directory / "shim"
    endpoint = CRIEndpoint("containerd", f"unix://{directory}/cri.sock", daemon, bridge, cidr)
    running: dict[str, object] = {}

    async def start() -> None:
        backend = ContainerdBackend(root=root, address=f"unix://{daemon.address}",
                                    namespace=OUR_NAMESPACE, bridge=bridge, pod_cidr=cidr,
                                    cgroup_parent=cgroup_parent)
        running["backend"] = backend
        running["server"] = await start_server(backend, endpoint.socket)

    async def stop() -> None:
        server = running.pop("server", None)
        if server is not None:
            await server.stop(None)  # type: ignore[attr-defined]
        backend = running.pop("backend", None)
        if backend is not None:
            await backend.close()  # type: ignore[attr-defined]

    async def restart() -> None:
        await stop()
        await start()

    endpoint.state["restart"] = restart
    try:
        await asyncio.to_thread(daemon.start)
        for archive in images:
            await import_into_namespace(daemon.address, OUR_NAMESPACE, archive)
        await start()
        yield endpoint
    finally:
        if "server" not in running:
            with contextlib.suppress(Exception):
                await start()
        await remove_all_sandboxes(endpoint.socket)
        await stop()
        for sandbox in root.glob("sandboxes/*"):
            subprocess.run(["ip", "netns", "del", f"phc-{sandbox.name[:12]}"],
                           capture_output=True, check=False)
        await asyncio.to_thread(daemon.cleanup)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        remove_cgroups(cgroup_parent)
