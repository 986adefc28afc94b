"""The eviction manager: when the node runs short, end pods before the kernel or the disk does.

Kubernetes' kubelet eviction, hard thresholds only. Every monitoring interval
(10 s) it takes a ``Summary`` from its ``SummaryProvider`` (injectable: the
real one reads /proc, statvfs, the CRI's container stats and the pods'
volumes; tests pass a fake), then:

1. local storage limits: a pod whose emptyDir uses more than its ``sizeLimit``,
   or whose containers' writable layers + logs (+ its local volumes) exceed
   their ``ephemeral-storage`` limits, is evicted, whatever the node's state;
2. the thresholds (``memory.available<100Mi,nodefs.available<10%,
   nodefs.inodesFree<5%,imagefs.available<15%,imagefs.inodesFree<5%`` unless
   configured; ``pid.available`` when asked for) are compared with what is
   observed; the ones met set the node conditions MemoryPressure,
   DiskPressure, PIDPressure (held for the pressure transition period, 5 min,
   after the last time they were met, so a node does not flap);
3. for a disk signal the node reclaims first (unused images: the image GC),
   and evicts only if that was not enough;
4. otherwise one pod is evicted per round, ranked as Kubernetes does:
   memory — pods using more than they request first, then lower priority,
   then by usage above request; disk — the same with ephemeral-storage;
   pids — lower priority, then more processes. Static pods are not evicted.

An evicted pod is killed (grace period 1 s) and ends ``Failed`` with reason
``Evicted``, Kubernetes' message ("The node was low on resource: memory.
Threshold quantity: 100Mi, available: 90Mi. Container main was using 200Mi,
request is 0, has larger consumption of memory. ") and a ``DisruptionTarget``
condition; an ``Evicted`` event says the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cmp_to_key
from pathlib import Path
from typing import Final, Protocol

from pilothouse.api.quantity import Format, Quantity, QuantityError
from pilothouse.client.clock import AsyncClock
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import nodestatus
from pilothouse.services.kubelet import runtime as rt

log = logging.getLogger("pilothouse.kubelet.eviction")

MEMORY_AVAILABLE: Final = "memory.available"
NODEFS_AVAILABLE: Final = "nodefs.available"
NODEFS_INODES_FREE: Final = "nodefs.inodesFree"
IMAGEFS_AVAILABLE: Final = "imagefs.available"
IMAGEFS_INODES_FREE: Final = "imagefs.inodesFree"
PID_AVAILABLE: Final = "pid.available"
SIGNALS: Final = (MEMORY_AVAILABLE, NODEFS_AVAILABLE, NODEFS_INODES_FREE, IMAGEFS_AVAILABLE,
                  IMAGEFS_INODES_FREE, PID_AVAILABLE)
DEFAULT_EVICTION_HARD: Final = ("memory.available<100Mi,nodefs.available<10%,"
                                "nodefs.inodesFree<5%,imagefs.available<15%,"
                                "imagefs.inodesFree<5%")

# What each signal reclaims (the message's resource) and the condition it raises.
RESOURCE: Final = {MEMORY_AVAILABLE: "memory", NODEFS_AVAILABLE: "ephemeral-storage",
                   IMAGEFS_AVAILABLE: "ephemeral-storage", NODEFS_INODES_FREE: "inodes",
                   IMAGEFS_INODES_FREE: "inodes", PID_AVAILABLE: "pids"}
CONDITION: Final = {MEMORY_AVAILABLE: "MemoryPressure", NODEFS_AVAILABLE: "DiskPressure",
                    IMAGEFS_AVAILABLE: "DiskPressure", NODEFS_INODES_FREE: "DiskPressure",
                    IMAGEFS_INODES_FREE: "DiskPressure", PID_AVAILABLE: "PIDPressure"}
DISK_SIGNALS: Final = frozenset({NODEFS_AVAILABLE, NODEFS_INODES_FREE, IMAGEFS_AVAILABLE,
                                 IMAGEFS_INODES_FREE})
_BYTES: Final = frozenset({MEMORY_AVAILABLE, NODEFS_AVAILABLE, IMAGEFS_AVAILABLE})

IMMEDIATE_GRACE: Final = 1  # seconds a hard-evicted pod's containers get
NODE_LOW_FMT: Final = "The node was low on resource: {}. "
THRESHOLD_MET_FMT: Final = "Threshold quantity: {}, available: {}. "
CONTAINER_FMT: Final = "Container {} was using {}, request is {}, has larger consumption of {}. "
EMPTY_DIR_FMT: Final = 'Usage of EmptyDir volume "{}" exceeds the limit "{}". '
POD_EPHEMERAL_FMT: Final = "Pod ephemeral local storage usage exceeds the total limit of " \
    "containers {}. "
CONTAINER_EPHEMERAL_FMT: Final = 'Container {} exceeded its local ephemeral storage limit "{}". '


# -- thresholds ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """``signal < quantity`` (an absolute amount) or ``signal < percentage`` of capacity."""

    signal: str
    quantity: Quantity | None = None
    percentage: float | None = None

    def value(self, capacity: int) -> int:
        if self.quantity is not None:
            return self.quantity.value()
        assert self.percentage is not None
        return int(capacity * self.percentage)

    def describe(self, capacity: int) -> str:
        """The threshold as the eviction message prints it."""
        if self.quantity is not None:
            return str(self.quantity)
        fmt = Format.BINARY_SI if self.signal in _BYTES else Format.DECIMAL_SI
        return str(Quantity.from_int(self.value(capacity), fmt))


def parse_thresholds(text: str) -> list[Threshold]:
    """``signal<quantity|N%,...`` (``--eviction-hard``); ValueError says what is wrong."""
    out: dict[str, Threshold] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        signal, op, raw = item.partition("<")
        signal, raw = signal.strip(), raw.strip()
        if not op:
            raise ValueError(f"eviction threshold {item!r}: expected signal<value "
                             "(only the < operator is supported)")
        if signal not in SIGNALS:
            raise ValueError(f"eviction threshold {item!r}: unknown signal {signal!r} "
                             f"(one of {', '.join(SIGNALS)})")
        if signal in out:
            raise ValueError(f"eviction threshold {signal} given twice")
        if raw.endswith("%"):
            try:
                pct = float(raw[:-1])
            except ValueError:
                raise ValueError(f"eviction threshold {item!r}: {raw!r} is not a "
                                 "percentage") from None
            if not 0 <= pct <= 100:
                raise ValueError(f"eviction threshold {item!r}: percentage must be 0-100%")
            out[signal] = Threshold(signal, percentage=pct / 100)
            continue
        try:
            quantity = Quantity(raw)
        except QuantityError:
            raise ValueError(f"eviction threshold {item!r}: {raw!r} is not a quantity "
                             "or a percentage") from None
        if quantity.sign() < 0:
            raise ValueError(f"eviction threshold {item!r}: must not be negative")
        out[signal] = Threshold(signal, quantity=quantity)
    return list(out.values())


# -- what is observed ---------------------------------------------------------------------


@dataclass
class FsStats:
    available: int
    capacity: int
    inodes_free: int | None = None
    inodes: int | None = None


@dataclass
class ContainerUsage:
    name: str
    memory_working_set: int | None = None
    rootfs_used: int | None = None  # the writable layer
    logs_used: int | None = None


@dataclass
class PodUsage:
    """One pod's usage, as the Summary API reports it."""

    containers: list[ContainerUsage] = field(default_factory=list)
    volumes: dict[str, int] = field(default_factory=dict)  # emptyDir name -> bytes used
    processes: int | None = None

    def memory(self) -> int | None:
        values = [c.memory_working_set for c in self.containers]
        if not values or any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)

    def ephemeral(self, local_volumes: Iterable[str]) -> int:
        """Writable layers + logs + the named local (disk-backed emptyDir) volumes."""
        total = sum((c.rootfs_used or 0) + (c.logs_used or 0) for c in self.containers)
        return total + sum(self.volumes.get(v, 0) for v in local_volumes)


@dataclass
class Summary:
    """The node's and its pods' usage (Kubernetes' /stats/summary, reduced)."""

    memory_available: int
    memory_capacity: int
    nodefs: FsStats
    imagefs: FsStats | None = None  # None: images live on the node filesystem
    pid_available: int | None = None
    pid_capacity: int | None = None
    pods: dict[str, PodUsage] = field(default_factory=dict)  # by pod uid


class SummaryProvider(Protocol):
    async def summary(self, pods: list[core_pb2.Pod]) -> Summary:
        """The node's usage now, with the usage of ``pods`` (those it can measure). Called
        every monitoring interval; raising skips that round."""
        ...


def observations(summary: Summary) -> dict[str, tuple[int, int]]:
    """signal -> (available, capacity), for the signals the summary can tell."""
    obs: dict[str, tuple[int, int]] = {
        MEMORY_AVAILABLE: (summary.memory_available, summary.memory_capacity),
        NODEFS_AVAILABLE: (summary.nodefs.available, summary.nodefs.capacity)}
    if summary.nodefs.inodes_free is not None and summary.nodefs.inodes:
        obs[NODEFS_INODES_FREE] = (summary.nodefs.inodes_free, summary.nodefs.inodes)
    image = summary.imagefs or summary.nodefs
    obs[IMAGEFS_AVAILABLE] = (image.available, image.capacity)
    if image.inodes_free is not None and image.inodes:
        obs[IMAGEFS_INODES_FREE] = (image.inodes_free, image.inodes)
    if summary.pid_available is not None and summary.pid_capacity:
        obs[PID_AVAILABLE] = (summary.pid_available, summary.pid_capacity)
    return obs


def thresholds_met(thresholds: Iterable[Threshold],
                   obs: Mapping[str, tuple[int, int]]) -> list[Threshold]:
    """The thresholds whose signal is below them, memory first (Kubernetes' priority)."""
    met = []
    for t in thresholds:
        if t.signal not in obs:
            continue
        available, capacity = obs[t.signal]
        if available < t.value(capacity):
            met.append(t)
    return sorted(met, key=lambda t: SIGNALS.index(t.signal))


# -- ranking ---------------------------------------------------------------------------------


def _amount(q: object) -> int:
    try:
        return Quantity(getattr(q, "string", "") or "0").value()
    except QuantityError:
        return 0


def _requests(pod: core_pb2.Pod, resource: str) -> int:
    return sum(_amount(c.resources.requests[resource]) for c in pod.spec.containers
               if resource in c.resources.requests)


def local_volumes(pod: core_pb2.Pod) -> list[str]:
    """The pod's disk-backed emptyDir volumes (what counts towards its ephemeral storage)."""
    return [v.name for v in pod.spec.volumes
            if v.volumeSource.HasField("emptyDir") and v.volumeSource.emptyDir.medium != "Memory"]


def _usage(pod: core_pb2.Pod, stats: PodUsage | None, resource: str) -> int | None:
    if stats is None:
        return None
    if resource == "memory":
        return stats.memory()
    if resource == "pids":
        return stats.processes
    return stats.ephemeral(local_volumes(pod))


def _cmp(a: int | float, b: int | float) -> int:
    return (a > b) - (a < b)


def rank(pods: list[core_pb2.Pod], stats: Mapping[str, PodUsage], signal: str
         ) -> list[core_pb2.Pod]:
    """``pods`` in the order Kubernetes evicts them for ``signal``."""
    resource = RESOURCE[signal]

    def priority(p: core_pb2.Pod) -> int:
        return p.spec.priority if p.spec.HasField("priority") else 0

    def compare(a: core_pb2.Pod, b: core_pb2.Pod) -> int:
        ua = _usage(a, stats.get(a.metadata.uid), resource)
        ub = _usage(b, stats.get(b.metadata.uid), resource)
        if ua is None or ub is None:  # pods without stats go first
            return _cmp(ua is not None, ub is not None)
        if resource == "pids":
            return _cmp(priority(a), priority(b)) or _cmp(ub, ua)
        req = "ephemeral-storage" if resource in ("ephemeral-storage", "inodes") else resource
        over_a, over_b = ua - _requests(a, req), ub - _requests(b, req)
        return (_cmp(over_a <= 0, over_b <= 0)  # exceeding its requests first
                or _cmp(priority(a), priority(b))  # then lower priority
                or _cmp(over_b, over_a))  # then by usage above request
    return sorted(pods, key=cmp_to_key(compare))


def eviction_message(pod: core_pb2.Pod, stats: PodUsage | None, threshold: Threshold,
                     obs: Mapping[str, tuple[int, int]]) -> str:
    resource = RESOURCE[threshold.signal]
    message = NODE_LOW_FMT.format(resource)
    if threshold.signal in obs:
        available, capacity = obs[threshold.signal]
        fmt = Format.BINARY_SI if threshold.signal in _BYTES else Format.DECIMAL_SI
        message += THRESHOLD_MET_FMT.format(threshold.describe(capacity),
                                            Quantity.from_int(available, fmt))
    if stats is None or resource not in ("memory", "ephemeral-storage"):
        return message
    by_name = {c.name: c for c in stats.containers}
    for container in pod.spec.containers:
        usage_stats = by_name.get(container.name)
        if usage_stats is None:
            continue
        if resource == "memory":
            used = usage_stats.memory_working_set
        elif usage_stats.rootfs_used is not None and usage_stats.logs_used is not None:
            used = usage_stats.rootfs_used + usage_stats.logs_used
        else:
            used = None
        requested = container.resources.requests.get(resource)
        request = requested.string if requested is not None else "0"
        if used is not None and used > _amount(requested):
            message += CONTAINER_FMT.format(container.name,
                                            Quantity.from_int(used, Format.BINARY_SI),
                                            request, resource)
    return message


def local_storage_violation(pod: core_pb2.Pod, stats: PodUsage | None) -> str | None:
    """The eviction message when the pod uses more local storage than its limits allow."""
    if stats is None:
        return None
    for v in pod.spec.volumes:
        src = v.volumeSource
        if not src.HasField("emptyDir") or not src.emptyDir.HasField("sizeLimit"):
            continue
        limit = _amount(src.emptyDir.sizeLimit)
        used = stats.volumes.get(v.name)
        if limit > 0 and used is not None and used > limit:
            return EMPTY_DIR_FMT.format(v.name, src.emptyDir.sizeLimit.string)
    limits = [c.resources.limits["ephemeral-storage"] for c in pod.spec.containers
              if "ephemeral-storage" in c.resources.limits]
    if limits:
        total_limit = sum(_amount(q) for q in limits)
        if stats.ephemeral(local_volumes(pod)) > total_limit:
            return POD_EPHEMERAL_FMT.format(Quantity.from_int(total_limit, Format.BINARY_SI))
    by_name = {c.name: c for c in stats.containers}
    for c in pod.spec.containers:
        if "ephemeral-storage" not in c.resources.limits or c.name not in by_name:
            continue
        used = (by_name[c.name].rootfs_used or 0) + (by_name[c.name].logs_used or 0)
        if used > _amount(c.resources.limits["ephemeral-storage"]):
            return CONTAINER_EPHEMERAL_FMT.format(
                c.name, c.resources.limits["ephemeral-storage"].string)
    return None


# -- the manager -----------------------------------------------------------------------------

EvictFunc = Callable[[core_pb2.Pod, str], bool]  # pod, message -> handed over


class EvictionManager:
    def __init__(self, *, thresholds: list[Threshold], provider: SummaryProvider,
                 clock: AsyncClock, pods: Callable[[], list[core_pb2.Pod]], evict: EvictFunc,
                 reclaim_disk: Callable[[], Awaitable[object]] | None = None,
                 monitoring_interval: float = 10.0,
                 pressure_transition_period: float = 300.0,
                 on_pressure_change: Callable[[], None] = lambda: None) -> None:
        self.thresholds = thresholds
        self.provider = provider
        self.clock = clock
        self.pods = pods  # the active pods this manager may evict (static pods excluded)
        self.evict = evict
        self.reclaim_disk = reclaim_disk
        self.monitoring_interval = monitoring_interval
        self.pressure_transition_period = pressure_transition_period
        self.on_pressure_change = on_pressure_change
        self._last_met: dict[str, float] = {}  # condition -> monotonic time last met
        self.met: list[Threshold] = []
        self.evictions = 0

    def pressure(self) -> set[str]:
        """The pressure conditions to report now (MemoryPressure, DiskPressure, PIDPressure)."""
        now = self.clock.monotonic()
        return {cond for cond, at in self._last_met.items()
                if now - at < self.pressure_transition_period}

    def _note(self, met: list[Threshold]) -> None:
        before = self.pressure()
        now = self.clock.monotonic()
        for t in met:
            self._last_met[CONDITION[t.signal]] = now
        if self.pressure() != before:
            self.on_pressure_change()

    async def synchronize(self) -> core_pb2.Pod | None:
        """One round; the pod evicted, if any."""
        pods = self.pods()
        summary = await self.provider.summary(pods)
        # Local storage limits come first, and do not wait for the node to run short.
        for pod in pods:
            message = local_storage_violation(pod, summary.pods.get(pod.metadata.uid))
            if message is not None and self.evict(pod, message):
                self.evictions += 1
                log.info("evicting pod %s/%s: %s", pod.metadata.namespace, pod.metadata.name,
                         message)
                return pod
        obs = observations(summary)
        met = thresholds_met(self.thresholds, obs)
        self._note(met)
        if met and all(t.signal in DISK_SIGNALS for t in met) and \
                self.reclaim_disk is not None:
            await self.reclaim_disk()
            summary = await self.provider.summary(pods)
            obs = observations(summary)
            met = thresholds_met(self.thresholds, obs)
        self.met = met
        if not met:
            return None
        threshold = met[0]
        for pod in rank(pods, summary.pods, threshold.signal):
            message = eviction_message(pod, summary.pods.get(pod.metadata.uid), threshold, obs)
            if self.evict(pod, message):
                self.evictions += 1
                log.info("evicting pod %s/%s: %s", pod.metadata.namespace, pod.metadata.name,
                         message)
                return pod  # one pod per round: the next round sees what it freed
        return None

    async def run(self) -> None:
        while True:
            try:
                await self.synchronize()
            except (OSError, rt.RuntimeError_) as e:
                log.warning("eviction manager: %s", e)
            await self.clock.sleep(self.monitoring_interval)


# -- the real summary ---------------------------------------------------------------------------


def _fs(path: Path) -> tuple[FsStats, int]:
    st = os.statvfs(path if path.exists() else "/")
    dev = os.stat(path if path.exists() else "/").st_dev
    return FsStats(available=st.f_bavail * st.f_frsize, capacity=st.f_blocks * st.f_frsize,
                   inodes_free=st.f_favail, inodes=st.f_files), dev


def disk_usage(path: Path) -> int:
    """Bytes the files under ``path`` occupy (allocated blocks, as du counts)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                total += st.st_blocks * 512
    return total


class NodeSummaryProvider:
    """The real usage: /proc, statvfs of the kubelet root and the image filesystem, the CRI's
    container stats (and pod sandbox stats for process counts, where the runtime has them),
    and the pods' log files and emptyDir volumes on disk."""

    def __init__(self, *, runtime: rt.RuntimeClient, root_dir: Path,
                 pod_dir: Callable[[str], Path], log_dir: Callable[[core_pb2.Pod], Path],
                 pid_max: int) -> None:
        self.runtime = runtime
        self.root_dir = root_dir
        self.pod_dir = pod_dir
        self.log_dir = log_dir
        self.pid_max = pid_max

    async def summary(self, pods: list[core_pb2.Pod]) -> Summary:
        stats = await self.runtime.call("ListContainerStats", cri.ListContainerStatsRequest())
        processes: dict[str, int] = {}  # pod uid -> process count, where the runtime says
        with contextlib.suppress(rt.RuntimeError_):
            pod_stats = await self.runtime.call("ListPodSandboxStats",
                                                cri.ListPodSandboxStatsRequest())
            for ps in pod_stats.stats:
                uid = ps.attributes.labels.get(rt.POD_UID_LABEL) or ps.attributes.metadata.uid
                if uid and ps.linux.process.HasField("process_count"):
                    processes[uid] = processes.get(uid, 0) + \
                        ps.linux.process.process_count.value
        image_mount = ""
        with contextlib.suppress(rt.RuntimeError_):
            fs_info = await self.runtime.call("ImageFsInfo", cri.ImageFsInfoRequest())
            for usage in fs_info.image_filesystems:
                image_mount = usage.fs_id.mountpoint
                break
        summary = await asyncio.to_thread(self._read, pods, list(stats.stats), image_mount)
        for uid, count in processes.items():
            if uid in summary.pods:
                summary.pods[uid].processes = count
        return summary

    def _read(self, pods: list[core_pb2.Pod], stats: list[cri.ContainerStats],
              image_mount: str) -> Summary:
        mem = nodestatus.meminfo()
        nodefs, node_dev = _fs(self.root_dir)
        imagefs = None
        if image_mount and Path(image_mount).exists():
            fs, dev = _fs(Path(image_mount))
            imagefs = fs if dev != node_dev else None
        try:
            processes = sum(1 for p in os.listdir("/proc") if p.isdigit())
        except OSError:
            processes = 0
        by_uid: dict[str, list[cri.ContainerStats]] = {}
        for s in stats:
            uid = s.attributes.labels.get(rt.POD_UID_LABEL, "")
            if uid:
                by_uid.setdefault(uid, []).append(s)
        usage: dict[str, PodUsage] = {}
        for pod in pods:
            uid = pod.metadata.uid
            pu = PodUsage()
            logs = self.log_dir(pod)
            for s in by_uid.get(uid, []):
                name = s.attributes.labels.get(rt.CONTAINER_NAME_LABEL,
                                               s.attributes.metadata.name)
                pu.containers.append(ContainerUsage(
                    name=name,
                    memory_working_set=s.memory.working_set_bytes.value
                    if s.memory.HasField("working_set_bytes") else None,
                    rootfs_used=s.writable_layer.used_bytes.value
                    if s.writable_layer.HasField("used_bytes") else 0,
                    logs_used=disk_usage(logs / name) if (logs / name).exists() else 0))
            volumes = self.pod_dir(uid) / "volumes" / "kubernetes.io~empty-dir"
            for v in pod.spec.volumes:
                if v.volumeSource.HasField("emptyDir") and (volumes / v.name).exists():
                    pu.volumes[v.name] = disk_usage(volumes / v.name)
            usage[uid] = pu
        return Summary(memory_available=mem.get("MemAvailable", 0),
                       memory_capacity=mem.get("MemTotal", 0), nodefs=nodefs, imagefs=imagefs,
                       pid_available=max(self.pid_max - processes, 0),
                       pid_capacity=self.pid_max, pods=usage)
