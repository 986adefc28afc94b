"""The apiserver's gRPC frontend: request latency, lists and watch fan-out.

Starts ``pilothouse apiserver`` (SQLite in a temporary folder) as its own
process and drives ``pilothouse.apiserver.v1.API`` from this one:

- create / get / update of pods: p50/p99 latency and throughput at
  concurrency 1, 16, 64;
- list of every pod (protobuf frames, as the watch cache holds them);
- watch fan-out: many watchers of one pod, delivery delay of each update.

    python bench/apiserver_grpc.py [--quick]

Ends with one line ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pilothouse.api.kinds import KindRegistry
from pilothouse.api.serialization import decode_protobuf, encode_protobuf, object_from_dict
from pilothouse.gen.pilothouse.apiserver.v1 import apiserver_pb2 as pb
from pilothouse.gen.pilothouse.apiserver.v1 import apiserver_pb2_grpc as pb_grpc

POD_KIND = KindRegistry.builtin().by_resource("", "v1", "pods")
assert POD_KIND is not None
PODS = {"version": "v1", "resource": "pods", "namespace": "default"}
OPTIONS = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]


def pod(name: str) -> pb.Object:
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "b"}},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                                    "resources": {"requests": {"cpu": "100m"}}}]}}
    return pb.Object(raw=encode_protobuf(POD_KIND, object_from_dict(POD_KIND, doc)))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def say(text: str) -> None:
    print(text, flush=True)


async def run_concurrent(n: int, concurrency: int,
                         call: Callable[[int], Awaitable[Any]]) -> tuple[list[float], float]:
    latencies: list[float] = []
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            started = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


async def bench_requests(api: pb_grpc.APIStub, n: int, figures: dict[str, Any]) -> None:
    for concurrency in (1, 16, 64):
        prefix = f"c{concurrency}-"

        async def create(i: int, p: str = prefix) -> Any:
            return await api.Create(pb.CreateRequest(**PODS, object=pod(f"{p}{i}")))

        async def get(i: int, p: str = prefix) -> Any:
            return await api.Get(pb.GetRequest(**PODS, name=f"{p}{i}"))

        async def update(i: int, p: str = prefix) -> Any:
            return await api.Patch(pb.PatchRequest(
                **PODS, name=f"{p}{i}", type=pb.PATCH_TYPE_MERGE,
                patch=json.dumps({"metadata": {"labels": {"n": str(i)}}}).encode()))

        for verb, call in (("create", create), ("get", get), ("update", update)):
            latencies, elapsed = await run_concurrent(n, concurrency, call)
            figures[f"grpc_{verb}_c{concurrency}"] = {
                "p50_ms": ms(pct(latencies, 0.5)), "p99_ms": ms(pct(latencies, 0.99)),
                "per_s": round(n / elapsed)}
            say(f"  gRPC {verb:6s} concurrency {concurrency:2d}: p50 "
                f"{ms(pct(latencies, 0.5))} ms, p99 {ms(pct(latencies, 0.99))} ms, "
                f"{round(n / elapsed)}/s")


async def bench_list(api: pb_grpc.APIStub, figures: dict[str, Any], repeat: int) -> None:
    times = []
    count = 0
    for _ in range(repeat):
        started = time.perf_counter()
        r = await api.List(pb.ListRequest(**PODS, options=pb.ListOptions(resource_version="0")))
        times.append(time.perf_counter() - started)
        count = len(r.items)
    decode_started = time.perf_counter()
    for item in r.items:
        decode_protobuf(POD_KIND, item.raw)
    figures["grpc_list"] = {"items": count, "best_ms": ms(min(times)),
                            "client_decode_ms": ms(time.perf_counter() - decode_started)}
    say(f"  gRPC list of {count} pods: best {ms(min(times))} ms (client decode "
        f"{figures['grpc_list']['client_decode_ms']} ms)")


async def bench_watch(api: pb_grpc.APIStub, watchers: int, updates: int,
                      figures: dict[str, Any]) -> None:
    await api.Create(pb.CreateRequest(**PODS, object=pod("watched")))
    got: Any = decode_protobuf(POD_KIND, (await api.Get(pb.GetRequest(
        **PODS, name="watched"))).object.raw)
    start_rv = got.metadata.resourceVersion
    arrivals: list[list[float]] = [[] for _ in range(updates)]
    calls = [api.Watch(pb.WatchRequest(**PODS, name="watched", resource_version=start_rv))
             for _ in range(watchers)]

    all_arrived = [asyncio.Event() for _ in range(updates)]

    async def watcher(call: Any) -> None:
        seen = 0
        async for event in call:
            if event.type == "MODIFIED":
                arrivals[seen].append(time.perf_counter())
                if len(arrivals[seen]) == watchers:
                    all_arrived[seen].set()
                seen += 1
                if seen == updates:
                    return

    tasks = [asyncio.create_task(watcher(c)) for c in calls]
    # Every watcher registered: a first update that all of them must see.
    sent: list[float] = []
    for i in range(updates):
        sent.append(time.perf_counter())
        await api.Patch(pb.PatchRequest(**PODS, name="watched", type=pb.PATCH_TYPE_MERGE,
                                        patch=json.dumps({"metadata": {"labels": {
                                            "n": str(i)}}}).encode()))
        # One update at a time, so the figure is delivery delay, not queueing.
        await asyncio.wait_for(all_arrived[i].wait(), 120)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    delays = [t - sent[i] for i in range(1, updates) for t in arrivals[i]]
    figures["grpc_watch_fanout"] = {"watchers": watchers, "updates": updates - 1,
                                    "p50_ms": ms(pct(delays, 0.5)),
                                    "p99_ms": ms(pct(delays, 0.99))}
    say(f"  gRPC watch fan-out to {watchers} watchers: p50 {ms(pct(delays, 0.5))} ms, "
        f"p99 {ms(pct(delays, 0.99))} ms")


async def run_benches(address: str, args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"quick": args.quick}
    async with grpc.aio.insecure_channel(address, options=OPTIONS) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 30
        while True:
            try:
                r = await health.Check(health_pb2.HealthCheckRequest(service=""))
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the apiserver's gRPC frontend never became SERVING")
            await asyncio.sleep(0.1)
        api = pb_grpc.APIStub(channel)
        n = 200 if args.quick else 2000
        say(f"[1/3] request latency ({n} per verb and concurrency)")
        await bench_requests(api, n, figures)
        say("[2/3] list")
        await bench_list(api, figures, 3)
        watchers = 200 if args.quick else 1000
        say(f"[3/3] watch fan-out ({watchers} watchers)")
        await bench_watch(api, watchers, 4 if args.quick else 6, figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        grpc_port = free_port()
        with open(Path(tmp) / "apiserver.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pilothouse.cli", "apiserver", "--data-dir",
                 str(Path(tmp) / "data"), "--port", "0", "--grpc-port", str(grpc_port)],
                stdout=log, stderr=subprocess.STDOUT)
        try:
            figures = asyncio.run(run_benches(f"127.0.0.1:{grpc_port}", args))
        except Exception:
            print((Path(tmp) / "apiserver.log").read_text(), file=sys.stderr)
            raise
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    print("BENCH " + json.dumps(figures, sort_keys=True), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
