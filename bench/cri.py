"""CRI latency: RunPodSandbox + CreateContainer + StartContainer per pod, per backend.

    python bench/cri.py            # 50 pods per backend
    python bench/cri.py --quick    # 10 pods per backend

Backends: our process backend (in-process shim on a unix socket), our
containerd backend (the same shim driving a private containerd over its gRPC
API) and, as the reference, containerd's own CRI plugin (a private containerd,
Debian's 1.6, runc). Each pod is one sandbox and one busybox container running ``sleep``;
pods are created one after another and all removed at the end; the process backend
is also run with every pod started at once (``process_all_at_once``). For the process
backend the figures include the CPU per pod of everything on the shim's side (shim,
client, zygote, supervisors, the containers' set-up), measured through cgroups. Needs
root.
Ends with one line ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from pilothouse.runtime_shim.containerd import images as containerd_images
from pilothouse.runtime_shim.containerd.backend import ContainerdBackend
from pilothouse.runtime_shim.containerd.client import Client
from pilothouse.runtime_shim.containerd.daemon import Containerd
from pilothouse.runtime_shim.images import oci
from pilothouse.runtime_shim.images.store import ImageStore
from pilothouse.runtime_shim.process.backend import ProcessBackend
from pilothouse.runtime_shim.server import start_server

CGROUP = Path("/sys/fs/cgroup")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def run_pods(socket: str, pods: int, log_dir: Path, parallel: int = 1,
                   started: Callable[[], None] = lambda: None) -> list[float]:
    """Each pod's sandbox+create+start latency; ``parallel`` pods are started at a time.
    ``started`` is called once every pod runs, before they are removed."""
    channel = grpc.aio.insecure_channel(socket)
    runtime = cri_grpc.RuntimeServiceStub(channel)
    latencies: list[float] = []
    slots = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        async with slots:
            config = cri.PodSandboxConfig(
                metadata=cri.PodSandboxMetadata(name=f"bench-{i}", namespace="bench",
                                                uid=secrets.token_hex(8)),
                hostname=f"bench-{i}", log_directory=str(log_dir / str(i)))
            config.linux.security_context.namespace_options.pid = cri.CONTAINER
            container = cri.ContainerConfig(
                metadata=cri.ContainerMetadata(name="c"),
                image=cri.ImageSpec(image=oci.BUSYBOX_TAG), command=["sleep", "3600"],
                log_path="c.log")
            container.linux.security_context.namespace_options.pid = cri.CONTAINER
            start = time.perf_counter()
            sid = (await runtime.RunPodSandbox(
                cri.RunPodSandboxRequest(config=config))).pod_sandbox_id
            cid = (await runtime.CreateContainer(cri.CreateContainerRequest(
                pod_sandbox_id=sid, config=container, sandbox_config=config))).container_id
            await runtime.StartContainer(cri.StartContainerRequest(container_id=cid))
            latencies.append(time.perf_counter() - start)

    try:
        await asyncio.gather(*(one(i) for i in range(pods)))
        started()
    finally:
        listed = await runtime.ListPodSandbox(cri.ListPodSandboxRequest())
        for sb in listed.items:
            await runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sb.id))
        await channel.close()
    return latencies


def cgroup_cpu_ns(name: str) -> int:
    """CPU time (ns) used in the cgroup ``name`` and below (cgroup v1 cpuacct or v2)."""
    v1 = CGROUP / "cpuacct" / name / "cpuacct.usage"
    if v1.exists():
        return int(v1.read_text())
    for line in (CGROUP / name / "cpu.stat").read_text().splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1]) * 1000
    return 0


def cpu_cgroup_dir(name: str) -> Path:
    return CGROUP / "cpuacct" / name if (CGROUP / "cpuacct").is_dir() else CGROUP / name


def own_cpu_cgroup() -> Path:
    """The directory of this process's cgroup in the hierarchy cpu_cgroup_dir uses."""
    v1 = (CGROUP / "cpuacct").is_dir()
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (v1 and "cpuacct" in controllers.split(",")) or (not v1 and controllers == ""):
            return cpu_cgroup_dir(path.lstrip("/")) if path != "/" else cpu_cgroup_dir("")
    return cpu_cgroup_dir("")


async def bench_process(pods: int, workdir: Path, archive: Path,
                        parallel: int = 1) -> tuple[list[float], float]:
    """Latencies, and the CPU (ms per pod) of everything the shim side ran to start the
    pods: the shim (and this client) moved into a cgroup of its own for the run, the
    zygote, its workers and supervisors that stay there, and the containers' set-up in
    their pod cgroups (their sleep uses none)."""
    root = workdir / f"process-{parallel}"
    ImageStore(root / "images").import_archive(archive)
    tag = secrets.token_hex(3)
    backend = ProcessBackend(root=root, bridge=f"phb{tag}", pod_cidr="10.213.0.0/16",
                             cgroup_parent=f"/pilothouse-bench-{tag}")
    socket = f"unix://{workdir}/p.sock"
    mine = cpu_cgroup_dir(f"pilothouse-bench-cpu-{tag}")
    mine.mkdir()
    home = own_cpu_cgroup()
    (mine / "cgroup.procs").write_text(str(os.getpid()))
    cpu_ms: list[float] = []

    def started() -> None:
        used = cgroup_cpu_ns(mine.name) - before + cgroup_cpu_ns(f"pilothouse-bench-{tag}")
        cpu_ms.append(used / 1e6 / pods)

    server = await start_server(backend, socket)
    before = cgroup_cpu_ns(mine.name)
    try:
        latencies = await run_pods(socket, pods, workdir / f"plogs-{parallel}", parallel,
                                   started)
        return latencies, cpu_ms[0]
    finally:
        await server.stop(None)
        await backend.close()
        (home / "cgroup.procs").write_text(str(os.getpid()))
        deadline = time.monotonic() + 30
        while mine.exists():  # supervisors of removed containers may still be exiting
            try:
                mine.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        subprocess.run(["ip", "link", "del", f"phb{tag}"], capture_output=True, check=False)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            top = hierarchy / f"pilothouse-bench-{tag}"
            if top.is_dir():
                for d in sorted(top.rglob("*"), key=lambda p: -len(p.parts)):
                    if d.is_dir():
                        d.rmdir()
                top.rmdir()


async def bench_containerd(pods: int, workdir: Path, archives: list[Path]) -> list[float]:
    daemon = Containerd(workdir / "ctd", bridge=f"phb{secrets.token_hex(3)}",
                        subnet="10.214.0.0/16")
    await asyncio.to_thread(daemon.start)
    try:
        for archive in archives:
            await asyncio.to_thread(daemon.import_image, archive)
        channel = grpc.aio.insecure_channel(f"unix://{daemon.address}")
        runtime = cri_grpc.RuntimeServiceStub(channel)
        deadline = time.monotonic() + 30
        while True:  # the CRI plugin initialises after the socket appears
            try:
                await runtime.Status(cri.StatusRequest())
                break
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        await channel.close()
        return await run_pods(f"unix://{daemon.address}", pods, workdir / "clogs")
    finally:
        await asyncio.to_thread(daemon.cleanup)


async def bench_ours_on_containerd(pods: int, workdir: Path, archive: Path) -> list[float]:
    tag = secrets.token_hex(3)
    daemon = Containerd(workdir / "ctd-ours", bridge=f"phy{tag}", subnet="10.216.0.0/16")
    await asyncio.to_thread(daemon.start)
    backend = ContainerdBackend(root=workdir / "ours", address=f"unix://{daemon.address}",
                                namespace="bench", bridge=f"phz{tag}",
                                pod_cidr="10.215.0.0/16",
                                cgroup_parent=f"/pilothouse-bench-ctd-{tag}")
    socket = f"unix://{workdir}/c.sock"
    try:
        client = Client(daemon.address, "bench")
        await client.ensure_namespace()
        await containerd_images.import_archive(client, archive)
        await client.close()
        server = await start_server(backend, socket)
        try:
            return await run_pods(socket, pods, workdir / "ologs")
        finally:
            await server.stop(None)
            await backend.close()
    finally:
        await asyncio.to_thread(daemon.cleanup)
        for sandbox in (workdir / "ours" / "sandboxes").glob("*"):  # left by a failed removal
            subprocess.run(["ip", "netns", "del", f"phc-{sandbox.name[:12]}"],
                           capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", f"phz{tag}"], capture_output=True, check=False)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            top = hierarchy / f"pilothouse-bench-ctd-{tag}"
            if top.is_dir():
                for d in sorted(top.rglob("*"), key=lambda p: -len(p.parts)):
                    if d.is_dir():
                        d.rmdir()
                top.rmdir()


def summary(latencies: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "mean_ms": round(statistics.mean(latencies) * 1000, 1)}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 pods per backend")
    parser.add_argument("--pods", type=int)
    parser.add_argument("--skip-containerd", action="store_true")
    opts = parser.parse_args()
    pods = opts.pods or (10 if opts.quick else 50)
    figures: dict[str, object] = {"pods": pods}
    workdir = Path(tempfile.mkdtemp(prefix="phbench-", dir="/tmp"))
    try:
        busybox, pause = workdir / "busybox.tar", workdir / "pause.tar"
        oci.write_oci_layout(busybox, [oci.build_busybox()])
        oci.write_oci_layout(pause, [oci.build_pause()])
        latencies, cpu_ms = await bench_process(pods, workdir, busybox)
        process = summary(latencies)
        process["cpu_ms_per_pod"] = round(cpu_ms, 1)
        figures["process"] = process
        print(f"process backend:     p50 {process['p50_ms']} ms  p99 {process['p99_ms']} ms",
              file=sys.stderr)
        # every pod at once, as a kubelet does when many pods arrive: the shim's concurrency
        latencies, cpu_ms = await bench_process(pods, workdir, busybox, parallel=pods)
        together = summary(latencies)
        together["cpu_ms_per_pod"] = round(cpu_ms, 1)
        figures["process_all_at_once"] = together
        print(f"process, all at once: p50 {together['p50_ms']} ms  p99 {together['p99_ms']} ms"
              f"  ({together['cpu_ms_per_pod']} ms CPU per pod: shim, client, zygote, "
              "supervisors, container set-up)", file=sys.stderr)
        if not opts.skip_containerd and shutil.which("containerd"):
            ours = summary(await bench_ours_on_containerd(pods, workdir, busybox))
            figures["containerd_backend"] = ours
            print(f"containerd backend:  p50 {ours['p50_ms']} ms  p99 {ours['p99_ms']} ms",
                  file=sys.stderr)
            reference = summary(await bench_containerd(pods, workdir, [busybox, pause]))
            figures["containerd_cri"] = reference
            figures["process_vs_containerd_p50"] = round(
                process["p50_ms"] / reference["p50_ms"], 2)
            figures["containerd_backend_vs_containerd_p50"] = round(
                ours["p50_ms"] / reference["p50_ms"], 2)
            print(f"containerd CRI:      p50 {reference['p50_ms']} ms  "
                  f"p99 {reference['p99_ms']} ms", file=sys.stderr)
        else:
            figures["containerd_backend"] = "not run (containerd not installed or skipped)"
            figures["containerd_cri"] = "not run (containerd not installed or skipped)"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("BENCH " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
