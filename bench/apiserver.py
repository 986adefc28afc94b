"""apiserver benchmark: request latency/throughput, big lists, watch fan-out, memory.

Runs a real ``pilothouse apiserver`` (SQLite in a temp dir) in a subprocess and
drives it over REST from this process:

- create / get / update: latency p50/p99 and throughput at concurrency 1, 16, 64;
- create at a fixed rate of 200 req/s (open loop): p99 latency (target <= 20 ms),
  on a small store and again with N pods stored (10k; 2k with --quick), with the
  server's CPU per create and the load average (the machine is shared);
- list of N pods as JSON and as a Table;
- watch fan-out: W watchers on pods, delivery latency p50/p99 of one update
  (target p99 <= 100 ms with 1000 watchers);
- apiserver RSS with N pods stored (target <= 200 MB with 10k pods).

    python bench/apiserver.py [--quick]

Ends with one line ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

PODS = "/api/v1/namespaces/default/pods"


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "shard": name[-1]}},
        "spec": {"containers": [{
            "name": "app", "image": "registry.local/app:1.0",
            "ports": [{"containerPort": 8080, "name": "http"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
            "env": [{"name": "MODE", "value": "bench"}],
        }]},
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def say(text: str) -> None:
    print(text, flush=True)


class Conn:
    """A minimal keep-alive HTTP/1.1 client connection.

    The load generator shares the machine's 2 cores with the server; a full HTTP
    library spends more CPU per request than the apiserver does, so the figures
    would be the client's. This one writes a request and reads a
    Content-Length-framed answer, nothing else.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/json") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Accept: application/json\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        data = await self.reader.readexactly(length) if length else b""
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def split_url(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


async def run_concurrent(url: str, n: int, concurrency: int,
                         make: Any) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    host, port = split_url(url)

    async def worker() -> None:
        conn = Conn(host, port)
        try:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                status, body = await make(conn, i)
                latencies.append(time.perf_counter() - started)
                if status >= 300:
                    raise RuntimeError(f"{status}: {body[:200]!r}")
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


MERGE = "application/merge-patch+json"


async def bench_requests(url: str, n: int, figures: dict[str, Any]) -> None:
    for concurrency in (1, 16, 64):
        prefix = f"c{concurrency}-"

        async def create(c: Conn, i: int, p: str = prefix) -> tuple[int, bytes]:
            return await c.request("POST", PODS, json.dumps(pod(f"{p}{i}")).encode())

        async def get(c: Conn, i: int, p: str = prefix) -> tuple[int, bytes]:
            return await c.request("GET", f"{PODS}/{p}{i}")

        async def update(c: Conn, i: int, p: str = prefix) -> tuple[int, bytes]:
            body = json.dumps({"metadata": {"labels": {"v": "2"}}}).encode()
            return await c.request("PATCH", f"{PODS}/{p}{i}", body, MERGE)

        for verb, fn in (("create", create), ("get", get), ("update", update)):
            lat, took = await run_concurrent(url, n, concurrency, fn)
            key = f"rest_{verb}_c{concurrency}"
            figures[key] = {"p50_ms": ms(pct(lat, 0.5)), "p99_ms": ms(pct(lat, 0.99)),
                            "per_s": round(n / took, 1)}
            say(f"  REST {verb:6s} concurrency {concurrency:2d}: "
                f"p50 {figures[key]['p50_ms']} ms, p99 {figures[key]['p99_ms']} ms, "
                f"{figures[key]['per_s']}/s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_fixed_rate(url: str, rate: int, seconds: float, figures: dict[str, Any], *,
                           key: str, name_prefix: str, pid: int) -> None:
    host, port = split_url(url)
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(Conn(host, port))
    latencies: list[float] = []

    async def one(i: int, due: float) -> None:
        conn = await pool.get()
        try:
            status, body = await conn.request("POST", PODS,
                                              json.dumps(pod(f"{name_prefix}{i}")).encode())
        finally:
            pool.put_nowait(conn)
        # Latency from when the request was due: waiting for a free connection counts.
        latencies.append(time.perf_counter() - due)
        if status != 201:
            raise RuntimeError(body[:200])

    cpu_before = cpu_seconds(pid)
    start = time.perf_counter()
    total = int(rate * seconds)
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / total
    while not pool.empty():
        pool.get_nowait().close()
    figures[key] = {"p50_ms": ms(pct(latencies, 0.5)), "p99_ms": ms(pct(latencies, 0.99)),
                    "max_ms": ms(max(latencies)), "n": total,
                    "server_cpu_ms_per_create": round(cpu_ms, 3),
                    "load_average": os.getloadavg()[0]}
    say(f"  create at {rate}/s for {seconds}s: p50 {ms(pct(latencies, 0.5))} ms, "
        f"p99 {ms(pct(latencies, 0.99))} ms, max {ms(max(latencies))} ms; server CPU "
        f"{cpu_ms:.2f} ms per create (load average {os.getloadavg()[0]:.1f})")


async def fill_pods(url: str, count: int) -> None:
    async def create(c: Conn, i: int) -> tuple[int, bytes]:
        return await c.request("POST", PODS, json.dumps(pod(f"fill-{i}")).encode())

    await run_concurrent(url, count, 32, create)


async def bench_lists(url: str, figures: dict[str, Any], repeat: int) -> None:
    table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for label, params, accept in (
            ("list_json_consistent", {}, "application/json"),
            ("list_json_rv0_cache", {"resourceVersion": "0"}, "application/json"),
            ("list_table_rv0_cache", {"resourceVersion": "0"}, table),
        ):
            times = []
            size = 0
            count = 0
            for _ in range(repeat):
                started = time.perf_counter()
                r = await client.get(PODS, params=params, headers={"Accept": accept})
                times.append(time.perf_counter() - started)
                size = len(r.content)
                doc = r.json()
                count = len(doc.get("items") or doc.get("rows") or [])
            figures[label] = {"ms": ms(statistics.median(times)), "items": count,
                              "mb": round(size / 1e6, 2)}
            say(f"  {label}: {figures[label]['ms']} ms for {count} items "
                f"({figures[label]['mb']} MB)")


MARKER = b'"MODIFIED"'


def _watch_worker(host: str, port: int, target: str, count: int, updates: int,
                  conn: Any) -> None:
    """A separate process holding ``count`` raw watch connections (a cheap client, so
    the figures are the server's, not an HTTP library's). Reports arrival times."""

    async def main() -> None:
        arrivals: list[list[float]] = [[] for _ in range(updates)]

        async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n"
                         "Accept: application/json\r\n\r\n".encode())
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")  # headers: the watcher is registered
            return reader, writer

        async def follow(reader: asyncio.StreamReader) -> None:
            seen, tail = 0, b""
            while seen < updates:
                data = await reader.read(65536)
                if not data:
                    return
                now = time.perf_counter()
                chunk = tail + data
                for _ in range(chunk.count(MARKER)):
                    if seen < updates:
                        arrivals[seen].append(now)
                        seen += 1
                tail = chunk[-(len(MARKER) - 1):]

        streams = await asyncio.gather(*(one() for _ in range(count)))
        conn.send("ready")
        await asyncio.wait_for(asyncio.gather(*(follow(r) for r, _ in streams)), 120)
        conn.send(arrivals)
        for _, writer in streams:
            writer.close()

    asyncio.run(main())


async def bench_watch(url: str, watchers: int, updates: int, figures: dict[str, Any],
                      pid: int) -> None:
    import multiprocessing

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await client.post(PODS, json=pod("watched"))
        rv = (await client.get(PODS, params={"limit": "1"})).json()["metadata"][
            "resourceVersion"]
        host, port = url.removeprefix("http://").split(":")
        target = f"{PODS}?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3Dwatched"
        ctx = multiprocessing.get_context("spawn")
        workers = 4
        pipes, procs = [], []
        for i in range(workers):
            parent, child = ctx.Pipe()
            share = watchers // workers + (1 if i < watchers % workers else 0)
            proc = ctx.Process(target=_watch_worker,
                               args=(host, int(port), target, share, updates, child))
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        loop = asyncio.get_running_loop()
        for parent in pipes:
            ready = await loop.run_in_executor(None, parent.recv)
            assert ready == "ready"
        sent: list[float] = []
        cpu_before = cpu_seconds(pid)
        for i in range(updates):
            await asyncio.sleep(0.5)
            sent.append(time.perf_counter())
            r = await client.patch(f"{PODS}/watched",
                                   content=json.dumps({"metadata": {"labels": {"n": str(i)}}}),
                                   headers={"Content-Type": "application/merge-patch+json"})
            r.raise_for_status()
        delays: list[float] = []
        for parent in pipes:
            arrivals = await loop.run_in_executor(None, parent.recv)
            delays += [t - sent[i] for i in range(updates) for t in arrivals[i]]
        # The server's CPU from the first update until every watcher has reported
        # (it does nothing else meanwhile): the update itself and its fan-out.
        cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / updates
        for proc in procs:
            proc.join(10)
        figures["watch_fanout"] = {"watchers": watchers, "updates": updates,
                                   "delivered": len(delays),
                                   "p50_ms": ms(pct(delays, 0.5)),
                                   "p99_ms": ms(pct(delays, 0.99)),
                                   "server_cpu_ms_per_update": round(cpu_ms, 2),
                                   "load_average": os.getloadavg()[0]}
        say(f"  watch fan-out to {watchers} watchers: p50 {ms(pct(delays, 0.5))} ms, "
            f"p99 {ms(pct(delays, 0.99))} ms ({len(delays)} deliveries); server CPU "
            f"{cpu_ms:.1f} ms per update (load average {os.getloadavg()[0]:.1f})")


async def bench_watch_server_side(watchers: int, updates: int,
                                  figures: dict[str, Any]) -> None:
    """The apiserver's own share of a fan-out: the ASGI app in this process with
    in-memory storage, watchers as ASGI streams (no sockets, no client processes),
    timed from the PATCH to each watcher's send of the event."""
    from pilothouse.api.kinds import KindRegistry
    from pilothouse.loop import freeze_startup_heap, tune_gc
    from pilothouse.services.apiserver import strategies  # noqa: F401
    from pilothouse.services.apiserver.registry import Registry
    from pilothouse.services.apiserver.rest import RestAPI
    from pilothouse.services.apiserver.strategies.allocators import default_allocators
    from pilothouse.storage import open_storage

    tune_gc()
    storage = await open_storage("memory://")
    registry = Registry(storage, KindRegistry.builtin(), allocators=default_allocators())
    await registry.start()
    app = RestAPI(registry)
    freeze_startup_heap()
    forever = asyncio.Event()

    async def call(method: str, path: str, query: bytes, send: Any, body: bytes = b"",
                   ctype: bytes = b"application/json") -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await forever.wait()
            return {"type": "http.disconnect"}

        scope = {"type": "http", "method": method, "path": path, "query_string": query,
                 "headers": [(b"content-type", ctype)]}
        await app(scope, receive, send)

    async def ignore(message: dict[str, Any]) -> None:
        del message

    cms = "/api/v1/namespaces/default/configmaps"
    await call("POST", cms, b"", ignore, json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}}).encode())
    arrivals: list[float] = []
    started = 0

    async def on_event(message: dict[str, Any]) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started += 1
        elif b'"MODIFIED"' in message.get("body", b""):
            arrivals.append(time.perf_counter())

    tasks = [asyncio.create_task(call("GET", cms, b"watch=1&fieldSelector=metadata.name%3Dw",
                                      on_event)) for _ in range(watchers)]
    while started < watchers:
        await asyncio.sleep(0.01)
    delays: list[float] = []
    for i in range(updates):
        arrivals.clear()
        sent = time.perf_counter()
        await call("PATCH", f"{cms}/w", b"", ignore,
                   json.dumps({"data": {"n": str(i)}}).encode(),
                   b"application/merge-patch+json")
        while len(arrivals) < watchers:
            await asyncio.sleep(0.001)
        delays += [a - sent for a in arrivals]
    forever.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await registry.stop()
    await storage.close()
    figures["watch_fanout_server_side"] = {"watchers": watchers, "updates": updates,
                                           "p50_ms": ms(pct(delays, 0.5)),
                                           "p99_ms": ms(pct(delays, 0.99))}
    say(f"  server side, {watchers} watchers: p50 {ms(pct(delays, 0.5))} ms, "
        f"p99 {ms(pct(delays, 0.99))} ms")


async def run_benches(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"quick": args.quick, "rss_mb_empty": rss_mb(pid)}
    n = 200 if args.quick else 2000
    say(f"[1/5] request latency ({n} per verb and concurrency)")
    await bench_requests(url, n, figures)
    rate_seconds = 3 if args.quick else 10
    say(f"[2/5] create at a fixed 200 req/s ({3 * n} pods stored)")
    await bench_fixed_rate(url, 200, rate_seconds, figures, key="rest_create_at_200_per_s",
                           name_prefix="rate-", pid=pid)
    total = 2000 if args.quick else 10_000
    say(f"[3/5] filling to {total} pods")
    started = time.perf_counter()
    await fill_pods(url, max(0, total - 3 * n - 200 * rate_seconds))
    say(f"      filled in {time.perf_counter() - started:.1f}s")
    figures["rss_mb_with_pods"] = rss_mb(pid)
    figures["pods_stored"] = total
    say(f"      apiserver RSS with {total} pods: {figures['rss_mb_with_pods']} MB")
    say(f"      create at a fixed 200 req/s with {total} pods stored")
    await bench_fixed_rate(url, 200, rate_seconds, figures,
                           key="rest_create_at_200_per_s_full_store", name_prefix="full-rate-",
                           pid=pid)
    say("[4/5] lists")
    await bench_lists(url, figures, 3)
    watchers = 200 if args.quick else 1000
    say(f"[5/5] watch fan-out ({watchers} watchers)")
    await bench_watch(url, watchers, 3 if args.quick else 5, figures, pid)
    await bench_watch_server_side(watchers, 3 if args.quick else 5, figures)
    return figures


def start_apiserver(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with open(tmp / "apiserver.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pilothouse.cli", "apiserver",
                                 "--data-dir", str(tmp / "data"), "--port", str(port),
                                 "--grpc-port", "0"],
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"apiserver did not start: {(tmp / 'apiserver.log').read_text()}")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # 1000 watchers
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_apiserver(Path(tmp))
        try:
            figures = asyncio.run(run_benches(url, proc.pid, args))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    print("BENCH " + json.dumps(figures, sort_keys=True), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
