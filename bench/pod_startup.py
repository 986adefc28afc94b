"""Pod startup: N pods created at once, creation -> Running as seen through a watch.

    python bench/pod_startup.py            # 100 pods
    python bench/pod_startup.py --quick    # 20 pods
    python bench/pod_startup.py --quick --runtime containerd-cri

Runs the real pieces as separate processes: ``pilothouse apiserver`` (SQLite
in a temporary directory), ``pilothouse runtime-shim --backend process`` (on a
bridge and pod CIDR of its own) and ``pilothouse kubelet``. Pods are busybox
``sleep`` with ``imagePullPolicy: IfNotPresent`` (the image is imported
first, so no pull is timed), bound to the node at creation (no scheduler).
A pod's latency is from just before its create call to the watch event that
shows it Running with all containers running. Also reports the kubelet's RSS
with every pod running, CPU per pod of each component, CRI calls per pod and
apiserver writes per pod. ``--runtime containerd-cri`` runs the kubelet on a
private containerd's own CRI plugin instead of our shim (pause and busybox
imported first; ``--cgroup-root`` set so it has pod stats). Needs root
(network namespaces). Everything started is stopped and removed at the end.
Ends with one line ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pilothouse.client import connect
from pilothouse.gen.k8s.core.v1 import core_pb2

PILOTHOUSE = [sys.executable, "-m", "pilothouse.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_cidr() -> str:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True,
                          check=False).stdout
    while True:
        cidr = f"10.{secrets.randbelow(100) + 150}.{secrets.randbelow(256)}.0/24"
        if cidr.rsplit(".", 1)[0] + "." not in used:
            return cidr


async def wait_until(check, within: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not happen within {within}s")
        await asyncio.sleep(0.1)


def make_pod(i: int, node: str) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = f"bench-{i}"
    pod.metadata.namespace = "default"
    pod.spec.nodeName = node
    pod.spec.terminationGracePeriodSeconds = 1
    c = pod.spec.containers.add(name="main", image="busybox", imagePullPolicy="IfNotPresent")
    c.command.extend(["sleep", "3600"])
    return pod


def running(pod: core_pb2.Pod) -> bool:
    return pod.status.phase == "Running" and len(pod.status.containerStatuses) == 1 and \
        pod.status.containerStatuses[0].state.HasField("running")


def runtime_means(kubelet_url: str) -> dict[str, float]:
    """Mean CRI call time per operation (ms), from the kubelet's own histograms."""
    import httpx

    text = httpx.get(f"{kubelet_url}/metrics", timeout=10).text
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        for suffix, target in (("_sum{", sums), ("_count{", counts)):
            prefix = "kubelet_runtime_operations_duration_seconds" + suffix
            if line.startswith(prefix):
                op = line.split('operation_type="', 1)[1].split('"', 1)[0]
                target[op] = float(line.rsplit(" ", 1)[1])
    wanted = ("run_pod_sandbox", "create_container", "start_container", "list_containers",
              "container_status")
    return {op: round(1000 * sums[op] / counts[op], 1) for op in wanted if counts.get(op)}


def apiserver_writes(api_http: str) -> dict[str, int]:
    """Writes the apiserver has served so far (``apiserver_request_total``), by resource
    (and subresource): creates, updates, patches and deletes."""
    import httpx

    text = httpx.get(f"{api_http}/metrics", timeout=10).text
    writes: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if labels.get("verb", "").upper() not in ("CREATE", "UPDATE", "PATCH", "DELETE",
                                                   "POST", "PUT"):
            continue
        key = labels.get("resource", "?") + (f"/{labels['subresource']}"
                                            if labels.get("subresource") else "")
        writes[key] = writes.get(key, 0) + int(float(line.rsplit(" ", 1)[1]))
    return writes


def runtime_calls(kubelet_url: str) -> dict[str, int]:
    """How many CRI calls of each kind the kubelet made (its own counter)."""
    import httpx

    text = httpx.get(f"{kubelet_url}/metrics", timeout=10).text
    calls: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("kubelet_runtime_operations_total{"):
            op = line.split('operation_type="', 1)[1].split('"', 1)[0]
            calls[op] = calls.get(op, 0) + int(float(line.rsplit(" ", 1)[1]))
    return calls


async def measure(api: str, api_http: str, pods: int, node: str, kubelet_pid: int,
                  components: dict[str, int], profile: Path | None = None) -> dict[str, Any]:
    client = connect(f"grpc://{api}")
    seen: dict[str, float] = {}
    started: dict[str, float] = {}
    try:
        listed = await client.list(core_pb2.Pod, namespace="default")
        done = asyncio.Event()

        async def watch() -> None:
            async with client.watch(core_pb2.Pod, namespace="default",
                                    resource_version=listed.resource_version) as events:
                async for ev in events:
                    name = ev.object.metadata.name
                    if name not in seen and ev.type != "DELETED" and running(ev.object):
                        seen[name] = time.perf_counter()
                        if len(seen) == pods:
                            done.set()
                            return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)  # the watch is open before the first create

        writes_before = await asyncio.to_thread(apiserver_writes, api_http)
        spies = start_profilers(profile, components) if profile is not None else []
        cpu_before = {name: cpu_seconds(pid) for name, pid in components.items()}

        async def create(i: int) -> None:
            started[f"bench-{i}"] = time.perf_counter()
            await client.create(make_pod(i, node))

        await asyncio.gather(*(create(i) for i in range(pods)))
        try:
            await asyncio.wait_for(done.wait(), timeout=120 + pods)
        except TimeoutError:
            raise SystemExit(f"bench: only {len(seen)} of {pods} pods became Running") from None
        watcher.cancel()
        rss = rss_bytes(kubelet_pid)
        # CPU each component spent from the first create to the last pod Running
        # (start-up excluded), per pod; the shim's zygote and supervisors not included
        cpu_ms_per_pod = {name: round((cpu_seconds(pid) - cpu_before[name]) * 1000 / pods, 1)
                          for name, pid in components.items()}
        stop_profilers(spies)
        # writes caused by the pod starts: those until every pod ran, and any that follow
        # (a later status update) within a settling time of a few PLEG relists
        await asyncio.sleep(SETTLE)
        writes_after = await asyncio.to_thread(apiserver_writes, api_http)
        writes = {k: round((v - writes_before.get(k, 0)) / pods, 2)
                  for k, v in sorted(writes_after.items()) if v > writes_before.get(k, 0)}
        writes.pop("pods", None)  # the bench's own creates
        latencies = [seen[n] - started[n] for n in started]
        return {"pods": pods, "p50_s": round(percentile(latencies, 50), 3),
                "p99_s": round(percentile(latencies, 99), 3),
                "max_s": round(max(latencies), 3),
                "kubelet_rss_mib": round(rss / 2**20, 1), "cpu_ms_per_pod": cpu_ms_per_pod,
                "apiserver_writes_per_pod": writes}
    finally:
        await client.close()


SETTLE = 3.0


def start_profilers(directory: Path, components: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` of each component for the burst: collapsed stacks (``NAME.txt``,
    one line per stack and its sample count, what flame graph tools read) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if spy is None:
        raise SystemExit("bench: --profile needs py-spy on PATH")
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "100",
                              "--nonblocking", "--format", "raw",
                              "--output", str(directory / f"{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in components.items()]


def stop_profilers(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    for spy in spies:
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def cleanup_runtime(shim_root: Path, bridge: str, cgroup_parent: str) -> None:
    """Kill whatever the shim left (supervisors, containers, pid holders) and its network."""
    for state in shim_root.glob("containers/*/state.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            doc = json.loads(state.read_text())
            for pid in (doc.get("pid"), doc.get("supervisor_pid")):
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
    for sandbox in shim_root.glob("sandboxes/*/sandbox.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            doc = json.loads(sandbox.read_text())
            if doc.get("pid_holder"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(doc["pid_holder"], signal.SIGKILL)
            if doc.get("netns"):
                subprocess.run(["ip", "netns", "del", doc["netns"]], capture_output=True,
                               check=False)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mountpoint = line.split()[4]
        if mountpoint.startswith(str(shim_root) + "/"):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / cgroup_parent.lstrip("/")
        if top.is_dir():
            for d in sorted((p for p in top.rglob("*") if p.is_dir()),
                            key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


async def remove_all_sandboxes(endpoint: str) -> None:
    """containerd's CRI: stop and remove every pod (their network namespaces go with them)."""
    import grpc

    from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
    from pilothouse.gen.cri.runtime.v1 import api_pb2_grpc as cri_grpc

    with contextlib.suppress(grpc.aio.AioRpcError):
        async with grpc.aio.insecure_channel(endpoint) as channel:
            runtime = cri_grpc.RuntimeServiceStub(channel)
            listed = await runtime.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=30)
            for sb in listed.items:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await runtime.StopPodSandbox(cri.StopPodSandboxRequest(
                        pod_sandbox_id=sb.id), timeout=60)
                    await runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(
                        pod_sandbox_id=sb.id), timeout=60)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def wait_for_socket(path: Path, proc: subprocess.Popen[bytes], what: str) -> None:
    async def up() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {proc.returncode}")
        return path.exists()
    await wait_until(up, 30, f"{what} listening")


async def wait_for_node(api: str, node: str, kubelet: subprocess.Popen[bytes]) -> None:
    client = connect(f"grpc://{api}")
    try:
        async def ready() -> bool:
            if kubelet.poll() is not None:
                raise SystemExit(f"bench: the kubelet exited with {kubelet.returncode}")
            try:
                n = await client.get(core_pb2.Node, node)
            except Exception:
                return False
            return any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
        await wait_until(ready, 60, "the node Ready")
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 pods (under a minute)")
    parser.add_argument("--pods", type=int, default=None)
    parser.add_argument("--runtime", choices=["process", "containerd-cri"], default="process",
                        help="our shim's process backend, or containerd's own CRI")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="py-spy samples (collapsed stacks) of the kubelet, shim and "
                        "apiserver during the burst, written to DIR")
    args = parser.parse_args()
    pods = args.pods or (20 if args.quick else 100)
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces for pod sandboxes)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="ph-bench-", dir="/tmp"))
    tag = secrets.token_hex(3)
    bridge, cgroup_parent, cidr = f"phb{tag}", f"/pilothouse-bench-{tag}", free_cidr()
    node = "bench-node"
    http_port, grpc_port, kubelet_port = free_port(), free_port(), free_port()
    api = f"127.0.0.1:{grpc_port}"
    shim_root = work / "shim"
    sock = work / "cri.sock"
    procs: list[subprocess.Popen[bytes]] = []
    daemon: Any = None  # containerd-cri: the private containerd
    logs = open(work / "components.log", "wb")  # noqa: SIM115 - closed in finally
    try:
        subprocess.run([*PILOTHOUSE, "image", "build", "busybox", "--output",
                        str(work / "busybox.tar")], check=True, capture_output=True)
        procs.append(subprocess.Popen(
            [*PILOTHOUSE, "apiserver", "--data-dir", str(work / "api"), "--port",
             str(http_port), "--grpc-port", str(grpc_port)], stdout=logs, stderr=logs))
        extra: list[str] = []
        if args.runtime == "containerd-cri":
            from pilothouse.runtime_shim.containerd.daemon import Containerd
            from pilothouse.runtime_shim.images import oci

            oci.write_oci_layout(work / "pause.tar", [oci.build_pause()])
            daemon = Containerd(work / "ctd", bridge=bridge, subnet=cidr)
            daemon.start()
            for archive in ("busybox.tar", "pause.tar"):
                daemon.import_image(work / archive)
            sock = Path(daemon.address)
            assert daemon.process is not None
            shim_pid = daemon.process.pid  # containerd itself (its runc shims not counted)
            extra = ["--cgroup-root", cgroup_parent]
        else:
            subprocess.run([*PILOTHOUSE, "image", "import", str(work / "busybox.tar"),
                            "--root", str(shim_root)], check=True, capture_output=True)
            shim = subprocess.Popen(
                [*PILOTHOUSE, "runtime-shim", "--backend", "process", "--listen",
                 f"unix://{sock}", "--root", str(shim_root), "--bridge", bridge, "--pod-cidr",
                 cidr, "--cgroup-parent", cgroup_parent, "--log-level", "WARNING"],
                stdout=logs, stderr=logs)
            procs.append(shim)
            shim_pid = shim.pid
            asyncio.run(wait_for_socket(sock, shim, "the runtime shim"))
        kubelet = subprocess.Popen(
            [*PILOTHOUSE, "kubelet", "--node-name", node, "--runtime-endpoint",
             f"unix://{sock}", "--apiserver", f"grpc://{api}", "--root-dir",
             str(work / "kubelet"), "--port", str(kubelet_port), "--address", "127.0.0.1",
             # room for every pod (the default, 10 x cores, is 20 on this 2-core machine)
             "--max-pods", str(max(110, pods)), *extra],
            stdout=logs, stderr=logs)
        procs.append(kubelet)
        asyncio.run(wait_for_node(api, node, kubelet))
        kubelet_url = f"http://127.0.0.1:{kubelet_port}"
        calls_before = runtime_calls(kubelet_url)
        figures: dict[str, object] = dict(asyncio.run(measure(
            api, f"http://127.0.0.1:{http_port}", pods, node, kubelet.pid,
            {"apiserver": procs[0].pid, "runtime": shim_pid, "kubelet": kubelet.pid},
            args.profile)))
        figures["backend"] = args.runtime
        figures["cri_mean_ms"] = runtime_means(kubelet_url)
        calls = runtime_calls(kubelet_url)
        figures["cri_calls"] = calls
        # CRI calls per pod during the burst and its settling time (start-up excluded)
        per_pod = {op: round((n - calls_before.get(op, 0)) / pods, 2)
                   for op, n in sorted(calls.items()) if n > calls_before.get(op, 0)}
        per_pod["total"] = round(sum(per_pod.values()), 2)
        figures["cri_calls_per_pod"] = per_pod
        figures["cpu_s"] = {"kubelet": round(cpu_seconds(kubelet.pid), 2),
                            "runtime": round(cpu_seconds(shim_pid), 2),
                            "apiserver": round(cpu_seconds(procs[0].pid), 2)}
    finally:
        for proc in reversed(procs):
            stop(proc)
        if daemon is not None:
            asyncio.run(remove_all_sandboxes(f"unix://{daemon.address}"))
            daemon.cleanup()
        cleanup_runtime(shim_root, bridge, cgroup_parent)
        logs.close()
        shutil.rmtree(work, ignore_errors=True)
    print("BENCH " + json.dumps(figures, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
