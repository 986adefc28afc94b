"""The process backend's pool of ready network namespaces: a sandbox takes one (its
address, veth and eth0 included) and only makes its IPC/UTS namespaces; the pool refills;
stop releases what the sandbox took; close and a restarted shim remove unclaimed ones.
Needs root (network namespaces), as the backend does."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim.process import network
from pilothouse.runtime_shim.process.backend import POOL_PREFIX, ProcessBackend
from tests.containerd_support import free_cidr, remove_cgroups
from tests.support import wait_for


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="phpool-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def setup(root: Path) -> AsyncIterator[tuple[Path, str, str, str]]:
    tag = secrets.token_hex(3)
    bridge, cgroup_parent = f"phpl{tag}", f"/pilothouse-pool-{tag}"
    yield root, bridge, free_cidr(), cgroup_parent
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    remove_cgroups(cgroup_parent)


def backend_for(setup: tuple[Path, str, str, str], pool: int) -> ProcessBackend:
    root, bridge, cidr, cgroup_parent = setup
    return ProcessBackend(root=root, bridge=bridge, pod_cidr=cidr, cgroup_parent=cgroup_parent,
                          netns_pool=pool)


def sandbox_config(name: str) -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="pool", uid=f"uid-{name}"),
        hostname=name)


def netns_files() -> set[str]:
    return {p.name for p in network.NETNS_DIR.iterdir()} if network.NETNS_DIR.is_dir() \
        else set()


def eth0_of(netns: str) -> str:
    return subprocess.run(["ip", "-n", netns, "-o", "-4", "addr", "show", "dev", "eth0"],
                          capture_output=True, text=True, check=False).stdout


async def test_a_sandbox_takes_a_ready_namespace_and_the_pool_refills(
        setup: tuple[Path, str, str, str]) -> None:
    backend = backend_for(setup, pool=2)
    await backend.start()
    try:
        await wait_for(lambda: len(backend._pool) == 2, within=30, what="the pool filled")
        pooled = {e.netns for e in backend._pool}
        assert pooled <= netns_files()
        assert all(o.startswith(POOL_PREFIX) for o in backend.network.ipam.owners())
        resp = await backend.run_pod_sandbox(cri.RunPodSandboxRequest(
            config=sandbox_config("web")))
        sb = backend.sandboxes[resp.pod_sandbox_id]
        assert sb.netns in pooled and sb.host_ifname
        # The address is the sandbox's now, on eth0 of its namespace; its own UTS.
        assert backend.network.ipam.lookup(sb.id) is not None
        assert str(backend.network.ipam.lookup(sb.id)) == sb.ip
        assert f"inet {sb.ip}/" in eth0_of(sb.netns)
        hostname = subprocess.run(["nsenter", f"--uts={sb.uts}", "hostname"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        assert hostname == "web"
        status = await backend.pod_sandbox_status(cri.PodSandboxStatusRequest(
            pod_sandbox_id=sb.id))
        assert status.status.network.ip == sb.ip
        await wait_for(lambda: len(backend._pool) == 2, within=30, what="the pool refilled")
        # Stop releases what the sandbox took: veth, namespace, address.
        await backend.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sb.id))
        assert not network.link_exists(sb.host_ifname)
        assert sb.netns not in netns_files()
        assert backend.network.ipam.lookup(sb.id) is None
        await backend.remove_pod_sandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sb.id))
    finally:
        left = [(e.netns, e.host_ifname) for e in backend._pool]
        await backend.close()
    # Close removes the unclaimed ones.
    assert left and not {n for n, _ in left} & netns_files()
    assert not any(network.link_exists(ifname) for _, ifname in left)
    assert backend.network.ipam.owners() == []


async def test_a_restarted_shim_removes_the_namespaces_a_dead_one_kept(
        setup: tuple[Path, str, str, str]) -> None:
    dead = backend_for(setup, pool=2)
    await dead.start()
    await wait_for(lambda: len(dead._pool) == 2, within=30, what="the pool filled")
    kept = [(e.netns, e.host_ifname) for e in dead._pool]
    await dead.zygote.close()  # it dies without cleaning up
    dead._pool.clear()
    again = backend_for(setup, pool=0)
    await again.start()
    try:
        assert not {n for n, _ in kept} & netns_files()
        assert not any(network.link_exists(ifname) for _, ifname in kept)
        assert again.network.ipam.owners() == []
    finally:
        await again.close()
        await dead.close()
