"""The containerd backend's pure parts: API protos, chain IDs, OCI specs, CNI exec, the logger."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pilothouse.gen.containerd.events import task_pb2 as task_events
from pilothouse.gen.containerd.services.containers.v1 import containers_pb2
from pilothouse.gen.containerd.services.content.v1 import content_pb2
from pilothouse.gen.containerd.services.tasks.v1 import tasks_pb2
from pilothouse.gen.containerd.types import task_pb2
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim import logs
from pilothouse.runtime_shim.containerd import ocispec
from pilothouse.runtime_shim.containerd.cni import CNI, CNIError
from pilothouse.runtime_shim.containerd.images import chain_ids
from pilothouse.runtime_shim.spec import ProcessSpec


def _numbers(message: type) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]


def test_containerd_protos_match_containerd_1_6() -> None:
    assert tasks_pb2.DESCRIPTOR.services_by_name["Tasks"].full_name == \
        "containerd.services.tasks.v1.Tasks"
    assert _numbers(tasks_pb2.CreateTaskRequest) == {
        "container_id": 1, "rootfs": 3, "stdin": 4, "stdout": 5, "stderr": 6, "terminal": 7,
        "checkpoint": 8, "options": 9, "runtime_path": 10}
    assert _numbers(containers_pb2.Container)["extensions"] == 10
    assert _numbers(containers_pb2.Container)["snapshot_key"] == 7
    assert _numbers(task_pb2.Process)["exit_status"] == 9
    assert task_pb2.Status.Value("STOPPED") == 3
    assert _numbers(task_events.TaskExit) == {"container_id": 1, "id": 2, "pid": 3,
                                               "exit_status": 4, "exited_at": 5}
    assert task_events.TaskExit.DESCRIPTOR.full_name == "containerd.events.TaskExit"
    assert content_pb2.WriteAction.Value("COMMIT") == 2
    assert _numbers(content_pb2.WriteContentRequest)["labels"] == 7


def test_chain_ids_follow_the_oci_rule() -> None:
    a, b, c = ("sha256:" + ch * 64 for ch in "abc")
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([]) == []


def _spec(**kw: object) -> dict[str, object]:
    proc = ProcessSpec(argv=["sleep", "1"], env=["A=1"], cwd="/w", uid=1000, gid=1000,
                       groups=[5])
    base: dict[str, object] = {"process": proc, "namespaces": ocispec.Namespaces(),
                               "cgroups_path": "/p/sb/c"}
    base.update(kw)
    return ocispec.runtime_spec(ocispec.SpecInput(**base))  # type: ignore[arg-type]


def test_container_spec_joins_the_sandbox_namespaces() -> None:
    ns = ocispec.Namespaces(pid="", ipc="/proc/7/ns/ipc", uts="/proc/7/ns/uts",
                            network="/run/netns/phc-x")
    spec = _spec(namespaces=ns, hostname="ignored")
    linux = spec["linux"]
    assert isinstance(linux, dict)
    assert linux["namespaces"] == [
        {"type": "pid"}, {"type": "ipc", "path": "/proc/7/ns/ipc"},
        {"type": "uts", "path": "/proc/7/ns/uts"}, {"type": "mount"},
        {"type": "network", "path": "/run/netns/phc-x"}]
    assert "hostname" not in spec  # runc refuses a hostname in a joined UTS namespace
    assert linux["cgroupsPath"] == "/p/sb/c"
    process = spec["process"]
    assert isinstance(process, dict)
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [5]}
    assert process["args"] == ["sleep", "1"] and process["cwd"] == "/w"
    assert "oomScoreAdj" not in process  # root here lacks CAP_SYS_RESOURCE


def test_host_namespaces_are_left_out_and_own_uts_gets_the_hostname() -> None:
    spec = _spec(namespaces=ocispec.Namespaces(network=None, uts=""), hostname="web")
    linux = spec["linux"]
    assert isinstance(linux, dict)
    kinds = [n["type"] for n in linux["namespaces"]]
    assert "network" not in kinds and "uts" in kinds
    assert spec["hostname"] == "web"


def test_resources_and_binds() -> None:
    res = cri.LinuxContainerResources(memory_limit_in_bytes=64 << 20, cpu_quota=50000,
                                      cpu_period=100000, cpu_shares=512)
    res.unified["pids.max"] = "100"
    spec = _spec(resources=res, binds=[ocispec.Bind("/h/ro", "/ro", readonly=True),
                                       ocispec.Bind("/h/shm", "/dev/shm")])
    linux = spec["linux"]
    assert isinstance(linux, dict)
    r = linux["resources"]
    assert r["memory"] == {"limit": 64 << 20}
    assert r["cpu"] == {"shares": 512, "quota": 50000, "period": 100000}
    assert r["pids"] == {"limit": 100}
    assert r["devices"][0] == {"allow": False, "access": "rwm"}
    mounts = spec["mounts"]
    assert isinstance(mounts, list)
    ro = next(m for m in mounts if m["destination"] == "/ro")
    assert ro["type"] == "bind" and "ro" in ro["options"] and "rbind" in ro["options"]
    shm = [m for m in mounts if m["destination"] == "/dev/shm"]
    assert len(shm) == 1 and shm[0]["source"] == "/h/shm"  # a bind replaces the default


def test_privileged_gets_every_capability_and_no_masks() -> None:
    spec = _spec(privileged=True)
    process, linux = spec["process"], spec["linux"]
    assert isinstance(process, dict) and isinstance(linux, dict)
    assert "CAP_SYS_ADMIN" in process["capabilities"]["bounding"]
    assert "maskedPaths" not in linux
    plain = _spec()
    assert isinstance(plain["process"], dict)
    assert "CAP_SYS_ADMIN" not in plain["process"]["capabilities"]["bounding"]


FAKE_PLUGIN = """#!/bin/sh
conf=$(cat)
echo "$CNI_COMMAND $(basename "$0") $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME" >> "$LOG"
echo "$conf" > "$LOG.$CNI_COMMAND.$(basename "$0")"
if [ -e "$FAIL_ON" ] && [ "$(basename "$0")" = portmap ] && [ "$CNI_COMMAND" = ADD ]; then
  echo '{"code": 11, "msg": "portmap broke"}'; exit 1
fi
if [ "$CNI_COMMAND" = ADD ] && [ "$(basename "$0")" = bridge ]; then
  echo '{"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.5/24"}]}'
else
  echo '{"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.5/24"}], "from": "portmap"}'
fi
"""


async def test_cni_add_chains_results_and_del_runs_in_reverse(tmp_path: Path,
                                                               monkeypatch: object) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bridge", "portmap"):
        (bin_dir / name).write_text(FAKE_PLUGIN.replace("$LOG", str(tmp_path / "log"))
                                    .replace("$FAIL_ON", str(tmp_path / "fail")))
        (bin_dir / name).chmod(0o755)
    cni = CNI(root=tmp_path / "cni", bin_dir=str(bin_dir), bridge="br9", subnet="10.9.0.0/24")
    assert cni.ready() == ""
    conflist = json.loads((tmp_path / "cni" / "10-pilothouse.conflist").read_text())
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap"]
    ip = await cni.add("sb1", "/run/netns/x", pod_name="p", pod_namespace="ns",
                       port_mappings=[{"hostPort": 8080, "containerPort": 80,
                                       "protocol": "tcp"}])
    assert ip == "10.9.0.5"
    portmap_conf = json.loads((tmp_path / "log.ADD.portmap").read_text())
    assert portmap_conf["prevResult"]["ips"] == [{"address": "10.9.0.5/24"}]
    assert portmap_conf["runtimeConfig"] == {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    bridge_conf = json.loads((tmp_path / "log.ADD.bridge").read_text())
    assert "runtimeConfig" not in bridge_conf and "prevResult" not in bridge_conf
    await cni.delete("sb1", "/run/netns/x")
    lines = (tmp_path / "log").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ADD", "bridge"], ["ADD", "portmap"], ["DEL", "portmap"], ["DEL", "bridge"]]
    assert lines[0].split()[2:] == ["sb1", "/run/netns/x", "eth0"]
    del_conf = json.loads((tmp_path / "log.DEL.bridge").read_text())
    assert del_conf["prevResult"]["from"] == "portmap"  # the cached ADD result
    assert not (tmp_path / "cni" / "results" / "sb1").exists()


async def test_cni_failure_is_rolled_back_with_the_plugin_message(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bridge", "portmap"):
        (bin_dir / name).write_text(FAKE_PLUGIN.replace("$LOG", str(tmp_path / "log"))
                                    .replace("$FAIL_ON", str(tmp_path / "fail")))
        (bin_dir / name).chmod(0o755)
    (tmp_path / "fail").touch()
    cni = CNI(root=tmp_path / "cni", bin_dir=str(bin_dir), bridge="br9", subnet="10.9.0.0/24")
    try:
        await cni.add("sb2", "/run/netns/y")
    except CNIError as err:
        assert "portmap broke" in str(err)
    else:
        raise AssertionError("a failing plugin must fail ADD")
    lines = [line.split()[:2] for line in (tmp_path / "log").read_text().splitlines()]
    assert lines == [["ADD", "bridge"], ["ADD", "portmap"], ["DEL", "bridge"]]


def test_cni_reports_missing_plugins(tmp_path: Path) -> None:
    cni = CNI(root=tmp_path / "cni", bin_dir=str(tmp_path), bridge="b", subnet="10.9.0.0/24")
    assert "bridge" in cni.ready() and "portmap" in cni.ready()


def test_logger_writes_cri_records_reopens_and_flushes_on_sigterm(tmp_path: Path) -> None:
    log_path = tmp_path / "c" / "0.log"
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ready_r, ready_w = os.pipe()

    def child_fds() -> None:  # fds 3, 4, 5 as containerd's shim passes them
        high = [os.dup2(fd, 100 + i) for i, fd in enumerate((out_r, err_r, ready_w))]
        for target, fd in zip((3, 4, 5), high, strict=True):
            os.dup2(fd, target)
        for fd in (out_w, err_w, ready_r, *high):
            os.close(fd)

    proc = subprocess.Popen(
        [sys.executable, "-m", "pilothouse.runtime_shim.containerd.logger", "pids",
         str(tmp_path / "pids"), "log", str(log_path)],
        preexec_fn=child_fds, close_fds=False, env={**os.environ, "CONTAINER_ID": "abc"})
    try:
        for fd in (out_r, err_r, ready_w):
            os.close(fd)
        assert os.read(ready_r, 1) == b""  # closed once ready
        assert (tmp_path / "pids" / "abc").read_text() == str(proc.pid)
        os.write(out_w, b"one\ntw")
        os.write(err_w, b"oops\n")
        _until(lambda: log_path.exists() and b"oops" in log_path.read_bytes()
               and b"one" in log_path.read_bytes())
        log_path.rename(tmp_path / "old.log")
        proc.send_signal(signal.SIGUSR1)
        _until(log_path.exists)
        os.write(out_w, b"o\n")
        _until(lambda: b"two" in log_path.read_bytes())
        os.write(out_w, b"tail")
        proc.send_signal(signal.SIGTERM)  # the writers are still open: the shim holds them
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        for fd in (out_w, err_w, ready_r):
            os.close(fd)
    old = [logs.parse_record(line)[1:] for line in
           (tmp_path / "old.log").read_bytes().splitlines(keepends=True)]
    assert sorted(old) == [("stderr", "F", b"oops"), ("stdout", "F", b"one")]
    new = [logs.parse_record(line)[1:] for line in log_path.read_bytes().splitlines(
        keepends=True)]
    assert new == [("stdout", "F", b"two"), ("stdout", "P", b"tail")]


def _until(condition: object, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)
