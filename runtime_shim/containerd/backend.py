"""The containerd backend: the CRI served by driving containerd's own gRPC API with runc.

containerd holds the state; the shim keeps only what containerd has no place
for (sandbox files, network namespace files, CNI results, log-writer pids)
under ``--root``. So a restarted shim re-adopts everything by listing
containerd's containers and tasks in its namespace:

* a **sandbox** is a containerd container (label ``io.pilothouse.kind=sandbox``)
  running the pause image; its task owns the pod's IPC/UTS/PID namespaces and
  joins the network namespace the shim made (``/run/netns/phc-<id>``) and
  wired through CNI. Its CRI config travels as a container extension.
* a **container** is a containerd container whose snapshot (overlayfs, parent =
  the image's top chain ID) is its rootfs and whose OCI spec the shim writes
  (:mod:`.ocispec`). Its task's stdout/stderr go to a ``binary://`` log writer
  (:mod:`.logger`) that the runc shim runs, so logs keep flowing while we
  are down. State: no task and no exit label → CREATED; a running task →
  RUNNING; when the task stops, the shim deletes it (the log writer drains)
  and records exit code, time and reason in the label ``io.pilothouse.exit``
  → EXITED.
* events: a subscription to ``/tasks/exit`` finalises exits as they happen
  and publishes CONTAINER_STOPPED; exits that happened while the shim was
  down are finalised at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
from google.protobuf import any_pb2
from google.protobuf.empty_pb2 import Empty
from google.protobuf.field_mask_pb2 import FieldMask

from pilothouse import __version__
from pilothouse.gen.containerd.events import task_pb2 as task_events
from pilothouse.gen.containerd.services.containers.v1 import containers_pb2 as containers
from pilothouse.gen.containerd.services.events.v1 import events_pb2 as events
from pilothouse.gen.containerd.services.leases.v1 import leases_pb2 as leases
from pilothouse.gen.containerd.services.snapshots.v1 import snapshots_pb2 as snapshots
from pilothouse.gen.containerd.services.tasks.v1 import tasks_pb2 as tasks
from pilothouse.gen.containerd.types import task_pb2 as task_types
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim import filters
from pilothouse.runtime_shim.common import DelegatedRPCs, disk_usage, fill_usage
from pilothouse.runtime_shim.containerd import ocispec
from pilothouse.runtime_shim.containerd.client import LEASE_HEADER, Client
from pilothouse.runtime_shim.containerd.cni import CNI, CNIError
from pilothouse.runtime_shim.containerd.images import (
    SNAPSHOTTER,
    ContainerdImages,
    Resolved,
    import_archive,
)
from pilothouse.runtime_shim.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RuntimeFailure,
    Unimplemented,
)
from pilothouse.runtime_shim.events import EventHub
from pilothouse.runtime_shim.images import oci
from pilothouse.runtime_shim.process import network
from pilothouse.runtime_shim.process.cgroups import Cgroups
from pilothouse.runtime_shim.spec import ProcessSpec, process_spec
from pilothouse.runtime_shim.stdio import follow_log, read_fd
from pilothouse.runtime_shim.streaming import StreamingServer, Streams

log = logging.getLogger(__name__)

NODE = cri.NamespaceMode.Value("NODE")
POD = cri.NamespaceMode.Value("POD")
CONTAINER = cri.NamespaceMode.Value("CONTAINER")
RUNTIME = "io.containerd.runc.v2"
KIND = "io.pilothouse.kind"
SANDBOX_OF = "io.pilothouse.sandbox"
EXIT = "io.pilothouse.exit"
STARTED = "io.pilothouse.started"
STATE = "io.pilothouse.state"
EXT_CONFIG = "io.pilothouse.config"
EXT_META = "io.pilothouse.meta"
EXEC_OUTPUT_LIMIT = 16 * 1024 * 1024
KILL_WAIT = 10.0


def _any(type_url: str, value: bytes) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url, value=value)


def _code(err: grpc.aio.AioRpcError) -> grpc.StatusCode:
    return err.code()


def _ts_ns(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000_000 + int(ts.nanos)


@dataclass
class SandboxRecord:
    id: str
    config: cri.PodSandboxConfig
    created_at: int
    netns: str = ""  # path of the network namespace file; "" = host network
    ip: str = ""
    runtime_handler: str = ""
    state: str = "ready"  # ready | notready (label, once stopped)


@dataclass
class ContainerRecord:
    id: str
    sandbox_id: str
    config: cri.ContainerConfig
    created_at: int
    image: str
    image_id: str
    image_ref: str
    log_path: str = ""
    cgroups_path: str = ""
    stop_signal: str = ""
    process: dict[str, Any] = field(default_factory=dict)  # the OCI process, for execs
    privileged: bool = False
    started_at: int = 0
    exit: dict[str, Any] | None = None  # exit_code, finished_at, reason, message


class ContainerdBackend(DelegatedRPCs[ContainerdImages]):
    name = "containerd"

    def __init__(self, *, root: Path, address: str, namespace: str = "pilothouse",
                 cni_bin_dir: str = "/usr/lib/cni", bridge: str = "pilothouse0",
                 pod_cidr: str = "10.88.0.0/16", cgroup_parent: str = "/pilothouse-containerd",
                 pause_image: str = oci.PAUSE_TAG, python: str = sys.executable,
                 cgroups: Cgroups | None = None) -> None:
        self.root = root
        self.address = address
        self.namespace = namespace
        # grpc.aio binds a channel to the running loop: both are made in start()
        self.client: Client
        self.images: ContainerdImages
        self.sandboxes_dir = root / "sandboxes"
        self.exec_dir = root / "exec"
        self.loggers_dir = root / "loggers"
        self.stdin_dir = root / "stdin"  # a FIFO per running container with a terminal stdin
        for d in (self.sandboxes_dir, self.exec_dir, self.loggers_dir, self.stdin_dir,
                  root / "bin"):
            d.mkdir(parents=True, exist_ok=True)
        self.cni = CNI(root=root / "cni", bin_dir=cni_bin_dir, bridge=bridge, subnet=pod_cidr)
        self.pod_cidr = pod_cidr
        self.cgroup_parent = cgroup_parent
        self.cgroups = cgroups or Cgroups(default_parent=cgroup_parent)
        self.pause_image = pause_image
        self.logger = root / "bin" / "ph-logger"
        self.logger.write_text(f"#!/bin/sh\nexec {python} -m "
                               "pilothouse.runtime_shim.containerd.logger \"$@\"\n")
        self.logger.chmod(0o755)
        self.events = EventHub()
        self.sandboxes: dict[str, SandboxRecord] = {}
        self.containers: dict[str, ContainerRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._exited: dict[str, asyncio.Event] = {}
        self._cpu_samples: dict[str, tuple[int, int]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._snapshot_root = ""
        self._runtime_error = ""
        self._tasks: set[asyncio.Task[bool]] = set()
        self.streaming: StreamingServer | None = None  # set by the server when it runs one
        self._lease_id = ""
        self._leased: tuple[tuple[str, str], ...] = ()

    # -- lifecycle of the backend --------------------------------------------------
    async def start(self) -> None:
        self.client = Client(self.address, self.namespace)
        self.images = ContainerdImages(self.client, self.root, self._image_in_use)
        try:
            await self.client.version.Version(Empty())
            await self.client.ensure_namespace()
        except grpc.aio.AioRpcError as err:
            raise OSError(f"containerd at {self.address} does not answer: "
                          f"{err.details()}") from None
        self._lease_id = f"pilothouse-shim-{self.namespace}"
        try:
            await self.client.leases.Create(leases.CreateRequest(id=self._lease_id),
                                            metadata=self.client.md)
        except grpc.aio.AioRpcError as err:
            if _code(err) != grpc.StatusCode.ALREADY_EXISTS:
                raise
        self._leased = (*self.client.md, (LEASE_HEADER, self._lease_id))
        await self._load()
        self._watcher = asyncio.create_task(self._watch_exits())
        await self._ensure_pause_image()
        await self._probe_snapshot_root()
        for c in list(self.containers.values()):  # exits that happened while we were down
            await self._refresh(c)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        self.events.close()
        await self.client.close()

    async def _ensure_pause_image(self) -> None:
        if await self.images.resolve(self.pause_image) is not None:
            return
        if not oci.DEFAULT_BUSYBOX.exists():
            self._runtime_error = (f"the pause image {self.pause_image} is not in containerd "
                                   f"and {oci.DEFAULT_BUSYBOX} (busybox-static) is missing to "
                                   "build it; import one with pilothouse image import")
            return
        with tempfile.TemporaryDirectory(dir=self.root) as tmp:
            archive = Path(tmp) / "pause.tar"
            await asyncio.to_thread(oci.write_oci_layout, archive,
                                    [oci.build_pause(self.pause_image)])
            await import_archive(self.client, archive, staging=Path(tmp))

    async def _probe_snapshot_root(self) -> None:
        """Where the snapshotter keeps its files (for ImageFsInfo), from a view's mounts."""
        pause = await self.images.resolve(self.pause_image)
        if pause is None or not pause.chain_id:
            return
        key = f"probe-{secrets.token_hex(6)}"
        with contextlib.suppress(grpc.aio.AioRpcError):
            view = await self.client.snapshots.View(snapshots.ViewSnapshotRequest(
                snapshotter=SNAPSHOTTER, key=key, parent=pause.chain_id),
                metadata=self.client.md)
            for m in view.mounts:
                paths = [m.source] + [o.split("=", 1)[1].split(":")[0] for o in m.options
                                      if o.startswith(("lowerdir=", "upperdir="))]
                for path in paths:
                    if "/snapshots/" in path:
                        self._snapshot_root = path.split("/snapshots/")[0]
            await self.client.snapshots.Remove(snapshots.RemoveSnapshotRequest(
                snapshotter=SNAPSHOTTER, key=key), metadata=self.client.md)

    async def _load(self) -> None:
        listed = await self.client.containers.List(containers.ListContainersRequest(
            filters=[f"labels.\"{KIND}\""]), metadata=self.client.md)
        for c in listed.containers:
            try:
                meta = json.loads(c.extensions[EXT_META].value)
                if c.labels.get(KIND) == "sandbox":
                    self.sandboxes[c.id] = SandboxRecord(
                        id=c.id,
                        config=cri.PodSandboxConfig.FromString(c.extensions[EXT_CONFIG].value),
                        created_at=meta["created_at"],
                        netns=meta.get("netns", ""), ip=meta.get("ip", ""),
                        runtime_handler=meta.get("runtime_handler", ""),
                        state=c.labels.get(STATE, "ready"))
                else:
                    self.containers[c.id] = ContainerRecord(
                        id=c.id, sandbox_id=c.labels[SANDBOX_OF],
                        config=cri.ContainerConfig.FromString(c.extensions[EXT_CONFIG].value),
                        created_at=meta["created_at"], image=meta["image"],
                        image_id=meta["image_id"], image_ref=meta["image_ref"],
                        log_path=meta.get("log_path", ""),
                        cgroups_path=meta.get("cgroups_path", ""),
                        stop_signal=meta.get("stop_signal", ""),
                        process=meta.get("process", {}),
                        privileged=meta.get("privileged", False),
                        started_at=int(c.labels.get(STARTED, "0") or 0),
                        exit=json.loads(c.labels[EXIT]) if EXIT in c.labels else None)
            except (KeyError, ValueError) as err:
                log.warning("containerd container %s is not one of ours as expected: %s",
                            c.id, err)

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def _label(self, cid: str, key: str, value: str) -> None:
        await self.client.containers.Update(containers.UpdateContainerRequest(
            container=containers.Container(id=cid, labels={key: value}),
            update_mask=FieldMask(paths=[f"labels.{key}"])), metadata=self.client.md)

    # -- runtime -------------------------------------------------------------------
    async def version(self, req: cri.VersionRequest) -> cri.VersionResponse:
        v = await self.client.version.Version(Empty())
        return cri.VersionResponse(version="0.1.0", runtime_name="pilothouse-containerd",
                                   runtime_version=f"{__version__} (containerd {v.version})",
                                   runtime_api_version="v1")

    async def status(self, req: cri.StatusRequest) -> cri.StatusResponse:
        runtime = cri.RuntimeCondition(type="RuntimeReady", status=True)
        try:
            await self.client.version.Version(Empty(), timeout=5)
        except grpc.aio.AioRpcError as err:
            runtime.status, runtime.reason = False, "ContainerdUnreachable"
            runtime.message = f"containerd at {self.address}: {err.details()}"
        if runtime.status and self._runtime_error:
            runtime.status, runtime.reason = False, "NoPauseImage"
            runtime.message = self._runtime_error
        net = cri.RuntimeCondition(type="NetworkReady", status=True)
        missing = self.cni.ready()
        if missing:
            net.status, net.reason, net.message = False, "NetworkPluginNotReady", missing
        resp = cri.StatusResponse(status=cri.RuntimeStatus(conditions=[runtime, net]))
        resp.runtime_handlers.add(name="")
        if req.verbose:
            resp.info["config"] = json.dumps({
                "root": str(self.root), "containerd": self.address,
                "namespace": self.namespace, "cni": self.cni.config,
                "cgroupParent": self.cgroup_parent, "pauseImage": self.pause_image})
        return resp

    async def runtime_config(self, req: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
        resp = cri.RuntimeConfigResponse()
        resp.linux.cgroup_driver = cri.CgroupDriver.Value("CGROUPFS")
        return resp

    async def update_runtime_config(
        self, req: cri.UpdateRuntimeConfigRequest
    ) -> cri.UpdateRuntimeConfigResponse:
        cidr = req.runtime_config.network_config.pod_cidr
        if cidr and cidr.split(",")[0] != self.pod_cidr:
            log.info("kubelet pod CIDR %s differs from the CNI subnet %s; keeping %s",
                     cidr, self.pod_cidr, self.pod_cidr)
        return cri.UpdateRuntimeConfigResponse()

    # -- tasks ---------------------------------------------------------------------
    async def _task(self, cid: str) -> task_types.Process | None:
        try:
            got = await self.client.tasks.Get(tasks.GetRequest(container_id=cid),
                                              metadata=self.client.md)
        except grpc.aio.AioRpcError as err:
            if _code(err) == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return got.process

    async def _kill_task(self, cid: str, sig: int, *, all_: bool = False) -> None:
        try:
            await self.client.tasks.Kill(tasks.KillRequest(container_id=cid, signal=sig,
                                                           all=all_), metadata=self.client.md)
        except grpc.aio.AioRpcError as err:
            if _code(err) not in (grpc.StatusCode.NOT_FOUND,
                                  grpc.StatusCode.FAILED_PRECONDITION):
                raise

    async def _wait_task(self, cid: str, within: float | None) -> bool:
        """True once the task has exited (or is gone), False on timeout."""
        # the deadline is ours (asyncio), not the call's: containerd answers a call whose
        # deadline passed with UNKNOWN "context deadline exceeded", racing our own status
        try:
            await asyncio.wait_for(self.client.tasks.Wait(tasks.WaitRequest(container_id=cid),
                                                          metadata=self.client.md), within)
        except TimeoutError:
            return False
        except grpc.aio.AioRpcError as err:
            if _code(err) != grpc.StatusCode.NOT_FOUND:
                raise
        return True

    async def _delete_task(self, cid: str) -> tasks.DeleteResponse | None:
        try:
            return await self.client.tasks.Delete(tasks.DeleteTaskRequest(container_id=cid),
                                                  metadata=self.client.md)
        except grpc.aio.AioRpcError as err:
            if _code(err) == grpc.StatusCode.NOT_FOUND:
                return None
            if await self._task(cid) is None:  # its shim went away with it: gone is deleted
                log.warning("deleting task %s: %s (the task is gone)", cid, err.details())
                return None
            raise

    async def _delete_container(self, cid: str) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.client.containers.Delete(containers.DeleteContainerRequest(id=cid),
                                                metadata=self.client.md)
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.client.snapshots.Remove(snapshots.RemoveSnapshotRequest(
                snapshotter=SNAPSHOTTER, key=cid), metadata=self.client.md)
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.client.leases.DeleteResource(leases.DeleteResourceRequest(
                id=self._lease_id, resource=leases.Resource(
                    id=cid, type=f"snapshots/{SNAPSHOTTER}")), metadata=self.client.md)

    async def _prepare_rootfs(self, key: str, image: Resolved) -> list[Any]:
        try:
            # under the shim's lease: containerd's garbage collector would otherwise remove
            # the snapshot before the container that references it exists
            prepared = await self.client.snapshots.Prepare(snapshots.PrepareSnapshotRequest(
                snapshotter=SNAPSHOTTER, key=key, parent=image.chain_id),
                metadata=self._leased)
        except grpc.aio.AioRpcError as err:
            raise RuntimeFailure(f"cannot prepare a snapshot of {image.id}: "
                                 f"{err.details()}") from None
        if not self._snapshot_root:
            for m in prepared.mounts:
                for opt in m.options:
                    if opt.startswith("upperdir="):
                        self._snapshot_root = opt.split("=", 1)[1].split("/snapshots/")[0]
        return list(prepared.mounts)

    async def _mounts(self, key: str) -> list[Any]:
        got = await self.client.snapshots.Mounts(snapshots.MountsRequest(
            snapshotter=SNAPSHOTTER, key=key), metadata=self.client.md)
        return list(got.mounts)

    async def _create_container(self, cid: str, image: Resolved, spec: dict[str, Any],
                                labels: dict[str, str], config_bytes: bytes,
                                meta: dict[str, Any]) -> None:
        container = containers.Container(
            id=cid, labels=labels, image=(image.names or [image.id])[0],
            runtime=containers.Container.Runtime(name=RUNTIME),
            spec=_any(ocispec.SPEC_TYPE_URL, json.dumps(spec).encode()),
            snapshotter=SNAPSHOTTER, snapshot_key=cid)
        kind = "PodSandboxConfig" if labels[KIND] == "sandbox" else "ContainerConfig"
        container.extensions[EXT_CONFIG].CopyFrom(_any(
            f"type.googleapis.com/runtime.v1.{kind}", config_bytes))
        container.extensions[EXT_META].CopyFrom(_any("pilothouse.io/json",
                                                     json.dumps(meta).encode()))
        await self.client.containers.Create(containers.CreateContainerRequest(
            container=container), metadata=self.client.md)

    # -- sandboxes -----------------------------------------------------------------
    def _sandbox(self, sandbox_id: str) -> SandboxRecord:
        sb = self.sandboxes.get(sandbox_id)
        if sb is None:
            hits = [s for s in self.sandboxes.values() if s.id.startswith(sandbox_id)]
            if len(hits) != 1 or not sandbox_id:
                raise NotFound(f"pod sandbox {sandbox_id!r} not found")
            sb = hits[0]
        return sb

    def _pod_cgroup(self, config: cri.PodSandboxConfig, sid: str) -> str:
        return config.linux.cgroup_parent or f"{self.cgroup_parent}/{sid}"

    async def run_pod_sandbox(self, req: cri.RunPodSandboxRequest) -> cri.RunPodSandboxResponse:
        if req.runtime_handler not in ("", "runc"):
            raise InvalidArgument(f"runtime handler {req.runtime_handler!r} is not configured "
                                  "(the containerd backend has runc as its only handler)")
        config = req.config
        for other in self.sandboxes.values():
            m = other.config.metadata
            if (m.name, m.namespace, m.uid, m.attempt) == (
                    config.metadata.name, config.metadata.namespace, config.metadata.uid,
                    config.metadata.attempt) and other.state == "ready":
                raise FailedPrecondition(f"sandbox {m.namespace}/{m.name} attempt {m.attempt} "
                                         f"already exists as {other.id}")
        pause = await self.images.resolve(self.pause_image)
        if pause is None:
            raise RuntimeFailure(f"the pause image {self.pause_image} is not in containerd: "
                                 f"{self._runtime_error or 'import it'}")
        opts = config.linux.security_context.namespace_options
        host_network = opts.network == NODE
        sb = SandboxRecord(id=secrets.token_hex(32), config=config, created_at=time.time_ns(),
                           runtime_handler=req.runtime_handler)
        directory = self.sandboxes_dir / sb.id
        directory.mkdir()
        hostname = config.hostname or config.metadata.name
        try:
            if not host_network:
                sb.netns = str(network.NETNS_DIR / f"phc-{sb.id[:12]}")
                await network.create_namespaces(netns=sb.netns, ipc=None, uts=None,
                                                hostname=hostname[:63])
                ports = [{"hostPort": p.host_port, "containerPort": p.container_port,
                          "protocol": cri.Protocol.Name(p.protocol).lower(),
                          **({"hostIP": p.host_ip} if p.host_ip else {})}
                         for p in config.port_mappings if p.host_port > 0]
                sb.ip = await self.cni.add(sb.id, sb.netns, pod_name=config.metadata.name,
                                           pod_namespace=config.metadata.namespace,
                                           pod_uid=config.metadata.uid, port_mappings=ports)
            else:
                sb.ip = _host_ip()
            _write_pod_files(directory, config, sb.ip, hostname, host_network)
            mounts = await self._prepare_rootfs(sb.id, pause)
            proc = process_spec(rootfs=Path("/nonexistent"), entrypoint=pause.config.entrypoint,
                                cmd=pause.config.cmd, image_env=pause.config.env,
                                image_working_dir=pause.config.working_dir, image_user="",
                                config=cri.ContainerConfig())
            ns = ocispec.Namespaces(
                pid="" if opts.pid != NODE else None, ipc="" if opts.ipc != NODE else None,
                uts="" if not host_network else None,
                network=sb.netns if not host_network else None)
            spec = ocispec.runtime_spec(ocispec.SpecInput(
                process=proc, namespaces=ns,
                cgroups_path=f"{self._pod_cgroup(config, sb.id)}/{sb.id}",
                hostname=hostname[:63] if not host_network else "",
                binds=_pod_binds(directory, [], host_network),
                resources=config.linux.resources if config.linux.HasField("resources")
                else None,
                annotations={"io.kubernetes.cri.container-type": "sandbox",
                             "io.kubernetes.cri.sandbox-id": sb.id}))
            meta = {"created_at": sb.created_at, "netns": sb.netns, "ip": sb.ip,
                    "runtime_handler": sb.runtime_handler}
            await self._create_container(sb.id, pause, spec, {KIND: "sandbox"},
                                         config.SerializeToString(), meta)
            await self.client.tasks.Create(tasks.CreateTaskRequest(
                container_id=sb.id, rootfs=mounts), metadata=self.client.md)
            await self.client.tasks.Start(tasks.StartRequest(container_id=sb.id),
                                          metadata=self.client.md)
        except BaseException as err:
            await self._teardown_sandbox(sb)
            await self._delete_container(sb.id)
            shutil.rmtree(directory, ignore_errors=True)
            if isinstance(err, (CNIError, network.NetworkError, OSError)):
                raise RuntimeFailure(f"cannot create pod sandbox: {err}") from None
            if isinstance(err, grpc.aio.AioRpcError):
                raise RuntimeFailure(f"cannot create pod sandbox: containerd: "
                                     f"{err.details()}") from None
            raise
        self.sandboxes[sb.id] = sb
        return cri.RunPodSandboxResponse(pod_sandbox_id=sb.id)

    async def _teardown_sandbox(self, sb: SandboxRecord) -> None:
        """Kill the pause task and release the network; idempotent."""
        await self._kill_task(sb.id, signal.SIGKILL, all_=True)
        await self._wait_task(sb.id, KILL_WAIT)
        await self._delete_task(sb.id)
        if sb.netns:
            with contextlib.suppress(CNIError):
                await self.cni.delete(sb.id, sb.netns)
            await network.remove_namespaces([sb.netns])

    async def stop_pod_sandbox(
        self, req: cri.StopPodSandboxRequest
    ) -> cri.StopPodSandboxResponse:
        try:
            sb = self._sandbox(req.pod_sandbox_id)
        except NotFound:
            return cri.StopPodSandboxResponse()
        async with self._lock(sb.id):
            for c in [c for c in self.containers.values() if c.sandbox_id == sb.id]:
                # under the container's lock: the exit watcher must not delete its task
                # at the same time (two concurrent deletes can take the runc shim down)
                async with self._lock(c.id):
                    await self._stop(c, grace=0)
            await self._teardown_sandbox(sb)
            if sb.state != "notready":
                await self._label(sb.id, STATE, "notready")
                sb.state = "notready"
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
                async with self._lock(c.id):
                    await self._remove(c)
                self._locks.pop(c.id, None)
            await self._delete_container(sb.id)
            if not sb.config.linux.cgroup_parent:
                self.cgroups.remove(self.cgroups.paths_for(self._pod_cgroup(sb.config, sb.id)))
            shutil.rmtree(self.sandboxes_dir / sb.id, ignore_errors=True)
            self.sandboxes.pop(sb.id, None)
        self._locks.pop(sb.id, None)
        return cri.RemovePodSandboxResponse()

    async def _sandbox_ready(self, sb: SandboxRecord) -> bool:
        if sb.state != "ready":
            return False
        t = await self._task(sb.id)
        return t is not None and t.status == task_types.RUNNING

    async def _sandbox_status(self, sb: SandboxRecord) -> cri.PodSandboxStatus:
        config = sb.config
        ready = await self._sandbox_ready(sb)
        status = cri.PodSandboxStatus(
            id=sb.id, metadata=config.metadata, created_at=sb.created_at,
            state=cri.SANDBOX_READY if ready else cri.SANDBOX_NOTREADY,
            labels=config.labels, annotations=config.annotations,
            runtime_handler=sb.runtime_handler)
        if ready:
            status.network.ip = sb.ip
        status.linux.namespaces.options.CopyFrom(config.linux.security_context.namespace_options)
        return status

    async def pod_sandbox_status(
        self, req: cri.PodSandboxStatusRequest
    ) -> cri.PodSandboxStatusResponse:
        sb = self._sandbox(req.pod_sandbox_id)
        resp = cri.PodSandboxStatusResponse(status=await self._sandbox_status(sb),
                                            timestamp=time.time_ns())
        if req.verbose:
            t = await self._task(sb.id)
            resp.info["info"] = json.dumps({"netns": sb.netns, "pid": t.pid if t else 0,
                                            "cgroup": self._pod_cgroup(sb.config, sb.id)})
        for c in self.containers.values():
            if c.sandbox_id == sb.id:
                resp.containers_statuses.append(await self._container_status(c))
        return resp

    async def list_pod_sandbox(self, req: cri.ListPodSandboxRequest) -> cri.ListPodSandboxResponse:
        running = await self._running_tasks()
        items = []
        for sb in list(self.sandboxes.values()):
            ready = sb.state == "ready" and sb.id in running
            item = cri.PodSandbox(id=sb.id, metadata=sb.config.metadata,
                                  state=cri.SANDBOX_READY if ready else cri.SANDBOX_NOTREADY,
                                  created_at=sb.created_at, labels=sb.config.labels,
                                  annotations=sb.config.annotations,
                                  runtime_handler=sb.runtime_handler)
            if filters.sandbox_matches(req.filter if req.HasField("filter") else None, item):
                items.append(item)
        return cri.ListPodSandboxResponse(items=items)

    async def _running_tasks(self) -> dict[str, task_types.Process]:
        listed = await self.client.tasks.List(tasks.ListTasksRequest(), metadata=self.client.md)
        return {t.container_id or t.id: t for t in listed.tasks if t.status == task_types.RUNNING}

    # -- containers ----------------------------------------------------------------
    def _container(self, container_id: str) -> ContainerRecord:
        c = self.containers.get(container_id)
        if c is None:
            hits = [x for x in self.containers.values() if x.id.startswith(container_id)]
            if len(hits) != 1 or not container_id:
                raise NotFound(f"container {container_id!r} not found")
            c = hits[0]
        return c

    async def _image_in_use(self, image_id: str) -> bool:
        return any(c.image_id == image_id for c in self.containers.values())

    async def create_container(
        self, req: cri.CreateContainerRequest
    ) -> cri.CreateContainerResponse:
        sb = self._sandbox(req.pod_sandbox_id)
        if sb.state != "ready":
            raise FailedPrecondition(f"pod sandbox {sb.id} is not ready")
        config = req.config
        image = await self.images.resolve(config.image.image)
        if image is None:
            raise NotFound(f"image {config.image.image!r} is not present; pull it first")
        for existing in self.containers.values():
            m = existing.config.metadata
            if existing.sandbox_id == sb.id and (m.name, m.attempt) == (
                    config.metadata.name, config.metadata.attempt):
                raise FailedPrecondition(f"container {m.name} attempt {m.attempt} already "
                                         f"exists in sandbox {sb.id} as {existing.id}")
        sec = config.linux.security_context
        opts = sec.namespace_options
        if opts.pid == cri.NamespaceMode.Value("TARGET"):
            raise Unimplemented("PID namespace mode TARGET is not supported by the "
                                "containerd backend")
        for mount in config.mounts:
            if not _exists(mount.host_path):
                raise InvalidArgument(f"mount source {mount.host_path} does not exist")
        pause = await self._task(sb.id)
        if pause is None or pause.status != task_types.RUNNING:
            raise FailedPrecondition(f"pod sandbox {sb.id} has no running pause task")
        cid = secrets.token_hex(32)
        sconfig = sb.config
        log_path = ""
        if config.log_path and sconfig.log_directory:
            log_path = os.path.join(sconfig.log_directory, config.log_path)
        elif config.log_path.startswith("/"):
            log_path = config.log_path
        host_network = sconfig.linux.security_context.namespace_options.network == NODE
        mounts = await self._prepare_rootfs(cid, image)
        try:
            needs_lookup = bool(image.config.user or sec.run_as_username
                                or sec.HasField("run_as_user"))
            if needs_lookup:
                proc = await self._with_rootfs(mounts, lambda root: process_spec(
                    rootfs=root, entrypoint=image.config.entrypoint, cmd=image.config.cmd,
                    image_env=image.config.env, image_working_dir=image.config.working_dir,
                    image_user=image.config.user, config=config))
            else:
                proc = process_spec(rootfs=Path("/nonexistent"),
                                    entrypoint=image.config.entrypoint, cmd=image.config.cmd,
                                    image_env=image.config.env,
                                    image_working_dir=image.config.working_dir,
                                    image_user="", config=config)
            ns = ocispec.Namespaces(
                pid={NODE: None, POD: f"/proc/{pause.pid}/ns/pid"}.get(opts.pid, ""),
                ipc=f"/proc/{pause.pid}/ns/ipc" if sconfig.linux.security_context
                .namespace_options.ipc != NODE else None,
                uts=f"/proc/{pause.pid}/ns/uts" if not host_network else None,
                network=sb.netns if not host_network else None)
            cgroups_path = f"{self._pod_cgroup(sconfig, sb.id)}/{cid}"
            spec = ocispec.runtime_spec(ocispec.SpecInput(
                process=proc, namespaces=ns, cgroups_path=cgroups_path,
                binds=_pod_binds(self.sandboxes_dir / sb.id, config.mounts, host_network),
                resources=config.linux.resources, terminal=config.tty,
                privileged=sec.privileged, readonly_rootfs=sec.readonly_rootfs,
                no_new_privs=sec.no_new_privs,
                annotations={"io.kubernetes.cri.container-type": "container",
                             "io.kubernetes.cri.sandbox-id": sb.id}))
            c = ContainerRecord(
                id=cid, sandbox_id=sb.id, config=config, created_at=time.time_ns(),
                image=config.image.image, image_id=image.id,
                image_ref=image.repo_digests[0] if image.repo_digests else image.id,
                log_path=log_path, cgroups_path=cgroups_path,
                stop_signal=image.config.stop_signal, process=spec["process"],
                privileged=sec.privileged)
            meta = {"created_at": c.created_at, "image": c.image, "image_id": c.image_id,
                    "image_ref": c.image_ref, "log_path": log_path,
                    "cgroups_path": cgroups_path, "stop_signal": c.stop_signal,
                    "process": c.process, "privileged": c.privileged}
            await self._create_container(cid, image, spec,
                                         {KIND: "container", SANDBOX_OF: sb.id},
                                         config.SerializeToString(), meta)
        except BaseException as err:
            await self._delete_container(cid)
            if isinstance(err, grpc.aio.AioRpcError):
                raise RuntimeFailure(f"cannot create container: containerd: "
                                     f"{err.details()}") from None
            raise
        self.containers[cid] = c
        await self._publish(c, cri.CONTAINER_CREATED_EVENT)
        return cri.CreateContainerResponse(container_id=cid)

    async def _with_rootfs(self, mounts: list[Any], fn: Any) -> ProcessSpec:
        """Run ``fn(path)`` with the snapshot mounted read-only (to read /etc/passwd)."""
        target = tempfile.mkdtemp(prefix="ph-rootfs-", dir=self.root)
        try:
            for m in mounts:
                options = [o for o in m.options if o not in ("rw",)]
                argv = ["mount", "-t", m.type, "-o", ",".join([*options, "ro"]), m.source,
                        target]
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
                _, err = await proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeFailure(f"cannot mount the container's rootfs to look up "
                                         f"its user: {err.decode(errors='replace').strip()}")
            try:
                result: ProcessSpec = fn(Path(target))
            finally:
                umount = await asyncio.create_subprocess_exec(
                    "umount", "-l", target, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL)
                await umount.wait()
            return result
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(target)

    async def start_container(self, req: cri.StartContainerRequest) -> cri.StartContainerResponse:
        c = self._container(req.container_id)
        async with self._lock(c.id):
            state = await self._state(c)
            if state != cri.CONTAINER_CREATED:
                raise FailedPrecondition(f"container {c.id} is "
                                         f"{cri.ContainerState.Name(state)}, not CREATED")
            sb = self.sandboxes.get(c.sandbox_id)
            if sb is None or sb.state != "ready":
                raise FailedPrecondition(f"pod sandbox {c.sandbox_id} is not ready")
            stdout = ""
            if c.log_path:
                os.makedirs(os.path.dirname(c.log_path), exist_ok=True)
                stdout = (f"binary://{self.logger}?log={quote(c.log_path, safe='/')}"
                          f"&pids={quote(str(self.loggers_dir), safe='/')}")
            elif c.config.tty:
                # containerd's shim copies a terminal to an output it must have: without
                # a log, the log writer drains it to nowhere
                stdout = f"binary://{self.logger}?pids={quote(str(self.loggers_dir), safe='/')}"
            stdin = self._make_stdin_fifo(c)
            try:
                mounts = await self._mounts(c.id)
                await self.client.tasks.Create(tasks.CreateTaskRequest(
                    container_id=c.id, rootfs=mounts, stdin=stdin, stdout=stdout,
                    stderr=stdout, terminal=c.config.tty), metadata=self.client.md)
                self._exited[c.id] = asyncio.Event()
                started_at = time.time_ns()  # before: a fast exit must not precede it
                await self.client.tasks.Start(tasks.StartRequest(container_id=c.id),
                                              metadata=self.client.md)
            except grpc.aio.AioRpcError as err:
                message = err.details() or str(err.code())
                await self._delete_task(c.id)
                await self._record_exit(c, {"exit_code": 128, "finished_at": time.time_ns(),
                                            "reason": "StartError", "message": message})
                raise RuntimeFailure(f"failed to start container {c.id}: {message}") from None
            c.started_at = started_at
            await self._label(c.id, STARTED, str(c.started_at))
            await self._publish(c, cri.CONTAINER_STARTED_EVENT)
        return cri.StartContainerResponse()

    def _make_stdin_fifo(self, c: ContainerRecord) -> str:
        """The stdin FIFO of a container created with stdin and a terminal, else "".

        containerd's runc shim holds both ends of it while the task lives (it copies
        the FIFO into the console), so attaches come and go without the container
        seeing end-of-file. Without a terminal the shim wires stdin only when it copies
        the output itself, which a ``binary://`` log writer rules out: such containers
        get no stdin (``attach`` says so)."""
        if not (c.config.stdin and c.config.tty):
            return ""
        path = self.stdin_dir / c.id
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a FIFO of an earlier task may hold unread input
        os.mkfifo(path, 0o600)
        return str(path)

    async def _record_exit(self, c: ContainerRecord, doc: dict[str, Any]) -> None:
        await self._label(c.id, EXIT, json.dumps(doc))
        c.exit = doc
        event = self._exited.get(c.id)
        if event is not None:
            event.set()

    def _oom_killed(self, c: ContainerRecord) -> bool:
        cg = self.cgroups.paths_for(c.cgroups_path)
        path = self.cgroups.oom_events_file(cg)
        with contextlib.suppress(OSError, ValueError):
            for line in Path(path).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        return False

    async def _finalize(self, c: ContainerRecord) -> bool:
        """If its task has stopped: delete it (the log writer drains) and record the exit.
        True when the container is now EXITED."""
        if c.exit is not None:
            return True
        t = await self._task(c.id)
        if t is None or t.status != task_types.STOPPED:
            return False
        oom = t.exit_status == 137 and self._oom_killed(c)
        deleted = await self._delete_task(c.id)
        code = deleted.exit_status if deleted is not None else t.exit_status
        finished = _ts_ns((deleted or t).exited_at) or time.time_ns()
        reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        await self._record_exit(c, {"exit_code": int(code), "finished_at": finished,
                                    "reason": reason, "message": ""})
        for leftover in (self.loggers_dir / c.id, self.stdin_dir / c.id):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        return True

    async def _refresh(self, c: ContainerRecord) -> bool:
        """Finalise a stopped task under the container's lock; True if it just exited."""
        if c.exit is not None:
            return False
        async with self._lock(c.id):
            if c.exit is not None or c.id not in self.containers:
                return False
            try:
                exited = await self._finalize(c)
            except grpc.aio.AioRpcError as err:
                log.warning("finalising container %s: %s", c.id, err.details())
                return False
            if exited:
                await self._publish(c, cri.CONTAINER_STOPPED_EVENT)
        return exited

    async def _state(self, c: ContainerRecord) -> cri.ContainerState.ValueType:
        if c.exit is not None:
            return cri.CONTAINER_EXITED
        t = await self._task(c.id)
        if t is None:
            return cri.CONTAINER_CREATED
        if t.status == task_types.STOPPED:
            return cri.CONTAINER_EXITED
        if t.status in (task_types.RUNNING, task_types.PAUSED, task_types.PAUSING):
            return cri.CONTAINER_RUNNING
        if t.status == task_types.CREATED:
            return cri.CONTAINER_CREATED
        return cri.CONTAINER_UNKNOWN

    async def _watch_exits(self) -> None:
        """Finalise exits as containerd reports them; resubscribe if the stream breaks."""
        ns = self.namespace
        while True:
            try:
                stream = self.client.events.Subscribe(events.SubscribeRequest(filters=[
                    f'namespace=={ns},topic=="/tasks/exit"']))
                async for envelope in stream:
                    exit_event = task_events.TaskExit.FromString(envelope.event.value)
                    if exit_event.id and exit_event.id != exit_event.container_id:
                        continue  # an exec's process
                    c = self.containers.get(exit_event.container_id)
                    if c is not None:
                        task = asyncio.create_task(self._refresh(c))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as err:
                log.warning("containerd event stream ended: %s; resubscribing", err.details())
                await asyncio.sleep(1)
                for c in list(self.containers.values()):
                    await self._refresh(c)

    async def stop_container(self, req: cri.StopContainerRequest) -> cri.StopContainerResponse:
        try:
            c = self._container(req.container_id)
        except NotFound:
            return cri.StopContainerResponse()
        async with self._lock(c.id):
            await self._stop(c, grace=req.timeout)
        return cri.StopContainerResponse()

    async def _stop(self, c: ContainerRecord, *, grace: int) -> None:
        if c.exit is not None:
            return
        t = await self._task(c.id)
        if t is None:  # never started: it can no longer be
            await self._record_exit(c, {"exit_code": 0, "finished_at": time.time_ns(),
                                        "reason": "Completed",
                                        "message": "stopped before it was started"})
            return
        if t.status != task_types.STOPPED:
            if grace > 0:
                await self._kill_task(c.id, _signal_number(c.stop_signal))
                await self._wait_task(c.id, grace)
            if (await self._task(c.id) or t).status != task_types.STOPPED:
                await self._kill_task(c.id, signal.SIGKILL, all_=True)
                if not await self._wait_task(c.id, KILL_WAIT):
                    raise DeadlineExceeded(f"container {c.id} did not exit after SIGKILL")
        await self._finalize(c)
        await self._publish(c, cri.CONTAINER_STOPPED_EVENT)

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

    async def _remove(self, c: ContainerRecord) -> None:
        if c.id not in self.containers:
            return
        await self._stop(c, grace=0)
        await self._delete_container(c.id)
        self.containers.pop(c.id, None)
        self._exited.pop(c.id, None)
        self._cpu_samples.pop(c.id, None)
        await self._publish(c, cri.CONTAINER_DELETED_EVENT, removed=True)

    async def _container_status(self, c: ContainerRecord) -> cri.ContainerStatus:
        await self._refresh(c)
        state = await self._state(c)
        if state == cri.CONTAINER_EXITED and c.exit is None:
            # it stopped between the two looks: record its exit before reporting it
            await self._refresh(c)
            state = await self._state(c)
        config = c.config
        status = cri.ContainerStatus(
            id=c.id, metadata=config.metadata, state=state, created_at=c.created_at,
            started_at=c.started_at, image=cri.ImageSpec(image=c.image),
            image_ref=c.image_ref, image_id=c.image_id, labels=config.labels,
            annotations=config.annotations, mounts=config.mounts, log_path=c.log_path)
        if c.exit is not None:
            status.exit_code = int(c.exit.get("exit_code", 0))
            status.finished_at = int(c.exit.get("finished_at", 0))
            status.reason = c.exit.get("reason", "")
            status.message = c.exit.get("message", "")
        status.resources.linux.CopyFrom(config.linux.resources)
        return status

    async def list_containers(self, req: cri.ListContainersRequest) -> cri.ListContainersResponse:
        listed = await self.client.tasks.List(tasks.ListTasksRequest(), metadata=self.client.md)
        by_id = {t.container_id or t.id: t for t in listed.tasks}
        out = []
        flt = req.filter if req.HasField("filter") else None
        for c in list(self.containers.values()):
            t = by_id.get(c.id)
            if c.exit is not None or (t is not None and t.status == task_types.STOPPED):
                state = cri.CONTAINER_EXITED
            elif t is None:
                state = cri.CONTAINER_CREATED
            else:
                state = cri.CONTAINER_RUNNING
            item = cri.Container(
                id=c.id, pod_sandbox_id=c.sandbox_id, metadata=c.config.metadata,
                image=cri.ImageSpec(image=c.image), image_ref=c.image_ref, image_id=c.image_id,
                state=state, created_at=c.created_at, labels=c.config.labels,
                annotations=c.config.annotations)
            if filters.container_matches(flt, item):
                out.append(item)
        return cri.ListContainersResponse(containers=out)

    async def container_status(
        self, req: cri.ContainerStatusRequest
    ) -> cri.ContainerStatusResponse:
        c = self._container(req.container_id)
        resp = cri.ContainerStatusResponse(status=await self._container_status(c))
        if req.verbose:
            t = await self._task(c.id)
            resp.info["info"] = json.dumps({"pid": t.pid if t else 0,
                                            "cgroupsPath": c.cgroups_path,
                                            "process": c.process})
        return resp

    async def update_container_resources(
        self, req: cri.UpdateContainerResourcesRequest
    ) -> cri.UpdateContainerResourcesResponse:
        c = self._container(req.container_id)
        resources = ocispec.resources_doc(req.linux)
        resources.pop("devices", None)
        if await self._state(c) == cri.CONTAINER_RUNNING:
            try:
                await self.client.tasks.Update(tasks.UpdateTaskRequest(
                    container_id=c.id, resources=_any(
                        "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                        json.dumps(resources).encode())), metadata=self.client.md)
            except grpc.aio.AioRpcError as err:
                raise RuntimeFailure(f"cannot update resources: {err.details()}") from None
        c.config.linux.resources.CopyFrom(req.linux)
        return cri.UpdateContainerResourcesResponse()

    async def reopen_container_log(
        self, req: cri.ReopenContainerLogRequest
    ) -> cri.ReopenContainerLogResponse:
        c = self._container(req.container_id)
        if await self._state(c) != cri.CONTAINER_RUNNING:
            raise FailedPrecondition(f"container {c.id} is not running")
        if not c.log_path:
            return cri.ReopenContainerLogResponse()
        try:
            pid = int((self.loggers_dir / c.id).read_text())
            os.kill(pid, signal.SIGUSR1)
        except (OSError, ValueError) as err:
            raise RuntimeFailure(f"container {c.id}'s log writer is gone: {err}") from None
        deadline = time.monotonic() + 5
        while not _exists(c.log_path):
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"container {c.id}'s log was not reopened")
            await asyncio.sleep(0.002)
        return cri.ReopenContainerLogResponse()

    # -- exec ----------------------------------------------------------------------
    def _exec_process(self, c: ContainerRecord, cmd: list[str], tty: bool) -> dict[str, Any]:
        proc = dict(c.process)
        proc["args"] = list(cmd)
        proc["terminal"] = tty
        proc.pop("consoleSize", None)
        if tty:
            proc["consoleSize"] = {"height": 24, "width": 80}
        return proc

    async def start_exec(self, c: ContainerRecord, cmd: list[str], *, tty: bool,
                         stdin: bool, stdout: bool = True, stderr: bool = True) -> ExecIO:
        """Start a process in the running container; the caller reads/writes its FIFOs."""
        if await self._state(c) != cri.CONTAINER_RUNNING:
            raise FailedPrecondition(f"container {c.id} is not running")
        exec_id = f"exec-{secrets.token_hex(8)}"
        io = ExecIO(c.id, exec_id, self.exec_dir / exec_id, stdin=stdin, stdout=stdout,
                    stderr=stderr and not tty)
        spec = self._exec_process(c, cmd, tty)
        try:
            await self.client.tasks.Exec(tasks.ExecProcessRequest(
                container_id=c.id, exec_id=exec_id, terminal=tty, stdin=io.path("stdin"),
                stdout=io.path("stdout"), stderr=io.path("stderr"),
                spec=_any(ocispec.PROCESS_TYPE_URL, json.dumps(spec).encode())),
                metadata=self.client.md)
            await self.client.tasks.Start(tasks.StartRequest(container_id=c.id,
                                                             exec_id=exec_id),
                                          metadata=self.client.md)
        except grpc.aio.AioRpcError as err:
            io.start_error = err.details() or str(err.code())
            await self.delete_exec(io)
        return io

    async def wait_exec(self, io: ExecIO, within: float | None) -> int | None:
        try:
            got = await asyncio.wait_for(self.client.tasks.Wait(tasks.WaitRequest(
                container_id=io.container_id, exec_id=io.exec_id), metadata=self.client.md),
                within)
        except TimeoutError:
            return None
        except grpc.aio.AioRpcError as err:
            raise RuntimeFailure(f"exec {io.exec_id}: {err.details()}") from None
        return int(got.exit_status)

    async def kill_exec(self, io: ExecIO) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.client.tasks.Kill(tasks.KillRequest(
                container_id=io.container_id, exec_id=io.exec_id, signal=signal.SIGKILL),
                metadata=self.client.md)

    async def resize_exec(self, io: ExecIO, width: int, height: int) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.client.tasks.ResizePty(tasks.ResizePtyRequest(
                container_id=io.container_id, exec_id=io.exec_id, width=width, height=height),
                metadata=self.client.md)

    async def close_exec_stdin(self, io: ExecIO) -> None:
        io.close_stdin()
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.client.tasks.CloseIO(tasks.CloseIORequest(
                container_id=io.container_id, exec_id=io.exec_id, stdin=True),
                metadata=self.client.md)

    async def delete_exec(self, io: ExecIO) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.client.tasks.DeleteProcess(tasks.DeleteProcessRequest(
                container_id=io.container_id, exec_id=io.exec_id), metadata=self.client.md)
        io.close()

    async def exec_sync(self, req: cri.ExecSyncRequest) -> cri.ExecSyncResponse:
        c = self._container(req.container_id)
        io = await self.start_exec(c, list(req.cmd), tty=False, stdin=False)
        if io.start_error:
            # what a shell answers for a command it cannot run
            return cri.ExecSyncResponse(stderr=io.start_error.encode() + b"\n", exit_code=127)
        readers = asyncio.gather(io.read_all("stdout"), io.read_all("stderr"))
        try:
            code = await self.wait_exec(io, req.timeout if req.timeout > 0 else None)
            if code is None:
                await self.kill_exec(io)
                await self.wait_exec(io, KILL_WAIT)
                raise DeadlineExceeded(f"command {list(req.cmd)} timed out after "
                                       f"{req.timeout}s")
            io.release_writers()
            out, err = await asyncio.wait_for(readers, KILL_WAIT)
        finally:
            if not readers.done():
                readers.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await readers
            await self.delete_exec(io)
        return cri.ExecSyncResponse(stdout=out[:EXEC_OUTPUT_LIMIT],
                                    stderr=err[:EXEC_OUTPUT_LIMIT], exit_code=code)

    # -- streaming (served by the shim's streaming server) ----------------------------
    def _streaming_url(self, kind: str, req: Any) -> str:
        if self.streaming is None:
            raise Unimplemented(f"{kind} needs the shim's streaming server, which is not "
                                "running (use ExecSync)")
        return self.streaming.register(kind, req)

    async def _running(self, container_id: str) -> ContainerRecord:
        c = self._container(container_id)
        if await self._state(c) != cri.CONTAINER_RUNNING:
            raise FailedPrecondition(f"container {c.id} is not running")
        return c

    async def exec(self, req: cri.ExecRequest) -> cri.ExecResponse:
        await self._running(req.container_id)
        if not (req.stdout or req.stderr or req.stdin):
            raise InvalidArgument("exec needs at least one of stdin, stdout, stderr")
        return cri.ExecResponse(url=self._streaming_url("exec", req))

    async def attach(self, req: cri.AttachRequest) -> cri.AttachResponse:
        c = await self._running(req.container_id)
        if req.stdin and not c.config.stdin:
            raise InvalidArgument(f"container {c.id} was not created with stdin open")
        if req.stdin and not c.config.tty:
            raise Unimplemented(
                "attaching stdin needs a container created with tty: true in the containerd "
                "backend: containerd's runc shim connects stdin without a terminal only when "
                "it copies the output itself, and this backend's output goes to a binary:// "
                "log writer (so logs survive a restart of the shim)")
        if req.stdin and not (self.stdin_dir / c.id).exists():
            raise FailedPrecondition(f"container {c.id} was started without a stdin FIFO "
                                     "(by an older shim); restart it to attach stdin")
        return cri.AttachResponse(url=self._streaming_url("attach", req))

    async def port_forward(self, req: cri.PortForwardRequest) -> cri.PortForwardResponse:
        sb = self._sandbox(req.pod_sandbox_id)
        if not await self._sandbox_ready(sb):
            raise FailedPrecondition(f"pod sandbox {sb.id} is not ready")
        return cri.PortForwardResponse(url=self._streaming_url("portforward", req))

    async def port_forward_netns(self, sandbox_id: str) -> str:
        return self._sandbox(sandbox_id).netns

    async def stream_exec(self, req: cri.ExecRequest, streams: Streams) -> int:
        c = await self._running(req.container_id)
        io = await self.start_exec(c, list(req.cmd), tty=streams.tty, stdin=streams.stdin,
                                   stderr=True)
        if io.start_error:
            raise RuntimeFailure(f"exec failed: {io.start_error}")

        async def pump(name: str) -> None:
            write = streams.write_stderr if name == "stderr" else streams.write_stdout
            async for chunk in io.read(name):
                await write(chunk)

        async def feed() -> None:
            # in the client's order: a resize is in effect before the next keystroke
            while (item := await streams.input.get()) is not None:
                if isinstance(item, tuple):
                    if streams.tty:
                        await self.resize_exec(io, *item)
                elif streams.stdin:
                    await io.write_stdin(item)
            if streams.stdin and streams.tty:
                # end of input at a terminal is ^D, as in the process backend: closing
                # the stdin FIFO would make containerd's shim shut the console down,
                # and what the command writes after that would be lost
                await io.write_stdin(b"\x04")
            elif streams.stdin:
                await self.close_exec_stdin(io)

        helpers = [asyncio.create_task(feed())]
        pumps = asyncio.gather(*(pump(n) for n in ("stdout", "stderr") if n in io.fds))
        try:
            code = await self.wait_exec(io, None)
            io.release_writers()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pumps, KILL_WAIT)
            return code if code is not None else 137
        finally:
            for task in helpers:
                task.cancel()
            if not pumps.done():
                pumps.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pumps
            await self.kill_exec(io)
            await self.delete_exec(io)

    async def stream_attach(self, req: cri.AttachRequest, streams: Streams) -> None:
        c = await self._running(req.container_id)

        def exited() -> bool:
            return c.exit is not None or c.id not in self.containers

        async def watch() -> None:  # the exit is finalised by the event watcher
            await self._wait_task(c.id, None)
            await self._refresh(c)

        # as containerd's CRI does: the end of the client's stdin ends the session (the
        # container keeps its own stdin: a terminal's is never closed by a detach)
        helpers = [asyncio.create_task(watch())]
        output = asyncio.create_task(follow_log(c.log_path, streams, exited))
        client = asyncio.create_task(self._attach_input(c, streams))
        try:
            await asyncio.wait({output, client}, return_when=asyncio.FIRST_COMPLETED)
            for task in (output, client):
                if task.done():
                    task.result()
        finally:
            for task in (*helpers, output, client):
                task.cancel()
            await asyncio.gather(*helpers, output, client, return_exceptions=True)

    async def _attach_input(self, c: ContainerRecord, streams: Streams) -> None:
        """The client's stdin into the container's FIFO and its resizes onto the terminal,
        until the client ends its stdin or leaves."""
        fd = -1
        if streams.stdin:
            try:
                # O_NONBLOCK: ENXIO instead of waiting forever when the task has no reader
                fd = os.open(self.stdin_dir / c.id, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as err:
                raise FailedPrecondition(f"container {c.id}'s stdin is not open: "
                                         f"{err.strerror or err}") from None
        try:
            while (item := await streams.input.get()) is not None:
                if isinstance(item, tuple):
                    if streams.tty:
                        with contextlib.suppress(grpc.aio.AioRpcError):
                            await self.client.tasks.ResizePty(tasks.ResizePtyRequest(
                                container_id=c.id, width=item[0], height=item[1]),
                                metadata=self.client.md)
                elif fd >= 0:
                    await _write_fifo(fd, item)
        finally:
            if fd >= 0:
                os.close(fd)

    async def checkpoint_container(
        self, req: cri.CheckpointContainerRequest
    ) -> cri.CheckpointContainerResponse:
        raise Unimplemented("checkpointing needs CRIU, which this backend does not configure")

    # -- stats ---------------------------------------------------------------------
    async def _container_stats(self, c: ContainerRecord) -> cri.ContainerStats:
        stats = cri.ContainerStats()
        stats.attributes.id = c.id
        stats.attributes.metadata.CopyFrom(c.config.metadata)
        stats.attributes.labels.update(c.config.labels)
        stats.attributes.annotations.update(c.config.annotations)
        now = time.time_ns()
        fill_usage(self.cgroups, self._cpu_samples, c.id, self.cgroups.paths_for(c.cgroups_path),
                   stats.cpu, stats.memory, now)
        stats.writable_layer.timestamp = now
        with contextlib.suppress(grpc.aio.AioRpcError):
            usage = await self.client.snapshots.Usage(snapshots.UsageRequest(
                snapshotter=SNAPSHOTTER, key=c.id), metadata=self.client.md)
            stats.writable_layer.used_bytes.value = usage.size
            stats.writable_layer.inodes_used.value = usage.inodes
        stats.writable_layer.fs_id.mountpoint = self._snapshot_root
        return stats

    async def container_stats(self, req: cri.ContainerStatsRequest) -> cri.ContainerStatsResponse:
        c = self._container(req.container_id)
        return cri.ContainerStatsResponse(stats=await self._container_stats(c))

    async def list_container_stats(
        self, req: cri.ListContainerStatsRequest
    ) -> cri.ListContainerStatsResponse:
        flt = req.filter
        out = []
        for c in list(self.containers.values()):
            if flt.id and not c.id.startswith(flt.id):
                continue
            if flt.pod_sandbox_id and not c.sandbox_id.startswith(flt.pod_sandbox_id):
                continue
            if not filters.labels_match(flt.label_selector, c.config.labels):
                continue
            out.append(await self._container_stats(c))
        return cri.ListContainerStatsResponse(stats=out)

    async def _sandbox_stats(self, sb: SandboxRecord) -> cri.PodSandboxStats:
        stats = cri.PodSandboxStats()
        stats.attributes.id = sb.id
        stats.attributes.metadata.CopyFrom(sb.config.metadata)
        stats.attributes.labels.update(sb.config.labels)
        stats.attributes.annotations.update(sb.config.annotations)
        now = time.time_ns()
        cg = self.cgroups.paths_for(self._pod_cgroup(sb.config, sb.id))
        fill_usage(self.cgroups, self._cpu_samples, sb.id, cg, stats.linux.cpu,
                   stats.linux.memory, now)
        count = self.cgroups.process_count(cg)
        if count is not None:
            stats.linux.process.timestamp = now
            stats.linux.process.process_count.value = count
        for c in list(self.containers.values()):
            if c.sandbox_id == sb.id:
                stats.linux.containers.append(await self._container_stats(c))
        return stats

    async def pod_sandbox_stats(
        self, req: cri.PodSandboxStatsRequest
    ) -> cri.PodSandboxStatsResponse:
        return cri.PodSandboxStatsResponse(
            stats=await self._sandbox_stats(self._sandbox(req.pod_sandbox_id)))

    async def list_pod_sandbox_stats(
        self, req: cri.ListPodSandboxStatsRequest
    ) -> cri.ListPodSandboxStatsResponse:
        flt = req.filter
        out = [await self._sandbox_stats(sb) for sb in list(self.sandboxes.values())
               if (not flt.id or sb.id.startswith(flt.id))
               and filters.labels_match(flt.label_selector, sb.config.labels)]
        return cri.ListPodSandboxStatsResponse(stats=out)

    async def list_metric_descriptors(
        self, req: cri.ListMetricDescriptorsRequest
    ) -> cri.ListMetricDescriptorsResponse:
        return cri.ListMetricDescriptorsResponse()

    async def list_pod_sandbox_metrics(
        self, req: cri.ListPodSandboxMetricsRequest
    ) -> cri.ListPodSandboxMetricsResponse:
        return cri.ListPodSandboxMetricsResponse()

    # -- events --------------------------------------------------------------------
    async def _event(self, c: ContainerRecord, kind: cri.ContainerEventType.ValueType,
                     removed: bool = False) -> cri.ContainerEventResponse:
        event = cri.ContainerEventResponse(container_id=c.id, container_event_type=kind,
                                           created_at=time.time_ns())
        sb = self.sandboxes.get(c.sandbox_id)
        if sb is not None:
            with contextlib.suppress(grpc.aio.AioRpcError):
                event.pod_sandbox_status.CopyFrom(await self._sandbox_status(sb))
                for other in list(self.containers.values()):
                    if other.sandbox_id == sb.id and not (removed and other.id == c.id):
                        event.containers_statuses.append(await self._plain_status(other))
        return event

    async def _publish(self, c: ContainerRecord, kind: cri.ContainerEventType.ValueType,
                       removed: bool = False) -> None:
        # an event carries the status of every container of the pod (a containerd call
        # each): built only when someone listens
        if self.events.subscribers:
            self.events.publish(await self._event(c, kind, removed=removed))

    async def _plain_status(self, c: ContainerRecord) -> cri.ContainerStatus:
        """A status without finalising (events are built while a lock may be held)."""
        status = cri.ContainerStatus(id=c.id, metadata=c.config.metadata,
                                     state=await self._state(c), created_at=c.created_at,
                                     started_at=c.started_at,
                                     image=cri.ImageSpec(image=c.image), image_ref=c.image_ref,
                                     image_id=c.image_id, log_path=c.log_path)
        if c.exit is not None:
            status.exit_code = int(c.exit.get("exit_code", 0))
            status.finished_at = int(c.exit.get("finished_at", 0))
            status.reason = c.exit.get("reason", "")
        return status

    # -- images (list, status, pull, remove: DelegatedRPCs) ------------------------
    async def image_fs_info(self, req: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
        resp = cri.ImageFsInfoResponse()
        usage = cri.FilesystemUsage(timestamp=time.time_ns())
        usage.fs_id.mountpoint = self._snapshot_root or f"containerd:{SNAPSHOTTER}"
        if self._snapshot_root:
            used, inodes = await asyncio.to_thread(disk_usage, Path(self._snapshot_root))
            usage.used_bytes.value = used
            usage.inodes_used.value = inodes
        resp.image_filesystems.append(usage)
        return resp


class ExecIO:
    """The FIFOs of one exec: created before the exec, read/written by the shim.

    The shim holds a write end of each output FIFO until the process has exited,
    so a reader never sees end-of-file before containerd's shim has opened it.
    """

    def __init__(self, container_id: str, exec_id: str, directory: Path, *, stdin: bool,
                 stdout: bool, stderr: bool) -> None:
        self.container_id = container_id
        self.exec_id = exec_id
        self.directory = directory
        self.start_error = ""
        directory.mkdir(parents=True)
        self.fds: dict[str, int] = {}
        self._keep: dict[str, int] = {}
        self.names = [n for n, on in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr))
                      if on]
        for name in self.names:
            os.mkfifo(directory / name, 0o600)
        for name in ("stdout", "stderr"):
            if name in self.names:
                fd = os.open(directory / name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                self.fds[name] = fd
                self._keep[name] = os.open(directory / name, os.O_WRONLY | os.O_CLOEXEC)
        if stdin:
            # O_RDWR: opening never blocks, and containerd's shim finds a writer there
            self.fds["stdin"] = os.open(directory / "stdin", os.O_RDWR | os.O_CLOEXEC)

    def path(self, name: str) -> str:
        return str(self.directory / name) if name in self.names else ""

    def release_writers(self) -> None:
        for fd in self._keep.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._keep.clear()

    def close_stdin(self) -> None:
        fd = self.fds.pop("stdin", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    async def read_all(self, name: str) -> bytes:
        data = bytearray()
        async for chunk in self.read(name):
            data += chunk
            if len(data) > EXEC_OUTPUT_LIMIT:
                break
        return bytes(data)

    async def read(self, name: str) -> AsyncIterator[bytes]:
        fd = self.fds.get(name)
        if fd is None:
            return
        async for chunk in read_fd(fd):
            yield chunk

    async def write_stdin(self, data: bytes) -> None:
        fd = self.fds.get("stdin")
        if fd is not None:
            await asyncio.to_thread(os.write, fd, data)

    def close(self) -> None:
        self.release_writers()
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


def _exists(path: str) -> bool:
    return os.path.exists(path)


async def _write_fifo(fd: int, data: bytes) -> None:
    """All of ``data`` into a non-blocking FIFO, waiting while it is full."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            writable: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, _set_once, writable)
            try:
                await writable
            finally:
                loop.remove_writer(fd)


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _pod_binds(directory: Path, mounts: Any, host_network: bool) -> list[ocispec.Bind]:
    own = {m.container_path for m in mounts}
    binds = [ocispec.Bind(str(directory / name), target)
             for name, target in (("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf"),
                                  ("hostname", "/etc/hostname"))
             if target not in own and (directory / name).exists()]
    for m in mounts:
        if not m.container_path.startswith("/"):
            raise InvalidArgument(f"mount path {m.container_path!r} must be absolute")
        binds.append(ocispec.Bind(m.host_path, m.container_path, m.readonly))
    return binds


def _write_pod_files(directory: Path, config: cri.PodSandboxConfig, ip: str, hostname: str,
                     host_network: bool) -> None:
    from pilothouse.runtime_shim.process.backend import _resolv_conf

    (directory / "hostname").write_text((hostname if not host_network
                                         else os.uname().nodename) + "\n")
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    if not host_network:
        hosts += f"{ip}\t{hostname}\n"
    (directory / "hosts").write_text(hosts)
    (directory / "resolv.conf").write_text(_resolv_conf(config.dns_config))


def _signal_number(name: str) -> int:
    from pilothouse.runtime_shim.process.backend import _signal_number as parse

    return parse(name)


def _host_ip() -> str:
    from pilothouse.runtime_shim.process.backend import _host_ip as host_ip

    return host_ip()

