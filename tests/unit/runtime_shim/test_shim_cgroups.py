"""cgroup v1 and v2 code paths of the process backend, on fake cgroup roots.

This host runs cgroup v1; the v2 path (one hierarchy, controllers enabled
through cgroup.subtree_control, cpu.max/memory.max, memory.events) is
exercised here with a directory laid out as the kernel would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim.process.cgroups import CgroupError, Cgroups


def fake_v2(root: Path, *levels: str) -> None:
    """A cgroup2 root and the cgroups the kernel would show under it."""
    root.mkdir(exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    path = root
    for level in levels:
        path = path / level
        path.mkdir()
        (path / "cgroup.controllers").write_text("cpu memory pids\n")
        (path / "cgroup.subtree_control").write_text("")


def test_v2_create_enables_controllers_along_the_path_and_applies_limits(tmp_path: Path) -> None:
    fake_v2(tmp_path, "ph", "sb")
    cgroups = Cgroups(root=tmp_path, default_parent="/ph")
    assert cgroups.version == 2 and cgroups.writable()
    cg = cgroups.paths_for("", "sb", "c")
    assert cg.dirs == {"": str(tmp_path / "ph" / "sb" / "c")}
    cgroups.create(cg)
    assert Path(cg.dirs[""]).is_dir()
    for level in (tmp_path, tmp_path / "ph", tmp_path / "ph" / "sb"):
        assert (level / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    res = cri.LinuxContainerResources(cpu_quota=50000, cpu_period=100000,
                                      memory_limit_in_bytes=64 << 20, cpu_shares=1024)
    res.unified["pids.max"] = "42"
    cgroups.apply(cg, res)
    d = Path(cg.dirs[""])
    assert (d / "cpu.max").read_text() == "50000 100000"
    assert (d / "memory.max").read_text() == str(64 << 20)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "pids.max").read_text() == "42"
    assert (d / "cpu.weight").read_text() == "39"  # shares 1024 → weight, as runc maps it
    assert cg.procs_files() == [str(d / "cgroup.procs")]
    assert cgroups.oom_events_file(cg) == str(d / "memory.events")


def test_v2_controllers_already_enabled_are_not_written_again(tmp_path: Path) -> None:
    fake_v2(tmp_path, "ph")
    (tmp_path / "cgroup.subtree_control").write_text("cpu memory pids\n")
    (tmp_path / "ph" / "cgroup.subtree_control").write_text("memory\n")
    cgroups = Cgroups(root=tmp_path, default_parent="/ph")
    cgroups.create(cgroups.paths_for("", "x"))
    assert (tmp_path / "cgroup.subtree_control").read_text() == "cpu memory pids\n"
    assert (tmp_path / "ph" / "cgroup.subtree_control").read_text() == "+cpu +pids"


def test_v2_stats(tmp_path: Path) -> None:
    fake_v2(tmp_path, "ph")
    cgroups = Cgroups(root=tmp_path, default_parent="/ph")
    cg = cgroups.paths_for("")
    d = Path(cg.dirs[""])
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    (d / "memory.current").write_text("10000\n")
    (d / "memory.stat").write_text("anon 4000\nfile 6000\ninactive_file 2500\n")
    (d / "pids.current").write_text("3\n")
    (d / "cgroup.procs").write_text("11\n12\n")
    assert cgroups.cpu_usage_ns(cg) == 1_500_000
    assert cgroups.memory(cg) == (10000, 7500, 4000)
    assert cgroups.process_count(cg) == 3
    assert cgroups.pids(cg) == [11, 12]


def test_v2_missing_files_read_as_unknown_not_zero(tmp_path: Path) -> None:
    fake_v2(tmp_path, "ph")
    cgroups = Cgroups(root=tmp_path, default_parent="/ph")
    cg = cgroups.paths_for("")
    assert cgroups.cpu_usage_ns(cg) is None
    assert cgroups.memory(cg) is None
    assert cgroups.process_count(cg) is None


def fake_v1(root: Path) -> None:
    for controller in ("cpu", "cpuacct", "memory", "pids"):
        (root / controller).mkdir(parents=True)
        (root / controller / "cgroup.procs").write_text("")


def test_v1_one_directory_per_controller_and_its_own_file_names(tmp_path: Path) -> None:
    fake_v1(tmp_path)
    cgroups = Cgroups(root=tmp_path, default_parent="/ph")
    assert cgroups.version == 1
    cg = cgroups.paths_for("/kubepods/pod1", "c")
    assert cg.dirs["memory"] == str(tmp_path / "memory" / "kubepods" / "pod1" / "c")
    cgroups.create(cg)
    res = cri.LinuxContainerResources(cpu_quota=20000, cpu_period=100000,
                                      memory_limit_in_bytes=1 << 20)
    res.unified["pids.max"] = "7"
    cgroups.apply(cg, res)
    assert Path(cg.dirs["cpu"], "cpu.cfs_quota_us").read_text() == "20000"
    assert Path(cg.dirs["memory"], "memory.limit_in_bytes").read_text() == str(1 << 20)
    assert Path(cg.dirs["pids"], "pids.max").read_text() == "7"
    assert cgroups.oom_events_file(cg) == str(Path(cg.dirs["memory"], "memory.oom_control"))
    with pytest.raises(CgroupError, match="needs cgroup v2"):
        cgroups.apply(cg, cri.LinuxContainerResources(unified={"memory.high": "1"}))
