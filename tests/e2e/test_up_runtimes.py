"""``pilothouse up --runtime containerd`` and ``--runtime containerd-cri``: a private
containerd started, fed the local images and supervised by ``up``; pods run in real OCI
containers (our shim's containerd backend in front of it, or containerd's own CRI
plugin), ``kubectl logs`` and ``kubectl exec`` reach them, and stopping ``up`` leaves
no process, mount, network namespace or bridge behind.

One cluster per runtime (module-scoped, parametrized); the last test stops it."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.e2e.test_workloads import pods, running, wait_until

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ctd
spec:
  replicas: 2
  selector:
    matchLabels: {app: ctd}
  template:
    metadata:
      labels: {app: ctd}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "echo hello from $(hostname); exec sleep 3600"]
"""


@pytest.fixture(scope="module", params=["containerd", "containerd-cri"])
def runtime_cluster(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    """(the cluster, its --runtime)"""
    # a short directory: containerd's sockets live in DATA_DIR/containerd
    running_cluster = start_cluster(tmp_path_factory.mktemp("ctd"),
                                    ["--runtime", request.param])
    try:
        yield running_cluster, request.param
    finally:
        stop_cluster(running_cluster)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def mounts_under(path: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(f"{path}/")]


def netns_alive(inode: int) -> list[str]:
    """Namespace files (/run/netns) and processes still holding network namespace
    ``inode``."""
    holders = []
    if os.path.isdir("/run/netns"):
        for name in os.listdir("/run/netns"):
            try:
                if os.stat(f"/run/netns/{name}").st_ino == inode:
                    holders.append(f"/run/netns/{name}")
            except OSError:
                continue
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == f"net:[{inode}]":
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                    holders.append(f"pid {entry}: {b' '.join(cmdline).decode()}")
            except OSError:
                continue
    return holders


def pod_netns_inode(cluster: Cluster, ns: str, pod: str) -> int:
    link = cluster.kubectl("exec", "-n", ns, pod, "--", "readlink",
                           "/proc/self/ns/net").stdout.strip()
    match = re.fullmatch(r"net:\[(\d+)\]", link)
    assert match, link
    return int(match.group(1))


def test_deployment_runs_with_logs_and_exec(runtime_cluster: tuple[Cluster, str]) -> None:
    cluster, runtime = runtime_cluster
    node = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    # the Node says which CRI runtime its kubelet talks to
    expected = {"containerd": "pilothouse-containerd://", "containerd-cri": "containerd://"}
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith(expected[runtime])
    cluster.kubectl("apply", "-f", "-", input=DEPLOYMENT)
    names = wait_until(lambda: len(running(pods(cluster, "default", "app=ctd"))) == 2 and
                       running(pods(cluster, "default", "app=ctd")), "2 pods Running",
                       within=120)
    assert isinstance(names, list)
    for name in names:
        log = wait_until(lambda n=name: cluster.kubectl("logs", n).stdout, "a log line")
        assert log == f"hello from {name}\n"
        pod = json.loads(cluster.kubectl("get", "pod", name, "-o", "json").stdout)
        assert pod["status"]["containerStatuses"][0]["containerID"].startswith(
            expected[runtime])
        assert ipaddress.ip_address(pod["status"]["podIP"]) in \
            ipaddress.ip_network(cluster.pod_cidr)
    # exec: the command's output and exit code come back through apiserver and kubelet
    done = cluster.kubectl("exec", names[0], "--", "sh", "-c", "echo $((6*7)); exit 3",
                           check=False)
    assert (done.stdout, done.returncode) == ("42\n", 3)


def containerd_pids(cluster: Cluster) -> list[int]:
    config = f"{cluster.data_dir}/containerd/config.toml"
    return [pid for pid, cmdline in _processes()
            if cmdline[:1] == ["containerd"] and config in cmdline]


def _processes() -> list[tuple[int, list[str]]]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            out.append((int(entry), raw.decode(errors="replace").split("\0")[:-1]))
    return out


def test_containerd_is_restarted_and_pods_keep_running(
        runtime_cluster: tuple[Cluster, str]) -> None:
    """containerd is one of ``up``'s supervised children: killed, it is started again;
    the pods' runc shims outlive it, so the same containers answer exec afterwards."""
    cluster, _ = runtime_cluster
    names = running(pods(cluster, "default", "app=ctd"))
    assert len(names) == 2
    before = containerd_pids(cluster)
    assert len(before) == 1
    os.kill(before[0], signal.SIGKILL)
    wait_until(lambda: containerd_pids(cluster) not in ([], before), "containerd restarted")

    def exec_works() -> bool:
        done = cluster.kubectl("exec", names[0], "--", "echo", "still here", check=False)
        return done.stdout == "still here\n"

    wait_until(exec_works, "exec after containerd's restart", within=60)
    assert running(pods(cluster, "default", "app=ctd")) == names
    restarts = [s["restartCount"] for name in names for s in json.loads(cluster.kubectl(
        "get", "pod", name, "-o", "json").stdout)["status"]["containerStatuses"]]
    assert restarts == [0, 0]


def test_stop_leaves_nothing_behind(runtime_cluster: tuple[Cluster, str]) -> None:
    cluster, _ = runtime_cluster
    names = running(pods(cluster, "default", "app=ctd"))
    assert len(names) == 2  # the pods of the test above, whose traces must go
    inodes = [pod_netns_inode(cluster, "default", name) for name in names]
    assert processes_mentioning(str(cluster.data_dir))  # containerd, the shim, ...
    cluster.process.terminate()
    assert cluster.process.wait(timeout=90) == 0
    assert processes_mentioning(str(cluster.data_dir)) == []
    assert mounts_under(cluster.data_dir) == []
    # (a process SIGKILLed a moment ago may still be leaving its namespace)
    wait_until(lambda: not any(netns_alive(inode) for inode in inodes),
               "the pods' network namespaces gone", within=10)
    assert not os.path.exists(f"/sys/class/net/{cluster.bridge}")
    assert stop_cluster(cluster) == 0
