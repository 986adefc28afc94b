"""Storage benchmark: the SQLite backend against raw sqlite3 with the same durability.

Measures, on a fresh database in a temporary directory:

- creates/s with 1 writer and with 64 concurrent writers (group commit), and
  the same number of raw ``sqlite3`` INSERTs, one transaction each, with the
  same journal mode and ``synchronous`` setting: the ratio is ours / raw.
  The disk is shared with other processes, so the sequential runs are
  interleaved in rounds and the concurrent run is compared with raw inserts
  timed right after it;
- updates/s (64 concurrent, conditional on the revision), gets/s (1 and 64
  concurrent readers);
- one range over 10,000 keys, and the same keys paged 500 at a time;
- watch delivery latency: from calling ``create`` to the watcher holding the
  event, p50 and p99.

``--quick`` runs in well under a minute. The last line printed is
``BENCH {json}`` with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pilothouse.storage.sqlite import SqliteOptions, SqliteStorage

VALUE = bytes(range(256)) * 4  # 1 KiB, about a small pod in protobuf


class RawSqlite:
    """Plain sqlite3: an indexed key/value table, one INSERT per transaction."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.conn.execute(
            "CREATE TABLE kv (id INTEGER PRIMARY KEY, key TEXT NOT NULL, value BLOB NOT NULL)"
        )
        self.conn.execute("CREATE INDEX kv_key ON kv (key)")

    def inserts(self, first: int, n: int) -> float:
        """Seconds for ``n`` INSERTs, each its own (durable) transaction."""
        started = time.perf_counter()
        for i in range(first, first + n):
            self.conn.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?)", (f"/registry/raw/{i:08}", VALUE)
            )
        return time.perf_counter() - started


async def timed(n: int, concurrency: int, op: Callable[[int], Awaitable[object]]) -> float:
    """Operations per second for ``op(0..n-1)`` spread over ``concurrency`` tasks."""

    async def worker(w: int) -> None:
        for i in range(w, n, concurrency):
            await op(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return n / (time.perf_counter() - started)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def watch_latency(store: SqliteStorage, n: int) -> tuple[float, float]:
    """p50 and p99 milliseconds from calling create() to the watcher holding the event."""
    sent: dict[int, float] = {}
    latencies: list[float] = []
    stream = store.watch("/registry/watched/", start_revision=0)
    ready = asyncio.Event()

    async def consume() -> None:
        ready.set()
        async for event in stream:
            latencies.append(time.perf_counter() - sent[event.revision])
            if len(latencies) == n:
                return

    consumer = asyncio.create_task(consume())
    await ready.wait()
    base = await store.current_revision()
    for i in range(n):
        sent[base + i + 1] = time.perf_counter()
        await store.create(f"/registry/watched/{i:08}", VALUE)
    await asyncio.wait_for(consumer, 60)
    await stream.aclose()
    return percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000


async def run(directory: Path, quick: bool, synchronous: str) -> dict[str, float]:
    n = 2_000 if quick else 20_000
    n_concurrent = 6_000 if quick else 60_000
    figures: dict[str, float] = {"creates": n, "synchronous_full": synchronous == "FULL"}

    store = await SqliteStorage.open(
        directory / "state.db", options=SqliteOptions(synchronous=synchronous)
    )
    raw = RawSqlite(directory / "raw.db", synchronous)
    try:
        # Interleaved rounds, so both see the same disk (other processes share it).
        raw_seconds = ours_seconds = 0.0
        rounds = 8
        for r in range(rounds):
            chunk = range(r * n // rounds, (r + 1) * n // rounds)
            raw_seconds += raw.inserts(chunk.start, len(chunk))
            started = time.perf_counter()
            for i in chunk:
                await store.create(f"/registry/seq/{i:08}", VALUE)
            ours_seconds += time.perf_counter() - started
        figures["raw_sqlite_inserts_per_s"] = n / raw_seconds
        figures["creates_per_s_1"] = n / ours_seconds
        started = time.perf_counter()
        figures["creates_per_s_64"] = await timed(
            n_concurrent, 64, lambda i: store.create(f"/registry/pods/ns/{i:08}", VALUE)
        )
        # raw again right after, over as long a time, for the concurrent ratio
        raw_n = max(1, int(figures["raw_sqlite_inserts_per_s"] * (time.perf_counter() - started)))
        raw_after = raw_n / raw.inserts(n, raw_n)
        figures["raw_sqlite_inserts_per_s_after"] = raw_after
        figures["ratio_creates_1_vs_raw"] = (
            figures["creates_per_s_1"] / figures["raw_sqlite_inserts_per_s"]
        )
        figures["ratio_creates_64_vs_raw"] = figures["creates_per_s_64"] / raw_after

        async def update(i: int) -> object:
            key = f"/registry/pods/ns/{i:08}"
            current = await store.get(key)
            assert current is not None
            return await store.update(key, VALUE[::-1], expected_revision=current.mod_revision)

        figures["updates_per_s_64"] = await timed(n, 64, update)
        figures["gets_per_s_1"] = await timed(
            n, 1, lambda i: store.get(f"/registry/pods/ns/{i:08}")
        )
        figures["gets_per_s_64"] = await timed(
            n * 4, 64, lambda i: store.get(f"/registry/pods/ns/{i % n_concurrent:08}")
        )

        for i in range(0, 10_000, 500):  # a 10k-key prefix of its own
            await asyncio.gather(
                *(store.create(f"/registry/ranged/{j:08}", VALUE) for j in range(i, i + 500))
            )
        started = time.perf_counter()
        result = await store.range("/registry/ranged/")
        figures["range_10k_ms"] = (time.perf_counter() - started) * 1000
        assert len(result.kvs) == 10_000
        started = time.perf_counter()
        page = await store.range("/registry/ranged/", limit=500)
        pages = 1
        while page.more:
            page = await store.range(
                "/registry/ranged/",
                limit=500,
                start_after=page.kvs[-1].key,
                revision=page.revision,
            )
            pages += 1
        figures["range_10k_paged_500_ms"] = (time.perf_counter() - started) * 1000
        assert pages == 20

        p50, p99 = await watch_latency(store, 500 if quick else 5_000)
        figures["watch_latency_ms_p50"] = p50
        figures["watch_latency_ms_p99"] = p99

        started = time.perf_counter()
        await store.compact(await store.current_revision())
        figures["compact_all_ms"] = (time.perf_counter() - started) * 1000
    finally:
        raw.conn.close()
        await store.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    parser.add_argument(
        "--synchronous",
        default="FULL",
        choices=["FULL", "NORMAL"],
        help="SQLite synchronous setting, for both ours and raw (default FULL: durable)",
    )
    parser.add_argument("--dir", type=Path, help="where to put the databases (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        figures = asyncio.run(run(Path(tmp), args.quick, args.synchronous))
        figures["db_bytes"] = os.path.getsize(Path(tmp) / "state.db")
    rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
    for key, value in rounded.items():
        print(f"{key:>28}: {value}")
    print("BENCH " + json.dumps(rounded, sort_keys=True))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
