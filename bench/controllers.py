"""Controller-manager speed: a big Deployment on simulated nodes, end to end.

A real ``pilothouse apiserver`` (in-memory storage), ``pilothouse scheduler``
and ``pilothouse fake-nodes`` (KWOK-like nodes whose pods turn Running and
Ready once bound) run as subprocesses; the ReplicaSet and Deployment
controllers run in this process over gRPC, as the controller-manager runs
them. Figures:

- ``create_to_running_s``: a new Deployment of ``--replicas`` pods until its
  status reports every replica ready and available;
- ``rollout_s``: a template change until the rollout is complete (every
  replica updated and available, the old ReplicaSet at zero);
- ``rs_syncs_per_s``: steady-state ``sync`` calls per second of the
  ReplicaSet controller on the fully populated ReplicaSet (claims, counting,
  status comparison; no writes), and the syncs both phases needed.

    python bench/controllers.py [--quick] [--replicas N] [--nodes N]

``--quick`` uses 300 replicas on 60 nodes (under a minute); the default is
1000 replicas on 200 nodes. Ends with one line ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx

from pilothouse.client import Client, EventRecorder, SharedInformerFactory, connect
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.base import ControllerContext
from pilothouse.services.controllers.deployment import DeploymentController
from pilothouse.services.controllers.replicaset import ReplicaSetController

NAMESPACE = "default"
NAME = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A ``pilothouse`` subcommand with its log in ``tmp``."""

    def __init__(self, tmp: Path, name: str, *args: str) -> None:
        self.log: IO[str] = open(tmp / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "pilothouse.cli", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.name = name

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode} "
                               f"(see {self.log.name})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


async def wait_http_ready(url: str, proc: Process, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            proc.check()
            try:
                if (await http.get(url, timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} not ready within {within}s")


def deployment(replicas: int, image: str) -> apps_pb2.Deployment:
    d = apps_pb2.Deployment()
    d.metadata.name = NAME
    d.metadata.namespace = NAMESPACE
    d.spec.replicas = replicas
    d.spec.selector.matchLabels["app"] = NAME
    d.spec.template.metadata.labels["app"] = NAME
    c = d.spec.template.spec.containers.add(name="app", image=image)
    c.resources.requests["cpu"].string = "10m"
    return d


async def wait_until(check: Any, within: float, what: str, procs: list[Process]) -> float:
    """Poll ``check()`` every 50 ms; seconds it took."""
    start = time.perf_counter()
    while not await check():
        for p in procs:
            p.check()
        if time.perf_counter() - start > within:
            raise RuntimeError(f"{what}: not done within {within}s")
        await asyncio.sleep(0.05)
    return time.perf_counter() - start


async def bench(replicas: int, nodes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        port, grpc_port = free_port(), free_port()
        grpc_url = f"grpc://127.0.0.1:{grpc_port}"
        procs: list[Process] = []
        try:
            api = Process(tmp, "apiserver", "apiserver", "--storage", "memory://",
                          "--port", str(port), "--grpc-port", str(grpc_port))
            procs.append(api)
            await wait_http_ready(f"http://127.0.0.1:{port}/readyz", api)
            sched_port = free_port()
            procs.append(Process(tmp, "scheduler", "scheduler", "--master", grpc_url,
                                 "--port", str(sched_port), "--leader-elect", "false"))
            procs.append(Process(tmp, "fake-nodes", "fake-nodes", "--master", grpc_url,
                                 "--count", str(nodes), "--pods", "110"))
            async with connect(grpc_url, timeout=60) as client:
                return await _measure(client, replicas, nodes, procs)
        finally:
            for p in reversed(procs):
                await asyncio.to_thread(p.stop)


async def _measure(client: Client, replicas: int, nodes: int,
                   procs: list[Process]) -> dict[str, Any]:
    async def nodes_ready() -> bool:
        return len((await client.list(core_pb2.Node)).items) >= nodes

    await wait_until(nodes_ready, 60, "fake nodes registered", procs)
    factory = SharedInformerFactory(client)
    recorder = EventRecorder(client, "bench-controller-manager")
    ctx = ControllerContext(client, factory, recorder, workers=5)
    rs_controller = ReplicaSetController(ctx)
    d_controller = DeploymentController(ctx)
    async with factory, recorder:
        factory.start()
        await factory.wait_for_sync()
        tasks = [asyncio.create_task(rs_controller.run()),
                 asyncio.create_task(d_controller.run())]
        try:
            figures = await _phases(client, rs_controller, replicas, procs, tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    figures.update({"replicas": replicas, "nodes": nodes})
    return figures


async def _phases(client: Client, rs_controller: ReplicaSetController, replicas: int,
                  procs: list[Process], tasks: list[asyncio.Task[None]]) -> dict[str, Any]:
    def check_tasks() -> None:
        for t in tasks:
            if t.done():
                t.result()

    async def rolled_out(image: str) -> bool:
        check_tasks()
        d = await client.get(apps_pb2.Deployment, NAME, namespace=NAMESPACE)
        s = d.status
        return (d.spec.template.spec.containers[0].image == image
                and s.observedGeneration >= d.metadata.generation
                and s.updatedReplicas == replicas and s.replicas == replicas
                and s.availableReplicas == replicas and s.readyReplicas == replicas)

    limit = max(120.0, replicas / 5)
    syncs0 = rs_controller.syncs
    await client.create(deployment(replicas, "app:v1"))
    create_s = await wait_until(lambda: rolled_out("app:v1"), limit, "first rollout", procs)
    create_syncs = rs_controller.syncs - syncs0

    syncs0 = rs_controller.syncs
    d = await client.get(apps_pb2.Deployment, NAME, namespace=NAMESPACE)
    d.spec.template.spec.containers[0].image = "app:v2"
    await client.update(d)
    rollout_s = await wait_until(lambda: rolled_out("app:v2"), limit, "rolling update", procs)
    rollout_syncs = rs_controller.syncs - syncs0

    rs_list = (await client.list(apps_pb2.ReplicaSet, namespace=NAMESPACE)).items
    new_rs = max(rs_list, key=lambda r: r.spec.replicas)
    key = f"{NAMESPACE}/{new_rs.metadata.name}"
    count = 200
    start = time.perf_counter()
    for _ in range(count):
        await rs_controller.sync(key)
    steady = count / (time.perf_counter() - start)
    return {
        "create_to_running_s": round(create_s, 2),
        "create_pods_per_s": round(replicas / create_s, 1),
        "rollout_s": round(rollout_s, 2),
        "rollout_pods_per_s": round(replicas / rollout_s, 1),
        "rs_syncs_per_s": round(steady, 1),
        "rs_syncs_create": create_syncs,
        "rs_syncs_rollout": rollout_syncs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="300 replicas on 60 nodes (under a minute)")
    parser.add_argument("--replicas", type=int, default=0)
    parser.add_argument("--nodes", type=int, default=0)
    args = parser.parse_args()
    replicas = args.replicas or (300 if args.quick else 1000)
    nodes = args.nodes or (60 if args.quick else 200)
    if replicas < 1 or nodes < 1:
        parser.error("--replicas and --nodes must be at least 1")
    figures = asyncio.run(bench(replicas, nodes))
    print("BENCH " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
