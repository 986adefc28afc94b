"""Pod networking for the process backend: a bridge, veth pairs and host-local IPAM.

Each sandbox with its own network gets a network namespace named
``ph-<sandbox id prefix>`` under /run/netns (so ``ip netns`` tools see it), a
veth pair whose host end joins the bridge (``pilothouse0`` by default,
gateway = first address of the pod CIDR) and whose other end is ``eth0`` in
the pod with the next free address. Allocations are files under
``<root>/ipam/<ip>`` holding the sandbox ID — created with O_EXCL, so two
sandboxes never get one address, and they survive a shim restart.

The process backend has its zygote (:mod:`.zygote`) create a sandbox's
namespaces, bind-mounted at their files (no holder process, the way
``ip netns add`` does it), and wire the veth pair over rtnetlink in the same
forked worker (:meth:`BridgeNetwork.plan` says what to wire). The containerd
backend uses :func:`create_namespaces` (``unshare``) for its CNI netns.
Containers' mount namespaces do not keep those files alive: a container
pivots into its own root and detaches the host's mounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

from pilothouse.runtime_shim.process import linux, netlink

NETNS_DIR = Path("/run/netns")


class NetworkError(Exception):
    pass


async def run(*argv: str, stdin: bytes | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    if proc.returncode != 0:
        raise NetworkError(f"{' '.join(argv[:4])}: {err.decode(errors='replace').strip()}")
    return out.decode()


def link_exists(name: str) -> bool:
    """Is there a link ``name`` in this process's network namespace? Asked of the kernel
    (``if_nametoindex``), not /sys/class/net: sysfs shows the namespace it was mounted in,
    the host's when the shim runs under ``nsenter --net`` (``up --nodes``)."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def _prepare_ns_file(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).touch()


class Ipam:
    """Pod addresses as files ``<dir>/<ip>`` holding their owner, created with O_EXCL.

    The files are the truth (they survive restarts); an index read once at start
    answers lookups, and allocation goes on from the last address handed out, so
    neither walks every allocated file."""

    def __init__(self, root: Path, cidr: ipaddress.IPv4Network) -> None:
        self.dir = root
        self.cidr = cidr
        self.dir.mkdir(parents=True, exist_ok=True)
        self.gateway = next(cidr.hosts())
        self._owners: dict[str, ipaddress.IPv4Address] = {}
        for path in self.dir.iterdir():
            if path.name.startswith("."):
                path.unlink(missing_ok=True)  # an unfinished transfer: the old file holds
                continue
            with contextlib.suppress(OSError, ValueError):
                self._owners[path.read_text()] = ipaddress.IPv4Address(path.name)
        self._last = int(self.gateway)

    def allocate(self, owner: str) -> ipaddress.IPv4Address:
        existing = self._owners.get(owner)
        if existing is not None:
            return existing
        first, last = int(self.cidr.network_address) + 1, int(self.cidr.broadcast_address) - 1
        if self.cidr.prefixlen >= 31:
            first, last = int(self.cidr.network_address), int(self.cidr.broadcast_address)
        size = last - first + 1
        for step in range(1, size + 1):
            ip = ipaddress.IPv4Address(first + (self._last - first + step) % size)
            if ip == self.gateway:
                continue
            try:
                fd = os.open(self.dir / str(ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write(owner)
            self._owners[owner] = ip
            self._last = int(ip)
            return ip
        raise NetworkError(f"no free address left in {self.cidr}")

    def lookup(self, owner: str) -> ipaddress.IPv4Address | None:
        return self._owners.get(owner)

    def owners(self) -> list[str]:
        return list(self._owners)

    def transfer(self, owner: str, new_owner: str) -> ipaddress.IPv4Address:
        """Hand ``owner``'s address to ``new_owner`` (a pooled namespace claimed by a
        sandbox); the file is replaced atomically, so a restart sees one owner or the other."""
        ip = self._owners.pop(owner)
        tmp = self.dir / f".{ip}.tmp"
        tmp.write_text(new_owner)
        tmp.replace(self.dir / str(ip))
        self._owners[new_owner] = ip
        return ip

    def release(self, owner: str) -> None:
        ip = self._owners.pop(owner, None)
        if ip is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.dir / str(ip)).unlink()


class BridgeNetwork:
    def __init__(self, *, root: Path, bridge: str, cidr: str) -> None:
        if len(bridge) > 15:
            raise NetworkError(f"bridge name {bridge!r} is longer than 15 characters")
        self.bridge = bridge
        self.cidr = ipaddress.IPv4Network(cidr, strict=False)
        self.ipam = Ipam(root, self.cidr)

    async def ensure_bridge(self) -> None:
        if link_exists(self.bridge):
            return
        prefix = self.cidr.prefixlen
        with contextlib.suppress(NetworkError):  # a concurrent creator wins the race
            await run("ip", "link", "add", self.bridge, "type", "bridge")
        await run("ip", "-batch", "-", stdin=(
            f"addr replace {self.ipam.gateway}/{prefix} dev {self.bridge}\n"
            f"link set {self.bridge} up\n").encode())

    async def delete_bridge(self) -> None:
        if link_exists(self.bridge):
            await run("ip", "link", "del", self.bridge)

    async def attach(self, sandbox_id: str, netns: str) -> ipaddress.IPv4Address:
        """Give the namespace ``netns`` (a name under /run/netns) eth0 on the bridge."""
        await self.ensure_bridge()
        ip = self.ipam.allocate(sandbox_id)
        host_end = f"veth{sandbox_id[:11]}"
        try:
            await run("ip", "-batch", "-", stdin=(
                f"link add {host_end} type veth peer name eth0 netns {netns}\n"
                f"link set {host_end} master {self.bridge}\n"
                f"link set {host_end} up\n").encode())
            await run("ip", "-n", netns, "-batch", "-", stdin=(
                f"addr add {ip}/{self.cidr.prefixlen} dev eth0\n"
                "link set eth0 up\n"
                f"route add default via {self.ipam.gateway}\n").encode())
        except NetworkError:
            self.ipam.release(sandbox_id)
            with contextlib.suppress(NetworkError):
                await run("ip", "link", "del", host_end)
            raise
        return ip

    def plan(self, sandbox_id: str) -> dict[str, Any]:
        """Allocate the sandbox's address; what the zygote needs to wire it (``net``)."""
        try:
            bridge_index = socket.if_nametoindex(self.bridge)
        except OSError:
            raise NetworkError(f"bridge {self.bridge} does not exist") from None
        ip = self.ipam.allocate(sandbox_id)
        return {"host_ifname": host_ifname(sandbox_id), "bridge_index": bridge_index,
                "ip": str(ip), "prefixlen": self.cidr.prefixlen,
                "gateway": str(self.ipam.gateway)}

    async def detach(self, sandbox_id: str, ifname: str = "") -> None:
        """Delete the sandbox's veth pair (``ifname``: its host end, when it is not named
        after the sandbox) and release its address; idempotent."""
        with contextlib.suppress(OSError), netlink.Route() as route:
            route.delete_link(ifname or host_ifname(sandbox_id))
        self.ipam.release(sandbox_id)


def host_ifname(sandbox_id: str) -> str:
    return f"veth{sandbox_id[:11]}"


async def create_namespaces(
    *, netns: str | None, ipc: str | None, uts: str | None, hostname: str
) -> None:
    """Create persistent namespaces bound at the given files; set hostname and lo up."""
    args = ["unshare"]
    for flag, path in (("--net", netns), ("--ipc", ipc), ("--uts", uts)):
        if path:
            _prepare_ns_file(path)
            args.append(f"{flag}={path}")
    script = []
    if uts and hostname:
        script.append('hostname "$1"')
    if netns:
        script.append("ip link set lo up")
    args += ["/bin/sh", "-ec", "; ".join(script) or "true", "sh", hostname]
    try:
        await run(*args)
    except NetworkError:
        await remove_namespaces([p for p in (netns, ipc, uts) if p])
        raise


async def remove_namespaces(paths: list[str]) -> None:
    """Unmount (lazily) and delete namespace files; missing or unmounted ones are fine."""
    for path in paths:
        with contextlib.suppress(OSError):  # EINVAL: not a mount point (any more)
            linux.umount(path, linux.MNT_DETACH)
        with contextlib.suppress(OSError):
            os.unlink(path)
