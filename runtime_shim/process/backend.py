"""The process backend: pod sandboxes as namespaces, containers as supervised processes.

No daemon: the shim itself is the runtime, and each running container has a
supervisor process (:mod:`.supervisor`) that outlives the shim. Everything a
restarted shim needs is on disk under ``--root``::

    sandboxes/<id>/sandbox.json    config, namespaces, IP, state
    sandboxes/<id>/ns/{ipc,uts}    bind-mounted namespace files
    sandboxes/<id>/{hosts,resolv.conf,hostname}
    containers/<id>/container.json config, image, cgroups, log path
    containers/<id>/spec.json      what the supervisor runs
    containers/<id>/state.json     written by the supervisor once the process runs
    containers/<id>/exit.json      written by the supervisor when it has exited
    containers/<id>/{upper,work,merged}  the overlay over the image rootfs
    images/                        the image store
    ipam/                          allocated pod IPs

A container's state is read from those files: ``exit.json`` → EXITED,
``state.json`` with a live supervisor → RUNNING, neither → CREATED. The shim
watches each supervisor through a pidfd, whether it started it or re-adopted
it after a restart, to publish CONTAINER_STOPPED events.

Supervisors and sandbox namespaces are forked by the zygote (:mod:`.zygote`),
a small process started with the backend: a container start is a fork, not an
interpreter start, and a sandbox is one forked worker (namespaces, hostname,
veth over rtnetlink), not a handful of ``ip``/``unshare`` commands.

Isolation needs root (CAP_SYS_ADMIN). Without it sandboxes use the host's
network, IPC and UTS (``Status``: NetworkReady with reason HostNetworkOnly)
and containers run unconfined on the host filesystem: the image's executable,
found inside the image rootfs, in the image's working directory; no cgroups,
so resource limits are refused (Unimplemented) rather than ignored.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pilothouse import __version__
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim import filters
from pilothouse.runtime_shim.common import DelegatedRPCs, disk_usage, fill_usage
from pilothouse.runtime_shim.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RuntimeFailure,
    Unimplemented,
)
from pilothouse.runtime_shim.events import EventHub
from pilothouse.runtime_shim.images.service import LocalImages
from pilothouse.runtime_shim.images.store import ImageStore
from pilothouse.runtime_shim.process import network
from pilothouse.runtime_shim.process.cgroups import CgroupError, Cgroups, CgroupSet
from pilothouse.runtime_shim.process.forkserver import Zygote, ZygoteError
from pilothouse.runtime_shim.spec import process_spec
from pilothouse.runtime_shim.stdio import (
    feed_fifo,
    follow_log,
    run_in_pty,
    run_with_pipes,
)
from pilothouse.runtime_shim.streaming import StreamingServer, Streams

log = logging.getLogger(__name__)

NODE = cri.NamespaceMode.Value("NODE")
POD = cri.NamespaceMode.Value("POD")
CONTAINER = cri.NamespaceMode.Value("CONTAINER")
EXEC_OUTPUT_LIMIT = 16 * 1024 * 1024
KILL_WAIT = 10.0


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return doc


def _proc_start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, start_time: int | None) -> bool:
    return pid > 0 and start_time is not None and _proc_start_time(pid) == start_time


def _b64(msg: Any) -> str:
    return base64.b64encode(msg.SerializeToString()).decode()


@dataclass
class Sandbox:
    id: str
    config_b64: str
    created_at: int
    runtime_handler: str = ""
    state: str = "ready"  # ready | notready
    netns: str = ""  # name under /run/netns, "" for the host network
    ipc: str = ""
    uts: str = ""
    ip: str = ""
    pid_holder: int = 0
    pid_holder_start: int = 0
    cgroup: dict[str, str] = field(default_factory=dict)
    host_ifname: str = ""  # the veth's host end when not named after the sandbox (pooled)

    @functools.cached_property
    def config(self) -> cri.PodSandboxConfig:
        return cri.PodSandboxConfig.FromString(base64.b64decode(self.config_b64))

    # What never changes, built once: lists and statuses copy these (one C-level copy
    # instead of building maps of labels and annotations field by field on every call).
    @functools.cached_property
    def item_template(self) -> cri.PodSandbox:
        config = self.config
        return cri.PodSandbox(id=self.id, metadata=config.metadata, created_at=self.created_at,
                              labels=config.labels, annotations=config.annotations,
                              runtime_handler=self.runtime_handler)

    @functools.cached_property
    def status_template(self) -> cri.PodSandboxStatus:
        config = self.config
        status = cri.PodSandboxStatus(
            id=self.id, metadata=config.metadata, created_at=self.created_at,
            labels=config.labels, annotations=config.annotations,
            runtime_handler=self.runtime_handler)
        status.linux.namespaces.options.CopyFrom(
            config.linux.security_context.namespace_options)
        return status


@dataclass
class Container:
    id: str
    sandbox_id: str
    config_b64: str
    image: str  # what the kubelet asked for
    image_id: str  # config digest
    image_ref: str  # a repo digest, or the ID
    created_at: int
    log_path: str = ""
    cgroup: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    pid_mode: str = "container"

    @functools.cached_property
    def config(self) -> cri.ContainerConfig:
        return cri.ContainerConfig.FromString(base64.b64decode(self.config_b64))

    @functools.cached_property
    def item_template(self) -> cri.Container:
        config = self.config
        return cri.Container(
            id=self.id, pod_sandbox_id=self.sandbox_id, metadata=config.metadata,
            image=cri.ImageSpec(image=self.image), image_ref=self.image_ref,
            image_id=self.image_id, created_at=self.created_at, labels=config.labels,
            annotations=config.annotations)

    @functools.cached_property
    def status_template(self) -> cri.ContainerStatus:
        config = self.config
        status = cri.ContainerStatus(
            id=self.id, metadata=config.metadata, created_at=self.created_at,
            image=cri.ImageSpec(image=self.image), image_ref=self.image_ref,
            image_id=self.image_id, labels=config.labels, annotations=config.annotations,
            mounts=config.mounts, log_path=self.log_path)
        status.resources.linux.CopyFrom(config.linux.resources)
        return status

    def config_changed(self) -> None:
        """``config_b64`` was replaced: drop what was built from the old config."""
        for cached in ("config", "item_template", "status_template"):
            self.__dict__.pop(cached, None)


POOL_PREFIX = "pool-"  # IPAM owner of a pooled namespace not yet claimed


@dataclass
class PooledNetns:
    owner: str  # its IPAM owner (POOL_PREFIX...) until a sandbox claims it
    netns: str  # name under /run/netns
    ip: str
    host_ifname: str


@dataclass
class Runtime:
    """What the supervisor's files say about a container right now."""

    state: cri.ContainerState.ValueType
    pid: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    supervisor_pid: int = 0
    supervisor_start: int = 0


class ProcessBackend(DelegatedRPCs[LocalImages]):
    name = "process"

    def __init__(
        self,
        *,
        root: Path,
        bridge: str = "pilothouse0",
        pod_cidr: str = "10.88.0.0/16",
        python: str = sys.executable,
        cgroup_parent: str = "/pilothouse",
        cgroups: Cgroups | None = None,
        netns_pool: int = 0,
    ) -> None:
        self.root = root
        self.sandboxes_dir = root / "sandboxes"
        self.containers_dir = root / "containers"
        for d in (self.sandboxes_dir, self.containers_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.privileged = os.geteuid() == 0
        self.python = python
        self.cgroups = cgroups or Cgroups(default_parent=cgroup_parent)
        self.cgroups_ok = self.privileged and self.cgroups.writable()
        self.network = network.BridgeNetwork(root=root / "ipam", bridge=bridge, cidr=pod_cidr)
        self.overlay = "overlay" in Path("/proc/filesystems").read_text()
        self.store = ImageStore(root / "images")
        self.images = LocalImages(self.store, self._image_in_use)
        self.events = EventHub()
        self.sandboxes: dict[str, Sandbox] = {}
        self.containers: dict[str, Container] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._exited: dict[str, asyncio.Event] = {}
        self._watched: dict[str, int] = {}  # container id -> pidfd
        # what _runtime last read, for containers whose state cannot change unseen: EXITED
        # (final) and RUNNING while a pidfd watches the supervisor (its exit drops the entry)
        self._known: dict[str, Runtime] = {}
        self._cpu_samples: dict[str, tuple[int, int]] = {}
        self._network_error = ""
        self.nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        self.streaming: StreamingServer | None = None  # set by the server when it runs one
        # forks supervisors and sandbox namespaces (a fork, not an interpreter start, each)
        self.zygote = Zygote(python=python, log_path=root / "zygote.log")
        # Network namespaces made ahead of need, each wired to the bridge with an address
        # (the slow part of a sandbox: a new netns and a veth, which takes the kernel's
        # rtnl lock); RunPodSandbox takes one and only makes its IPC/UTS namespaces.
        self.netns_pool = netns_pool if self.privileged else 0
        self._pool: list[PooledNetns] = []
        self._pool_task: asyncio.Task[None] | None = None
        self._pool_error = ""

    # -- lifecycle of the backend --------------------------------------------------
    async def start(self) -> None:
        for path in sorted(self.sandboxes_dir.glob("*/sandbox.json")):
            doc = _read_json(path)
            if doc is not None:
                sb = Sandbox(**doc)
                self.sandboxes[sb.id] = sb
        for path in sorted(self.containers_dir.glob("*/container.json")):
            doc = _read_json(path)
            if doc is not None:
                c = Container(**doc)
                self.containers[c.id] = c
        for c in self.containers.values():
            rt = self._runtime(c)
            if rt.state == cri.CONTAINER_RUNNING:
                self._watch(c, rt)
            elif rt.state == cri.CONTAINER_UNKNOWN:
                self._reap_lost(c, rt)
        if self.privileged:
            try:
                await self.network.ensure_bridge()
            except network.NetworkError as err:
                self._network_error = str(err)
            await self._remove_stale_pool()
        await self.zygote.start()
        self._refill_pool()

    async def close(self) -> None:
        if self._pool_task is not None:
            self._pool_task.cancel()
            await asyncio.gather(self._pool_task, return_exceptions=True)
            self._pool_task = None
        for entry in self._pool:
            await self._destroy_pooled(entry.owner, entry.netns)
        self._pool.clear()
        await self.zygote.close()
        loop = asyncio.get_running_loop()
        for fd in list(self._watched.values()):
            loop.remove_reader(fd)
            os.close(fd)
        self._watched.clear()
        self.events.close()

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # -- the pool of ready network namespaces ----------------------------------------
    def _refill_pool(self) -> None:
        """Top the pool up in the background (one namespace at a time, so a refill never
        competes much with the sandboxes being started)."""
        if not self.netns_pool or self._network_error or self._pool_error or (
                self._pool_task is not None and not self._pool_task.done()):
            return
        self._pool_task = asyncio.create_task(self._fill_pool(), name="netns-pool")

    async def _fill_pool(self) -> None:
        while len(self._pool) < self.netns_pool:
            owner = f"{POOL_PREFIX}{secrets.token_hex(14)}"
            netns = f"ph-{owner[:12]}"
            try:
                net = self.network.plan(owner)
                await self.zygote.call({"op": "sandbox", "netns": str(network.NETNS_DIR / netns),
                                        "ipc": None, "uts": None, "hostname": "", "net": net})
            except (network.NetworkError, ZygoteError, OSError) as err:
                self._pool_error = str(err)  # no more tries: sandboxes make their own
                log.warning("netns pool: %s (sandboxes make their own namespaces)", err)
                await self._destroy_pooled(owner, netns)
                return
            except BaseException:
                await self._destroy_pooled(owner, netns)
                raise
            self._pool.append(PooledNetns(owner, netns, net["ip"], net["host_ifname"]))

    async def _destroy_pooled(self, owner: str, netns: str) -> None:
        await self.network.detach(owner)
        await network.remove_namespaces([str(network.NETNS_DIR / netns)])

    async def _remove_stale_pool(self) -> None:
        """A shim that died left its unclaimed namespaces: the IPAM files name them."""
        for owner in self.network.ipam.owners():
            if owner.startswith(POOL_PREFIX):
                await self._destroy_pooled(owner, f"ph-{owner[:12]}")

    def _take_pooled(self, sb: Sandbox) -> bool:
        """Give ``sb`` a ready namespace from the pool (its address moves to ``sb``)."""
        if not self._pool:
            return False
        entry = self._pool.pop(0)
        self.network.ipam.transfer(entry.owner, sb.id)
        sb.netns, sb.ip, sb.host_ifname = entry.netns, entry.ip, entry.host_ifname
        self._refill_pool()
        return True

    # -- runtime -------------------------------------------------------------------
    async def version(self, req: cri.VersionRequest) -> cri.VersionResponse:
        return cri.VersionResponse(version="0.1.0", runtime_name="pilothouse-process",
                                   runtime_version=__version__, runtime_api_version="v1")

    async def status(self, req: cri.StatusRequest) -> cri.StatusResponse:
        runtime = cri.RuntimeCondition(type="RuntimeReady", status=True)
        net = cri.RuntimeCondition(type="NetworkReady", status=True)
        if not self.privileged:
            net.reason, net.message = "HostNetworkOnly", (
                "not root: pods share the host network, IPC and UTS namespaces")
        elif self._network_error:
            net.status, net.reason, net.message = False, "BridgeSetupFailed", self._network_error
        resp = cri.StatusResponse(status=cri.RuntimeStatus(conditions=[runtime, net]))
        resp.runtime_handlers.add(name="")
        if req.verbose:
            resp.info["config"] = json.dumps({
                "root": str(self.root), "bridge": self.network.bridge,
                "podCIDR": str(self.network.cidr), "cgroupVersion": self.cgroups.version,
                "cgroupsWritable": self.cgroups_ok, "overlay": self.overlay,
                "isolation": self.privileged})
        return resp

    async def runtime_config(self, req: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
        resp = cri.RuntimeConfigResponse()
        resp.linux.cgroup_driver = cri.CgroupDriver.Value("CGROUPFS")
        return resp

    async def update_runtime_config(
        self, req: cri.UpdateRuntimeConfigRequest
    ) -> cri.UpdateRuntimeConfigResponse:
        cidr = req.runtime_config.network_config.pod_cidr
        if cidr and cidr.split(",")[0] != str(self.network.cidr):
            log.info("kubelet pod CIDR %s differs from the bridge's %s; keeping %s",
                     cidr, self.network.cidr, self.network.cidr)
        return cri.UpdateRuntimeConfigResponse()

    # -- sandboxes -----------------------------------------------------------------
    def _sandbox(self, sandbox_id: str) -> Sandbox:
        sb = self.sandboxes.get(sandbox_id)
        if sb is None:
            hits = [s for s in self.sandboxes.values() if s.id.startswith(sandbox_id)]
            if len(hits) != 1:
                raise NotFound(f"pod sandbox {sandbox_id!r} not found")
            sb = hits[0]
        return sb

    def _save_sandbox(self, sb: Sandbox) -> None:
        _write_json(self.sandboxes_dir / sb.id / "sandbox.json", asdict(sb))

    async def run_pod_sandbox(self, req: cri.RunPodSandboxRequest) -> cri.RunPodSandboxResponse:
        if req.runtime_handler not in ("", "process"):
            raise InvalidArgument(f"runtime handler {req.runtime_handler!r} is not configured "
                                  "(the process backend has only the default handler)")
        config = req.config
        opts = config.linux.security_context.namespace_options
        for other in self.sandboxes.values():
            m = other.config.metadata
            if (m.name, m.namespace, m.uid, m.attempt) == (
                    config.metadata.name, config.metadata.namespace, config.metadata.uid,
                    config.metadata.attempt) and other.state == "ready":
                raise FailedPrecondition(
                    f"sandbox {m.namespace}/{m.name} attempt {m.attempt} already exists "
                    f"as {other.id}")
        sb = Sandbox(id=secrets.token_hex(32), config_b64=_b64(config),
                     created_at=time.time_ns(), runtime_handler=req.runtime_handler)
        directory = self.sandboxes_dir / sb.id
        directory.mkdir()
        try:
            await self._setup_sandbox(sb, config, opts, directory)
        except BaseException as err:
            await self._teardown_sandbox(sb)
            shutil.rmtree(directory, ignore_errors=True)
            if isinstance(err, (network.NetworkError, CgroupError, OSError)):
                raise RuntimeFailure(f"cannot create pod sandbox: {err}") from None
            raise
        self.sandboxes[sb.id] = sb
        self._save_sandbox(sb)
        return cri.RunPodSandboxResponse(pod_sandbox_id=sb.id)

    async def _setup_sandbox(self, sb: Sandbox, config: cri.PodSandboxConfig,
                             opts: cri.NamespaceOption, directory: Path) -> None:
        host_network = opts.network == NODE or not self.privileged
        hostname = config.hostname or config.metadata.name
        if self.privileged:
            pooled = not host_network and self._take_pooled(sb)
            if not host_network and not pooled:
                sb.netns = f"ph-{sb.id[:12]}"
            if opts.ipc != NODE:
                sb.ipc = str(directory / "ns" / "ipc")
            if not host_network:
                sb.uts = str(directory / "ns" / "uts")
            request: dict[str, Any] = {
                "op": "sandbox",
                "netns": str(network.NETNS_DIR / sb.netns) if sb.netns and not pooled else None,
                "ipc": sb.ipc or None, "uts": sb.uts or None, "hostname": hostname[:63],
                "net": None}
            if sb.netns and not pooled:
                request["net"] = self.network.plan(sb.id)
                sb.ip = request["net"]["ip"]
            try:
                await self.zygote.call(request)
            except ZygoteError as err:
                raise network.NetworkError(f"namespaces and pod network: {err}") from None
        if not sb.ip:
            sb.ip = _host_ip()
        if self.cgroups_ok:
            cg = self.cgroups.paths_for(config.linux.cgroup_parent,
                                        *([] if config.linux.cgroup_parent else [sb.id]))
            self.cgroups.create(cg)
            sb.cgroup = cg.dirs
            if config.linux.HasField("resources"):
                self.cgroups.apply(cg, config.linux.resources)
        (directory / "hostname").write_text((hostname if not host_network
                                             else os.uname().nodename) + "\n")
        hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        if not host_network:
            hosts += f"{sb.ip}\t{hostname}\n"
        (directory / "hosts").write_text(hosts)
        (directory / "resolv.conf").write_text(_resolv_conf(config.dns_config))

    async def _start_pid_holder(self, sb: Sandbox, directory: Path) -> None:
        """A process whose children share one PID namespace: the pod's (``POD`` mode)."""
        pidfile = directory / "pid-holder"
        script = 'echo $$ > "$1"; exec unshare --pid --fork --kill-child sleep infinity'
        proc = await asyncio.create_subprocess_exec(
            "setsid", "-f", "/bin/sh", "-c", script, "sh", str(pidfile),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        await proc.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pid = _holder_ready(pidfile)
            if pid:
                sb.pid_holder = pid
                sb.pid_holder_start = _proc_start_time(pid) or 0
                return
            await asyncio.sleep(0.005)
        raise RuntimeFailure("the pod PID namespace holder did not start")

    def _pid_ns_path(self, sb: Sandbox) -> str:
        return f"/proc/{sb.pid_holder}/ns/pid_for_children"

    async def _teardown_sandbox(self, sb: Sandbox) -> None:
        """Release the network and the pid holder (stop); idempotent."""
        if sb.netns:
            await self.network.detach(sb.id, sb.host_ifname)
            await network.remove_namespaces([str(network.NETNS_DIR / sb.netns)])
        if sb.pid_holder and _alive(sb.pid_holder, sb.pid_holder_start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(sb.pid_holder, signal.SIGKILL)
        sb.pid_holder = 0

    async def stop_pod_sandbox(
        self, req: cri.StopPodSandboxRequest
    ) -> cri.StopPodSandboxResponse:
        try:
            sb = self._sandbox(req.pod_sandbox_id)
        except NotFound:
            return cri.StopPodSandboxResponse()
        async with self._lock(sb.id):
            for c in [c for c in self.containers.values() if c.sandbox_id == sb.id]:
                await self._stop(c, grace=0)
            await self._teardown_sandbox(sb)
            if sb.state != "notready":
                sb.state = "notready"
                self._save_sandbox(sb)
        return cri.StopPodSandboxResponse()

    async def remove_pod_sandbox(
        self, req: cri.RemovePodSandboxRequest
    ) -> cri.RemovePodSandboxResponse:
        try:
            sb = self._sandbox(req.pod_sandbox_id)
        except NotFound:
            return cri.RemovePodSandboxResponse()
        await self.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sb.id))
        async with self._lock(sb.id):
            for c in [c for c in self.containers.values() if c.sandbox_id == sb.id]:
                await self._remove(c)
            await network.remove_namespaces([p for p in (sb.ipc, sb.uts) if p])
            if sb.cgroup and not sb.config.linux.cgroup_parent:
                self.cgroups.remove(CgroupSet(sb.cgroup))
            shutil.rmtree(self.sandboxes_dir / sb.id, ignore_errors=True)
            self.sandboxes.pop(sb.id, None)
        self._locks.pop(sb.id, None)
        return cri.RemovePodSandboxResponse()

    def _sandbox_status(self, sb: Sandbox) -> cri.PodSandboxStatus:
        status = cri.PodSandboxStatus()
        status.CopyFrom(sb.status_template)
        status.state = cri.SANDBOX_READY if sb.state == "ready" else cri.SANDBOX_NOTREADY
        if sb.state == "ready":
            status.network.ip = sb.ip
        return status

    async def pod_sandbox_status(
        self, req: cri.PodSandboxStatusRequest
    ) -> cri.PodSandboxStatusResponse:
        sb = self._sandbox(req.pod_sandbox_id)
        resp = cri.PodSandboxStatusResponse(status=self._sandbox_status(sb),
                                            timestamp=time.time_ns())
        if req.verbose:
            resp.info["info"] = json.dumps({"netns": sb.netns, "ipc": sb.ipc, "uts": sb.uts,
                                            "cgroup": sb.cgroup, "pidHolder": sb.pid_holder})
        for c in self.containers.values():
            if c.sandbox_id == sb.id:
                resp.containers_statuses.append(self._container_status(c))
        return resp

    async def list_pod_sandbox(self, req: cri.ListPodSandboxRequest) -> cri.ListPodSandboxResponse:
        resp = cri.ListPodSandboxResponse()
        flt = req.filter if req.HasField("filter") else None
        for sb in self.sandboxes.values():
            state = cri.SANDBOX_READY if sb.state == "ready" else cri.SANDBOX_NOTREADY
            if flt is not None and (
                    (flt.id and not sb.id.startswith(flt.id))
                    or (flt.HasField("state") and state != flt.state.state)
                    or not filters.labels_match(flt.label_selector, sb.config.labels)):
                continue
            item = resp.items.add()
            item.CopyFrom(sb.item_template)
            item.state = state
        return resp

    # -- containers ----------------------------------------------------------------
    def _container(self, container_id: str) -> Container:
        c = self.containers.get(container_id)
        if c is None:
            hits = [x for x in self.containers.values() if x.id.startswith(container_id)]
            if len(hits) != 1:
                raise NotFound(f"container {container_id!r} not found")
            c = hits[0]
        return c

    def _dir(self, c: Container) -> Path:
        return self.containers_dir / c.id

    def _image_in_use(self, image_id: str) -> bool:
        return any(c.image_id == image_id for c in self.containers.values())

    async def create_container(
        self, req: cri.CreateContainerRequest
    ) -> cri.CreateContainerResponse:
        sb = self._sandbox(req.pod_sandbox_id)
        if sb.state != "ready":
            raise FailedPrecondition(f"pod sandbox {sb.id} is not ready")
        config = req.config
        record = self.store.resolve(config.image.image)
        if record is None:
            raise NotFound(f"image {config.image.image!r} is not present; pull it first")
        image_config = self.store.config(record)
        rootfs = self.store.rootfs(record)
        for existing in self.containers.values():
            m = existing.config.metadata
            if existing.sandbox_id == sb.id and (m.name, m.attempt) == (
                    config.metadata.name, config.metadata.attempt):
                raise FailedPrecondition(f"container {m.name} attempt {m.attempt} already "
                                         f"exists in sandbox {sb.id} as {existing.id}")
        proc = process_spec(rootfs=rootfs, entrypoint=image_config.entrypoint,
                            cmd=image_config.cmd, image_env=image_config.env,
                            image_working_dir=image_config.working_dir,
                            image_user=image_config.user, config=config)
        sandbox_config = sb.config
        opts = config.linux.security_context.namespace_options
        if opts.pid == cri.NamespaceMode.Value("TARGET"):
            raise Unimplemented("PID namespace mode TARGET is not supported by the "
                                "process backend")
        c = Container(
            id=secrets.token_hex(32), sandbox_id=sb.id, config_b64=_b64(config),
            image=config.image.image, image_id=record.id,
            image_ref=record.repo_digests[0] if record.repo_digests else record.id,
            created_at=time.time_ns(), stop_signal=image_config.stop_signal,
            pid_mode={NODE: "node", POD: "pod"}.get(opts.pid, "container"))
        if config.log_path and sandbox_config.log_directory:
            c.log_path = os.path.join(sandbox_config.log_directory, config.log_path)
        elif config.log_path.startswith("/"):
            c.log_path = config.log_path
        directory = self._dir(c)
        if c.pid_mode == "pod" and self.privileged:
            async with self._lock(sb.id):
                if not _alive(sb.pid_holder, sb.pid_holder_start):
                    # the pod's shared PID namespace, made when a container first asks for it
                    await self._start_pid_holder(sb, self.sandboxes_dir / sb.id)
                    self._save_sandbox(sb)
        directory.mkdir()
        try:
            mounts = self._mounts(sb, config)
            spec = self._spec(sb, c, proc, rootfs, mounts, config, directory)
            if self.cgroups_ok:
                parent = sandbox_config.linux.cgroup_parent
                cg = self.cgroups.paths_for(parent, *([c.id] if parent else [sb.id, c.id]))
                self.cgroups.create(cg)
                c.cgroup = cg.dirs
                self.cgroups.apply(cg, config.linux.resources)
                spec["cgroup_procs"] = cg.procs_files()
                spec["cgroup_dirs"] = cg.dirs
                spec["oom_events"] = self.cgroups.oom_events_file(cg)
            elif _wants_limits(config.linux.resources):
                raise Unimplemented("resource limits need writable cgroups, which this "
                                    "host does not give the shim")
            if not self.overlay and self.privileged:
                await asyncio.to_thread(shutil.copytree, rootfs, directory / "merged",
                                        symlinks=True)
            _write_json(directory / "spec.json", spec)
            _write_json(directory / "container.json", asdict(c))
        except BaseException as err:
            if c.cgroup:
                self.cgroups.remove(CgroupSet(c.cgroup))
            shutil.rmtree(directory, ignore_errors=True)
            if isinstance(err, CgroupError):
                raise RuntimeFailure(f"cannot create container: {err}") from None
            raise
        self.containers[c.id] = c
        self._publish(c, cri.CONTAINER_CREATED_EVENT)
        return cri.CreateContainerResponse(container_id=c.id)

    def _mounts(self, sb: Sandbox, config: cri.ContainerConfig) -> list[dict[str, Any]]:
        sdir = self.sandboxes_dir / sb.id
        own = {m.container_path for m in config.mounts}
        mounts = [{"source": str(sdir / name), "target": target, "readonly": False}
                  for name, target in (("hosts", "/etc/hosts"),
                                       ("resolv.conf", "/etc/resolv.conf"),
                                       ("hostname", "/etc/hostname"))
                  if target not in own]
        for m in config.mounts:
            if not os.path.exists(m.host_path):
                raise InvalidArgument(f"mount source {m.host_path} does not exist")
            mounts.append({"source": m.host_path, "target": m.container_path,
                           "readonly": m.readonly})
        return mounts

    def _spec(self, sb: Sandbox, c: Container, proc: Any, rootfs: Path,
              mounts: list[dict[str, Any]], config: cri.ContainerConfig,
              directory: Path) -> dict[str, Any]:
        namespaces: dict[str, str] = {}
        if self.privileged:
            if sb.netns:
                namespaces["net"] = str(network.NETNS_DIR / sb.netns)
            if sb.ipc:
                namespaces["ipc"] = sb.ipc
            if sb.uts:
                namespaces["uts"] = sb.uts
            if c.pid_mode == "container":
                namespaces["pid"] = "new"
            elif c.pid_mode == "pod":
                if not sb.pid_holder:
                    raise FailedPrecondition(f"sandbox {sb.id} has no pod PID namespace")
                namespaces["pid"] = self._pid_ns_path(sb)
        spec: dict[str, Any] = {
            "argv": proc.argv, "env": proc.env, "cwd": proc.cwd,
            "uid": proc.uid, "gid": proc.gid, "groups": proc.groups,
            "isolated": self.privileged, "host_cwd": str(rootfs),
            "merged": str(directory / "merged"), "namespaces": namespaces,
            "mounts": mounts, "log_path": c.log_path,
            "readonly_rootfs": config.linux.security_context.readonly_rootfs,
            # stdin=true: a FIFO the container reads and Attach writes (it outlives the shim)
            "stdin_fifo": str(directory / "stdin") if config.stdin else "",
            "no_new_privs": config.linux.security_context.no_new_privs,
        }
        if config.stdin:
            os.mkfifo(directory / "stdin", 0o600)
        if self.privileged:
            (directory / "merged").mkdir()
            if self.overlay:
                (directory / "upper").mkdir()
                (directory / "work").mkdir()
                spec.update(lower=str(rootfs), upper=str(directory / "upper"),
                            work=str(directory / "work"))
        return spec

    def _runtime(self, c: Container) -> Runtime:
        rt = self._known.get(c.id)
        if rt is not None and (rt.state == cri.CONTAINER_EXITED or c.id in self._watched):
            return rt
        rt = self._read_runtime(c)
        if rt.state == cri.CONTAINER_EXITED or (rt.state == cri.CONTAINER_RUNNING
                                                and c.id in self._watched):
            self._known[c.id] = rt
        return rt

    def _forget_runtime(self, c: Container) -> None:
        """The files changed (exit.json written, the supervisor gone): read them again."""
        self._known.pop(c.id, None)

    def _read_runtime(self, c: Container) -> Runtime:
        directory = self._dir(c)
        exit_doc = _read_json(directory / "exit.json")
        state = _read_json(directory / "state.json")
        if exit_doc is not None:
            rt = Runtime(cri.CONTAINER_EXITED, exit_code=int(exit_doc.get("exit_code", 0)),
                         finished_at=int(exit_doc.get("finished_at", 0)),
                         reason=exit_doc.get("reason", ""),
                         message=exit_doc.get("message", ""))
            if state:
                rt.started_at = int(state.get("started_at", 0))
                rt.pid = int(state.get("pid", 0))
            return rt
        if state is None:
            return Runtime(cri.CONTAINER_CREATED)
        rt = Runtime(cri.CONTAINER_RUNNING, pid=int(state["pid"]),
                     started_at=int(state["started_at"]),
                     supervisor_pid=int(state["supervisor_pid"]),
                     supervisor_start=int(state["supervisor_start_time"]))
        if not _alive(rt.supervisor_pid, rt.supervisor_start):
            # the supervisor may have written exit.json between our two reads
            if (directory / "exit.json").exists():
                return self._read_runtime(c)
            rt.state = cri.CONTAINER_UNKNOWN
        return rt

    def _reap_lost(self, c: Container, rt: Runtime) -> None:
        """The supervisor died without recording an exit: kill leftovers, record one."""
        if c.cgroup:
            for pid in self.cgroups.pids(CgroupSet(c.cgroup)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._forget_runtime(c)
        _write_json(self._dir(c) / "exit.json", {
            "exit_code": 137, "finished_at": time.time_ns(), "reason": "Error",
            "message": "the container's supervisor exited without recording the exit status"})

    def _watch(self, c: Container, rt: Runtime) -> None:
        """Publish CONTAINER_STOPPED when the supervisor exits (it writes exit.json first)."""
        if c.id in self._watched:
            return
        event = self._exited.setdefault(c.id, asyncio.Event())
        loop = asyncio.get_running_loop()
        try:  # pid 0: the container exited before its state was read (a fast exit)
            pidfd = os.pidfd_open(rt.supervisor_pid) if rt.supervisor_pid > 0 else -1
        except (ProcessLookupError, ValueError):
            pidfd = -1
        # the pidfd is ours only if the pid was not reused before we opened it
        if pidfd >= 0 and not _alive(rt.supervisor_pid, rt.supervisor_start):
            os.close(pidfd)
            pidfd = -1

        def exited() -> None:
            if pidfd >= 0:
                loop.remove_reader(pidfd)
                os.close(pidfd)
            self._watched.pop(c.id, None)
            self._forget_runtime(c)
            if self._runtime(c).state == cri.CONTAINER_UNKNOWN:
                self._reap_lost(c, rt)
            event.set()
            if c.id in self.containers:
                self._publish(c, cri.CONTAINER_STOPPED_EVENT)

        if pidfd < 0:  # already gone (a very short-lived container)
            exited()
            return
        self._watched[c.id] = pidfd
        loop.add_reader(pidfd, exited)

    async def start_container(self, req: cri.StartContainerRequest) -> cri.StartContainerResponse:
        c = self._container(req.container_id)
        async with self._lock(c.id):
            rt = self._runtime(c)
            if rt.state != cri.CONTAINER_CREATED:
                state = cri.ContainerState.Name(rt.state)
                raise FailedPrecondition(f"container {c.id} is {state}, not CREATED")
            sb = self.sandboxes.get(c.sandbox_id)
            if sb is None or sb.state != "ready":
                raise FailedPrecondition(f"pod sandbox {c.sandbox_id} is not ready")
            await self._launch(c)
            rt = self._runtime(c)
            if rt.state == cri.CONTAINER_EXITED and rt.reason == "StartError":
                raise RuntimeFailure(f"failed to start container {c.id}: {rt.message}")
            self._publish(c, cri.CONTAINER_STARTED_EVENT)
            self._watch(c, rt)
        return cri.StartContainerResponse()

    async def _launch(self, c: Container) -> None:
        try:
            await self.zygote.call({"op": "supervise", "dir": str(self._dir(c))})
        except ZygoteError as err:
            detail = str(err)
            self._forget_runtime(c)
            if not (self._dir(c) / "exit.json").exists():
                _write_json(self._dir(c) / "exit.json", {
                    "exit_code": 128, "finished_at": time.time_ns(), "reason": "StartError",
                    "message": detail.strip()})
            raise RuntimeFailure(f"failed to start container {c.id}: {detail.strip()}") from None

    async def stop_container(self, req: cri.StopContainerRequest) -> cri.StopContainerResponse:
        try:
            c = self._container(req.container_id)
        except NotFound:
            return cri.StopContainerResponse()  # gone is stopped
        async with self._lock(c.id):
            await self._stop(c, grace=req.timeout)
        return cri.StopContainerResponse()

    async def _stop(self, c: Container, *, grace: int) -> None:
        rt = self._runtime(c)
        if rt.state == cri.CONTAINER_CREATED:
            # never started: record it as exited so it cannot be started later
            self._forget_runtime(c)
            _write_json(self._dir(c) / "exit.json", {
                "exit_code": 0, "finished_at": time.time_ns(), "reason": "Completed",
                "message": "stopped before it was started"})
            return
        if rt.state != cri.CONTAINER_RUNNING:
            if rt.state == cri.CONTAINER_UNKNOWN:
                self._reap_lost(c, rt)
            elif c.id in self._watched:
                # exited, and its supervisor is finishing: let it go (and the event out)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._exited[c.id].wait(), KILL_WAIT)
            return
        self._watch(c, rt)
        event = self._exited[c.id]
        if grace > 0:
            sig = _signal_number(c.stop_signal)
            self._signal(c, rt, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), grace)
        if not event.is_set():
            self._signal(c, rt, signal.SIGKILL)
            try:
                await asyncio.wait_for(event.wait(), KILL_WAIT)
            except TimeoutError:
                raise DeadlineExceeded(f"container {c.id} did not exit after SIGKILL") from None

    def _signal(self, c: Container, rt: Runtime, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(rt.pid, sig)
        if sig == signal.SIGKILL and c.cgroup:  # also whatever it left behind
            for pid in self.cgroups.pids(CgroupSet(c.cgroup)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    async def remove_container(
        self, req: cri.RemoveContainerRequest
    ) -> cri.RemoveContainerResponse:
        try:
            c = self._container(req.container_id)
        except NotFound:
            return cri.RemoveContainerResponse()
        async with self._lock(c.id):
            await self._remove(c)
        self._locks.pop(c.id, None)
        return cri.RemoveContainerResponse()

    async def _remove(self, c: Container) -> None:
        if c.id not in self.containers:
            return
        await self._stop(c, grace=0)
        if c.cgroup:
            self.cgroups.remove(CgroupSet(c.cgroup))
        await asyncio.to_thread(shutil.rmtree, self._dir(c), True)
        self.containers.pop(c.id, None)
        self._known.pop(c.id, None)
        self._exited.pop(c.id, None)
        self._cpu_samples.pop(c.id, None)
        self._publish(c, cri.CONTAINER_DELETED_EVENT, removed=True)

    def _container_status(self, c: Container) -> cri.ContainerStatus:
        rt = self._runtime(c)
        status = cri.ContainerStatus()
        status.CopyFrom(c.status_template)
        status.state, status.exit_code = rt.state, rt.exit_code
        status.started_at, status.finished_at = rt.started_at, rt.finished_at
        status.reason, status.message = rt.reason, rt.message
        return status

    async def list_containers(self, req: cri.ListContainersRequest) -> cri.ListContainersResponse:
        resp = cri.ListContainersResponse()
        flt = req.filter if req.HasField("filter") else None
        for c in self.containers.values():
            state = self._runtime(c).state
            if flt is not None and (
                    (flt.id and not c.id.startswith(flt.id))
                    or (flt.pod_sandbox_id and not c.sandbox_id.startswith(flt.pod_sandbox_id))
                    or (flt.HasField("state") and state != flt.state.state)
                    or not filters.labels_match(flt.label_selector, c.config.labels)):
                continue
            item = resp.containers.add()
            item.CopyFrom(c.item_template)
            item.state = state
        return resp

    async def container_status(
        self, req: cri.ContainerStatusRequest
    ) -> cri.ContainerStatusResponse:
        c = self._container(req.container_id)
        resp = cri.ContainerStatusResponse(status=self._container_status(c))
        if req.verbose:
            rt = self._runtime(c)
            resp.info["info"] = json.dumps({"pid": rt.pid, "supervisorPid": rt.supervisor_pid,
                                            "cgroup": c.cgroup,
                                            "spec": _read_json(self._dir(c) / "spec.json")})
        return resp

    async def update_container_resources(
        self, req: cri.UpdateContainerResourcesRequest
    ) -> cri.UpdateContainerResourcesResponse:
        c = self._container(req.container_id)
        if not c.cgroup:
            raise Unimplemented("this host gives the shim no writable cgroups")
        try:
            self.cgroups.apply(CgroupSet(c.cgroup), req.linux)
        except CgroupError as err:
            raise RuntimeFailure(str(err)) from None
        config = c.config
        config.linux.resources.CopyFrom(req.linux)
        c.config_b64 = _b64(config)
        c.config_changed()
        _write_json(self._dir(c) / "container.json", asdict(c))
        return cri.UpdateContainerResourcesResponse()

    async def reopen_container_log(
        self, req: cri.ReopenContainerLogRequest
    ) -> cri.ReopenContainerLogResponse:
        c = self._container(req.container_id)
        rt = self._runtime(c)
        if rt.state != cri.CONTAINER_RUNNING:
            raise FailedPrecondition(f"container {c.id} is not running")
        if not c.log_path:
            return cri.ReopenContainerLogResponse()
        os.kill(rt.supervisor_pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not _exists(c.log_path):  # the supervisor re-creates it
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"container {c.id}'s log was not reopened")
            await asyncio.sleep(0.002)
        return cri.ReopenContainerLogResponse()

    def _running(self, container_id: str) -> tuple[Container, Runtime]:
        c = self._container(container_id)
        rt = self._runtime(c)
        if rt.state != cri.CONTAINER_RUNNING:
            raise FailedPrecondition(f"container {c.id} is not running")
        return c, rt

    def _exec_command(self, c: Container, rt: Runtime,
                      cmd: list[str]) -> tuple[list[str], dict[str, str], str | None]:
        """argv, environment and cwd of a command run inside the running container."""
        spec = _read_json(self._dir(c) / "spec.json") or {}
        argv: list[str] = []
        for path in spec.get("cgroup_procs", []):
            argv.append(path)
        if self.privileged:
            nsenter = [self.nsenter, "-t", str(rt.pid), "-m", "-i", "-u", "-n", "-p", "-r", "-w"]
            if spec.get("uid") or spec.get("gid"):
                nsenter += ["-S", str(spec.get("uid", 0)), "-G", str(spec.get("gid", 0))]
            command = [*nsenter, "--", *cmd]
        else:
            command = list(cmd)
        # join the container's cgroups first, so what the command starts is accounted there
        script = 'while [ "$1" != -- ]; do echo $$ > "$1"; shift; done; shift; exec "$@"'
        full = ["/bin/sh", "-c", script, "sh", *argv, "--", *command]
        env = dict(item.split("=", 1) for item in spec.get("env", []) if "=" in item)
        return full, env, spec.get("host_cwd") if not self.privileged else "/"

    async def exec_sync(self, req: cri.ExecSyncRequest) -> cri.ExecSyncResponse:
        c, rt = self._running(req.container_id)
        full, env, cwd = self._exec_command(c, rt, list(req.cmd))
        proc = await asyncio.create_subprocess_exec(
            *full, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True, cwd=cwd)
        try:
            out, err = await asyncio.wait_for(proc.communicate(),
                                              req.timeout if req.timeout > 0 else None)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise DeadlineExceeded(f"command {list(req.cmd)} timed out after "
                                   f"{req.timeout}s") from None
        return cri.ExecSyncResponse(stdout=out[:EXEC_OUTPUT_LIMIT],
                                    stderr=err[:EXEC_OUTPUT_LIMIT],
                                    exit_code=_exit_code(proc.returncode))

    # -- streaming (served by the shim's streaming server) ----------------------------
    def _streaming_url(self, kind: str, req: Any) -> str:
        if self.streaming is None:
            raise Unimplemented(f"{kind} needs the shim's streaming server, which is not "
                                "running (use ExecSync)")
        return self.streaming.register(kind, req)

    async def exec(self, req: cri.ExecRequest) -> cri.ExecResponse:
        self._running(req.container_id)
        if not (req.stdout or req.stderr or req.stdin):
            raise InvalidArgument("exec needs at least one of stdin, stdout, stderr")
        return cri.ExecResponse(url=self._streaming_url("exec", req))

    async def attach(self, req: cri.AttachRequest) -> cri.AttachResponse:
        c, _ = self._running(req.container_id)
        if req.stdin and not c.config.stdin:
            raise InvalidArgument(f"container {c.id} was not created with stdin open")
        if req.tty:
            raise Unimplemented("the process backend runs containers without a terminal; "
                                "attach with tty=false")
        return cri.AttachResponse(url=self._streaming_url("attach", req))

    async def port_forward(self, req: cri.PortForwardRequest) -> cri.PortForwardResponse:
        sb = self._sandbox(req.pod_sandbox_id)
        if sb.state != "ready":
            raise FailedPrecondition(f"pod sandbox {sb.id} is not ready")
        return cri.PortForwardResponse(url=self._streaming_url("portforward", req))

    async def port_forward_netns(self, sandbox_id: str) -> str:
        sb = self._sandbox(sandbox_id)
        return str(network.NETNS_DIR / sb.netns) if sb.netns else ""

    async def stream_exec(self, req: cri.ExecRequest, streams: Streams) -> int:
        c, rt = self._running(req.container_id)
        full, env, cwd = self._exec_command(c, rt, list(req.cmd))
        if streams.tty:
            return await run_in_pty(full, env, cwd, streams)
        return await run_with_pipes(full, env, cwd, streams)

    async def stream_attach(self, req: cri.AttachRequest, streams: Streams) -> None:
        c, _ = self._running(req.container_id)
        stdin_task = None
        if streams.stdin:
            stdin_task = asyncio.create_task(feed_fifo(str(self._dir(c) / "stdin"), streams))
        try:
            await follow_log(c.log_path, streams, lambda: self._exited_now(c))
        finally:
            if stdin_task is not None:
                stdin_task.cancel()

    def _exited_now(self, c: Container) -> bool:
        return self._runtime(c).state != cri.CONTAINER_RUNNING

    async def checkpoint_container(
        self, req: cri.CheckpointContainerRequest
    ) -> cri.CheckpointContainerResponse:
        raise Unimplemented("checkpointing needs CRIU, which the process backend does not use")

    # -- stats ---------------------------------------------------------------------
    def _container_stats(self, c: Container) -> cri.ContainerStats:
        config = c.config
        stats = cri.ContainerStats()
        stats.attributes.id = c.id
        stats.attributes.metadata.CopyFrom(config.metadata)
        stats.attributes.labels.update(config.labels)
        stats.attributes.annotations.update(config.annotations)
        now = time.time_ns()
        if c.cgroup:
            cg = CgroupSet(c.cgroup)
            fill_usage(self.cgroups, self._cpu_samples, c.id, cg, stats.cpu, stats.memory,
                       now)
        stats.writable_layer.timestamp = now
        stats.writable_layer.fs_id.mountpoint = str(self._dir(c) / "upper")
        used, inodes = disk_usage(self._dir(c) / "upper")
        stats.writable_layer.used_bytes.value = used
        stats.writable_layer.inodes_used.value = inodes
        return stats

    async def container_stats(self, req: cri.ContainerStatsRequest) -> cri.ContainerStatsResponse:
        c = self._container(req.container_id)
        return cri.ContainerStatsResponse(stats=self._container_stats(c))

    async def list_container_stats(
        self, req: cri.ListContainerStatsRequest
    ) -> cri.ListContainerStatsResponse:
        flt = req.filter
        out = []
        for c in self.containers.values():
            if flt.id and not c.id.startswith(flt.id):
                continue
            if flt.pod_sandbox_id and not c.sandbox_id.startswith(flt.pod_sandbox_id):
                continue
            if not filters.labels_match(flt.label_selector, c.config.labels):
                continue
            out.append(self._container_stats(c))
        return cri.ListContainerStatsResponse(stats=out)

    def _sandbox_stats(self, sb: Sandbox) -> cri.PodSandboxStats:
        config = sb.config
        stats = cri.PodSandboxStats()
        stats.attributes.id = sb.id
        stats.attributes.metadata.CopyFrom(config.metadata)
        stats.attributes.labels.update(config.labels)
        stats.attributes.annotations.update(config.annotations)
        now = time.time_ns()
        if sb.cgroup:
            cg = CgroupSet(sb.cgroup)
            fill_usage(self.cgroups, self._cpu_samples, sb.id, cg, stats.linux.cpu,
                       stats.linux.memory, now)
            count = self.cgroups.process_count(cg)
            if count is not None:
                stats.linux.process.timestamp = now
                stats.linux.process.process_count.value = count
        stats.linux.containers.extend(self._container_stats(c) for c in
                                      self.containers.values() if c.sandbox_id == sb.id)
        return stats

    async def pod_sandbox_stats(
        self, req: cri.PodSandboxStatsRequest
    ) -> cri.PodSandboxStatsResponse:
        return cri.PodSandboxStatsResponse(
            stats=self._sandbox_stats(self._sandbox(req.pod_sandbox_id)))

    async def list_pod_sandbox_stats(
        self, req: cri.ListPodSandboxStatsRequest
    ) -> cri.ListPodSandboxStatsResponse:
        flt = req.filter
        out = [self._sandbox_stats(sb) for sb in self.sandboxes.values()
               if (not flt.id or sb.id.startswith(flt.id))
               and filters.labels_match(flt.label_selector, sb.config.labels)]
        return cri.ListPodSandboxStatsResponse(stats=out)

    async def list_metric_descriptors(
        self, req: cri.ListMetricDescriptorsRequest
    ) -> cri.ListMetricDescriptorsResponse:
        return cri.ListMetricDescriptorsResponse()  # no extra metrics beyond the stats RPCs

    async def list_pod_sandbox_metrics(
        self, req: cri.ListPodSandboxMetricsRequest
    ) -> cri.ListPodSandboxMetricsResponse:
        return cri.ListPodSandboxMetricsResponse()

    # -- events --------------------------------------------------------------------
    def _event(self, c: Container, kind: cri.ContainerEventType.ValueType,
               removed: bool = False) -> cri.ContainerEventResponse:
        event = cri.ContainerEventResponse(container_id=c.id, container_event_type=kind,
                                           created_at=time.time_ns())
        sb = self.sandboxes.get(c.sandbox_id)
        if sb is not None:
            event.pod_sandbox_status.CopyFrom(self._sandbox_status(sb))
            for other in self.containers.values():
                if other.sandbox_id == sb.id and not (removed and other.id == c.id):
                    event.containers_statuses.append(self._container_status(other))
        return event

    def _publish(self, c: Container, kind: cri.ContainerEventType.ValueType,
                 removed: bool = False) -> None:
        if self.events.subscribers:  # an event carries every status of the pod: build it
            self.events.publish(self._event(c, kind, removed))  # only for a listener

    # -- images (list, status, pull, remove: DelegatedRPCs) ------------------------
    async def image_fs_info(self, req: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
        resp = await self.images.image_fs_info(req)
        used, inodes = await asyncio.to_thread(disk_usage, self.containers_dir)
        usage = cri.FilesystemUsage(timestamp=time.time_ns())
        usage.fs_id.mountpoint = str(self.containers_dir)
        usage.used_bytes.value = used
        usage.inodes_used.value = inodes
        resp.container_filesystems.append(usage)
        return resp


def _exit_code(returncode: int | None) -> int:
    code = returncode if returncode is not None else -1
    return 128 - code if code < 0 else code


def _holder_ready(pidfile: Path) -> int:
    """The holder's pid once its PID namespace exists (unshare has forked), else 0."""
    try:
        pid = int(pidfile.read_text().strip())
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().strip()
    except (OSError, ValueError):
        return 0
    return pid if children else 0


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _signal_number(name: str) -> int:
    if not name:
        return signal.SIGTERM
    if name.isdigit():
        return int(name)
    name = name.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        return signal.SIGTERM


def _wants_limits(res: cri.LinuxContainerResources) -> bool:
    return bool(res.cpu_quota > 0 or res.memory_limit_in_bytes > 0 or res.unified)



def _resolv_conf(dns: cri.DNSConfig) -> str:
    if not (dns.servers or dns.searches or dns.options):
        try:
            return Path("/etc/resolv.conf").read_text()
        except OSError:
            return ""
    lines = [f"nameserver {s}" for s in dns.servers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def _host_ip() -> str:
    import socket

    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outbound address
        return str(s.getsockname()[0])
    return "127.0.0.1"
