"""Scheduler benchmark, modelled on Kubernetes' scheduler_perf workloads.

A real ``pilothouse apiserver`` (in-memory storage) runs in a subprocess; this
process registers simulated nodes (no kubelets, as scheduler_perf's nodes),
creates the pending pods, then starts a scheduler and measures from its first
attempt until every pod is bound:

- SchedulingBasic: plain pods (100m cpu, 500Mi memory) on plain nodes;
- NodeAffinity: pods require zone1 or zone2 (a third of the nodes are zone3);
- TopologySpreading: pods spread over 3 zones with maxSkew 5 (DoNotSchedule);
- PodAntiAffinity: pods that repel each other per hostname (one per node).

Figures: pods/s (scheduled pods over the measured window) and the p50/p99
scheduling attempt latency (cycle start to bind done). Kubernetes' release
floors for these at 5000 nodes: 680, 220, 460 and 60 pods/s.

    python bench/scheduler.py [--quick] [--workload NAME] [--profile FILE]
    python bench/scheduler.py --algorithm-only [--quick]   # no apiserver: cycles alone

``--algorithm-only`` runs the scheduling cycles in this process without an
apiserver or informers (cache, snapshot, framework, assume, the bound pod's
confirmation as the informer would deliver it): CPU per cycle, the figure the
plugin work moves, with little of the machine's noise.

``--quick`` uses 1000 nodes and 500 pods (200 for PodAntiAffinity); the
default 5000 nodes and 10000 pods (2000 for PodAntiAffinity). Ends with one line
``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from pilothouse.client import Client, connect
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.loop import run_event_loop
from pilothouse.services.scheduler.fakenodes import FakeNodes
from pilothouse.services.scheduler.scheduler import Scheduler
from pilothouse.services.scheduler.testing import make_pod

ZONE = "topology.kubernetes.io/zone"

WORKLOADS = ("SchedulingBasic", "NodeAffinity", "TopologySpreading", "PodAntiAffinity")
FLOORS = {"SchedulingBasic": 680, "NodeAffinity": 220, "TopologySpreading": 460,
          "PodAntiAffinity": 60}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class APIServerProcess:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_url = f"grpc://127.0.0.1:{self.grpc_port}"
        self.log = open(tmp / "apiserver.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pilothouse.cli", "apiserver", "--storage", "memory://",
             "--port", str(self.port), "--grpc-port", str(self.grpc_port)],
            stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"apiserver exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("apiserver not ready in time")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the apiserver process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class GCTimer:
    """Time spent in cyclic garbage collections while installed (a ``gc`` callback)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t0
            self.collections[info["generation"]] += 1

    def stop(self) -> None:
        gc.callbacks.remove(self._callback)


def workload_pod(workload: str, i: int) -> core_pb2.Pod:
    name = f"pod-{i}"
    if workload == "NodeAffinity":
        return make_pod(name, cpu="100m", memory="500Mi", affinity={"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
                "matchExpressions": [{"key": ZONE, "operator": "In",
                                      "values": ["zone1", "zone2"]}]}]}}})
    if workload == "TopologySpreading":
        return make_pod(name, cpu="100m", memory="500Mi", labels={"color": "blue"}, spread=[{
            "maxSkew": 5, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"color": "blue"}}}])
    if workload == "PodAntiAffinity":
        return make_pod(name, cpu="100m", memory="500Mi", labels={"color": "green"},
                        affinity={"podAntiAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [{
                                "labelSelector": {"matchLabels": {"color": "green"}},
                                "topologyKey": "kubernetes.io/hostname"}]}})
    return make_pod(name, cpu="100m", memory="500Mi")


async def create_pods(client: Client, workload: str, count: int, concurrency: int = 32) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await client.create(workload_pod(workload, i))

    await asyncio.gather(*(one(i) for i in range(count)))


async def run_workload(workload: str, nodes: int, pods: int, profile: str | None,
                       transport: str = "grpc") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        api = APIServerProcess(Path(tmp))
        try:
            await asyncio.to_thread(api.wait_ready)
            setup_url = api.grpc_url if transport == "grpc" else api.url
            async with connect(setup_url, timeout=60) as client:
                zones = ("zone1", "zone2", "zone3")
                fake = FakeNodes(client, nodes, cpu="4", memory="32Gi", pods="110", zones=zones,
                                 lease_renew_interval=0, run_pods=False)
                t0 = time.perf_counter()
                await fake.register()
                t_nodes = time.perf_counter() - t0
                t0 = time.perf_counter()
                await create_pods(client, workload, pods)
                t_pods = time.perf_counter() - t0
                sched_client = connect(api.grpc_url if transport == "grpc" else api.url,
                                       timeout=60)
                sched = Scheduler(sched_client, identity="bench", record_events=False,
                                  freeze_heap_after_sync=True)
                latencies: list[float] = []
                results: dict[str, int] = {}
                original = sched.metrics.attempt

                def attempt(result: str, profile_name: str, seconds: float) -> None:
                    if result == "scheduled":
                        latencies.append(seconds)
                    results[result] = results.get(result, 0) + 1
                    original(result, profile_name, seconds)

                sched.metrics.attempt = attempt  # type: ignore[method-assign]
                task = asyncio.create_task(sched.run(leader_elect=False))
                while not sched.synced:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.01)
                profiler = None
                if profile:
                    from pyinstrument import Profiler

                    profiler = Profiler(async_mode="disabled")
                    profiler.start()
                gc_time = GCTimer()
                start = time.perf_counter()
                cpu_start = time.process_time()
                api_cpu_start = api.cpu_seconds()
                deadline = start + max(120.0, pods / 20)
                while sched.scheduled < pods and time.perf_counter() < deadline:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - cpu_start
                api_cpu = api.cpu_seconds() - api_cpu_start
                gc_time.stop()
                if profiler is not None:
                    profiler.stop()
                    Path(profile).write_text(profiler.output_text(unicode=False, show_all=False)
                                             if profile.endswith(".txt")
                                             else profiler.output_html())
                scheduled = sched.scheduled
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await sched_client.close()
        finally:
            await asyncio.to_thread(api.stop)
    throughput = scheduled / elapsed if elapsed else 0.0
    return {
        "workload": workload, "nodes": nodes, "pods": pods, "scheduled": scheduled,
        "pods_per_s": round(throughput, 1), "floor_pods_per_s": FLOORS[workload],
        "attempt_p50_ms": round(pct(latencies, 0.5) * 1000, 2),
        "attempt_p99_ms": round(pct(latencies, 0.99) * 1000, 2),
        "attempt_mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else 0,
        "setup_nodes_s": round(t_nodes, 1), "setup_pods_s": round(t_pods, 1),
        "attempts": results,
        # CPU of this process (the scheduler) per scheduled pod: steadier than pods/s
        # on a shared machine.
        "cpu_ms_per_pod": round(cpu * 1000 / scheduled, 3) if scheduled else 0,
        # The apiserver's CPU per scheduled pod (binds, watch events) over the same window;
        # with both near one core each, the two cores are the limit, not the scheduler.
        "apiserver_cpu_ms_per_pod": round(api_cpu * 1000 / scheduled, 3) if scheduled else 0,
        "scheduler_cpu_share": round(cpu / elapsed, 2) if elapsed else 0,
        # Of the scheduler's time, the cyclic garbage collector's (collections by generation).
        "gc_ms_per_pod": round(gc_time.seconds * 1000 / scheduled, 3) if scheduled else 0,
        "gc_collections": gc_time.collections,
        "apiserver_cpu_share": round(api_cpu / elapsed, 2) if elapsed else 0,
    }


def run_algorithm_only(workload: str, nodes: int, pods: int,
                       profile: str | None) -> dict[str, Any]:
    """Scheduling cycles alone: no apiserver, no informers, no binding I/O."""
    import random

    from pilothouse.services.scheduler.algorithm import SchedulingAlgorithm
    from pilothouse.services.scheduler.cache import Cache
    from pilothouse.services.scheduler.config import default_config
    from pilothouse.services.scheduler.framework import CycleState, Framework, Handle, Snapshot
    from pilothouse.services.scheduler.framework.types import PodInfo
    from pilothouse.services.scheduler.plugins import load_registry
    from pilothouse.services.scheduler.testing import make_node

    cache = Cache()
    snapshot = Snapshot()
    zones = ("zone1", "zone2", "zone3")
    for i in range(nodes):
        cache.add_node(make_node(f"fake-node-{i}", cpu="4", memory="32Gi", pods="110",
                                 zone=zones[i % 3]))
    profile_cfg = default_config().profiles[0]
    rng = random.Random(1)
    fwk = Framework(profile_cfg, load_registry(), Handle(snapshot=snapshot, rng=rng))
    algorithm = SchedulingAlgorithm(rng=rng)
    pending = [workload_pod(workload, i) for i in range(pods)]
    for p in pending:
        p.metadata.uid = f"uid-{p.metadata.name}"
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled")
        profiler.start()
    cycle_cpu = 0.0
    scheduled = 0
    cpu_start = time.process_time()
    for pod in pending:
        pi = PodInfo(pod)
        t0 = time.process_time()
        state = CycleState()
        cache.update_snapshot(snapshot)
        try:
            result = algorithm.schedule(fwk, state, pi, snapshot, record=True)
        except Exception:
            cycle_cpu += time.process_time() - t0
            continue
        cache.assume_pod(pi, result.suggested_host)
        cycle_cpu += time.process_time() - t0
        bound = core_pb2.Pod()
        bound.CopyFrom(pod)
        bound.spec.nodeName = result.suggested_host
        cache.add_pod(bound, PodInfo(bound))  # the informer's confirmation
        scheduled += 1
    cpu = time.process_time() - cpu_start
    if profiler is not None:
        profiler.stop()
        Path(profile).write_text(profiler.output_text(unicode=False, show_all=False)
                                 if profile.endswith(".txt") else profiler.output_html())
    return {"workload": workload, "nodes": nodes, "pods": pods, "scheduled": scheduled,
            "cycle_cpu_ms_per_pod": round(cycle_cpu * 1000 / max(scheduled, 1), 3),
            "cpu_ms_per_pod": round(cpu * 1000 / max(scheduled, 1), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1000 nodes (under a minute)")
    parser.add_argument("--workload", choices=WORKLOADS, action="append")
    parser.add_argument("--nodes", type=int, default=0)
    parser.add_argument("--pods", type=int, default=0)
    parser.add_argument("--profile", default="",
                        help="write a pyinstrument profile (.txt: text, else HTML)")
    parser.add_argument("--transport", choices=["grpc", "rest"], default="grpc",
                        help="how the scheduler talks to the apiserver")
    parser.add_argument("--algorithm-only", action="store_true",
                        help="scheduling cycles in-process, no apiserver (CPU per cycle)")
    args = parser.parse_args()
    if args.nodes < 0 or args.pods < 0:
        parser.error("--nodes and --pods must not be negative")
    nodes = args.nodes or (1000 if args.quick else 5000)
    if args.algorithm_only:
        out: dict[str, Any] = {"mode": "algorithm-only"}
        for workload in args.workload or WORKLOADS:
            pods = args.pods or (500 if args.quick else 5000)
            if workload == "PodAntiAffinity":
                pods = min(pods, nodes // 5 if args.quick else 2000)
            r = run_algorithm_only(workload, nodes, pods, args.profile or None)
            print(f"{workload:<18} {nodes} nodes {r['scheduled']}/{pods} pods: "
                  f"{r['cycle_cpu_ms_per_pod']} cpu-ms/cycle, {r['cpu_ms_per_pod']} "
                  "cpu-ms/pod with the confirmation", flush=True)
            out[workload] = {k: v for k, v in r.items() if k != "workload"}
        print("BENCH " + json.dumps(out))
        return 0
    results = []
    for workload in args.workload or WORKLOADS:
        pods = args.pods or (500 if args.quick else 10000)
        if workload == "PodAntiAffinity":
            pods = min(pods, nodes // 5 if args.quick else 2000)
        # The loop and collector settings of `pilothouse scheduler` (uvloop, tuned GC).
        coro = run_workload(workload, nodes, pods, args.profile or None, args.transport)
        r = run_event_loop(coro)
        results.append(r)
        print(f"{workload:<18} {nodes} nodes {r['scheduled']}/{pods} pods: "
              f"{r['pods_per_s']} pods/s (floor {r['floor_pods_per_s']}), attempt p50 "
              f"{r['attempt_p50_ms']} ms p99 {r['attempt_p99_ms']} ms, "
              f"{r['cpu_ms_per_pod']} cpu-ms/pod (apiserver {r['apiserver_cpu_ms_per_pod']}), "
              f"attempts {r['attempts']}",
              flush=True)
    figures: dict[str, Any] = {"transport": args.transport}
    figures |= {r["workload"]: {k: v for k, v in r.items() if k != "workload"} for r in results}
    print("BENCH " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
