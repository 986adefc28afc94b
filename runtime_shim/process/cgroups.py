"""cgroup v1 and v2 for the process backend: create, limit, read stats, remove.

Containers go under ``<parent>/<sandbox id>/<container id>``, where the parent
is the sandbox's ``cgroup_parent`` if the kubelet gave one, else the shim's
default parent (``/pilothouse``, like Kubernetes' ``/kubepods``), relative to
each hierarchy's root. On cgroup v1 each controller (cpu, cpuacct, memory,
pids) has its own hierarchy and path; on v2 there is one path and the
controllers must be enabled in the parents' ``cgroup.subtree_control``.
Anything that cannot be created or written is reported, not faked: limits
that were asked for and could not be set fail the container's creation.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")


class CgroupError(Exception):
    pass


@dataclass
class CgroupSet:
    """One container's or sandbox's cgroup: a directory per hierarchy."""

    dirs: dict[str, str] = field(default_factory=dict)  # controller ("" on v2) -> dir

    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in dict.fromkeys(self.dirs.values())]

    def file(self, controller: str, name: str) -> Path | None:
        d = self.dirs.get(controller) or self.dirs.get("")
        return Path(d) / name if d else None


class Cgroups:
    def __init__(self, root: Path = CGROUP_ROOT, default_parent: str = "/pilothouse") -> None:
        self.root = root
        self.default_parent = default_parent
        self.v2 = (root / "cgroup.controllers").exists()
        self.mounts: dict[str, Path] = {}
        if self.v2:
            self.mounts[""] = root
        else:
            for c in V1_CONTROLLERS:
                if (root / c / "cgroup.procs").exists():
                    self.mounts[c] = root / c

    @property
    def version(self) -> int:
        return 2 if self.v2 else 1

    def writable(self) -> bool:
        return bool(self.mounts) and all(os.access(m, os.W_OK) for m in self.mounts.values())

    def paths_for(self, parent: str, *parts: str) -> CgroupSet:
        dirs = {}
        for c, mount in self.mounts.items():
            base = parent or self.default_parent
            dirs[c] = str(mount / base.lstrip("/") / Path(*parts))
        return CgroupSet(dirs)

    def create(self, cg: CgroupSet) -> None:
        for c, d in cg.dirs.items():
            try:
                if self.v2:
                    self._enable_v2(Path(d))
                os.makedirs(d, exist_ok=True)
            except OSError as err:
                raise CgroupError(f"cannot create cgroup {d}: {err.strerror}") from None
            if c == "memory" and not self.v2:
                with contextlib.suppress(OSError):
                    (Path(d) / "memory.use_hierarchy").write_text("1")

    def _enable_v2(self, d: Path) -> None:
        """Enable cpu, memory and pids for the children of every cgroup from the root
        down to ``d``'s parent (one write per level: the kernel takes a list)."""
        wanted = ("cpu", "memory", "pids")
        chain = [p for p in [*reversed(d.parents)]
                 if p == self.root or self.root in p.parents]
        for parent in chain:
            parent.mkdir(exist_ok=True)
            available = set((parent / "cgroup.controllers").read_text().split())
            enabled = set(_read(parent / "cgroup.subtree_control").split())
            missing = [c for c in wanted if c in available and c not in enabled]
            if missing:
                with contextlib.suppress(OSError):
                    (parent / "cgroup.subtree_control").write_text(
                        " ".join(f"+{c}" for c in missing))

    def apply(self, cg: CgroupSet, res: cri.LinuxContainerResources) -> None:
        """Write the limits ``res`` asks for; raises if one cannot be written."""
        writes: list[tuple[str, str, str]] = []
        if self.v2:
            if res.cpu_quota > 0 or res.cpu_period > 0:
                quota = str(res.cpu_quota) if res.cpu_quota > 0 else "max"
                writes.append(("", "cpu.max", f"{quota} {res.cpu_period or 100000}"))
            if res.cpu_shares > 0:
                weight = 1 + ((res.cpu_shares - 2) * 9999) // 262142
                writes.append(("", "cpu.weight", str(max(1, min(10000, weight)))))
            if res.memory_limit_in_bytes > 0:
                writes.append(("", "memory.max", str(res.memory_limit_in_bytes)))
                writes.append(("", "memory.swap.max", "0"))
            for key, value in res.unified.items():
                writes.append(("", key, value))
        else:
            if res.cpu_period > 0:
                writes.append(("cpu", "cpu.cfs_period_us", str(res.cpu_period)))
            if res.cpu_quota > 0:
                writes.append(("cpu", "cpu.cfs_quota_us", str(res.cpu_quota)))
            if res.cpu_shares > 0:
                writes.append(("cpu", "cpu.shares", str(res.cpu_shares)))
            if res.memory_limit_in_bytes > 0:
                writes.append(("memory", "memory.limit_in_bytes", str(res.memory_limit_in_bytes)))
            for key, value in res.unified.items():
                # v2 names carried in ``unified``; v1 knows only the pids one by that name
                if key == "pids.max":
                    writes.append(("pids", "pids.max", value))
                else:
                    raise CgroupError(f"unified resource {key!r} needs cgroup v2 "
                                      "(this host has cgroup v1)")
        for controller, name, value in writes:
            path = cg.file(controller, name)
            if path is None:
                raise CgroupError(f"cgroup controller {controller or 'v2'} is not available "
                                  f"for {name}")
            try:
                path.write_text(value)
            except OSError as err:
                raise CgroupError(f"cannot set {name}={value} in {path.parent}: "
                                  f"{err.strerror}") from None

    def remove(self, cg: CgroupSet) -> None:
        for d in cg.dirs.values():
            self._rmdir(Path(d))

    def _rmdir(self, d: Path) -> None:
        if not d.exists():
            return
        for child in [p for p in d.iterdir() if p.is_dir()]:
            self._rmdir(child)
        with contextlib.suppress(OSError):
            procs = (d / "cgroup.procs").read_text().split()
            for pid in procs:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
        with contextlib.suppress(OSError):
            d.rmdir()

    def pids(self, cg: CgroupSet) -> list[int]:
        for path in cg.procs_files():
            with contextlib.suppress(OSError):
                return [int(p) for p in Path(path).read_text().split()]
        return []

    # -- stats ----------------------------------------------------------------------
    def oom_events_file(self, cg: CgroupSet) -> str:
        name = "memory.events" if self.v2 else "memory.oom_control"
        path = cg.file("" if self.v2 else "memory", name)
        return str(path) if path else ""

    def cpu_usage_ns(self, cg: CgroupSet) -> int | None:
        if self.v2:
            path = cg.file("", "cpu.stat")
            for line in _read_lines(path):
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) * 1000
            return None
        text = _read(cg.file("cpuacct", "cpuacct.usage"))
        return int(text) if text else None

    def memory(self, cg: CgroupSet) -> tuple[int, int, int] | None:
        """(usage, working set, rss) in bytes."""
        if self.v2:
            usage_text = _read(cg.file("", "memory.current"))
            stat_path = cg.file("", "memory.stat")
            inactive_key, rss_key = "inactive_file", "anon"
        else:
            usage_text = _read(cg.file("memory", "memory.usage_in_bytes"))
            stat_path = cg.file("memory", "memory.stat")
            inactive_key, rss_key = "total_inactive_file", "total_rss"
        if not usage_text:
            return None
        usage = int(usage_text)
        stats = {}
        for line in _read_lines(stat_path):
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                stats[key] = int(value)
        working = max(0, usage - stats.get(inactive_key, 0))
        return usage, working, stats.get(rss_key, 0)

    def process_count(self, cg: CgroupSet) -> int | None:
        text = _read(cg.file("" if self.v2 else "pids", "pids.current"))
        return int(text) if text else None


def _read(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _read_lines(path: Path | None) -> list[str]:
    text = _read(path)
    return text.splitlines() if text else []
