"""SQLite backend specifics: durability across SIGKILL and restarts, physical
compaction, group commit, write failures, metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pilothouse.storage import (
    CompactedError,
    KeyValue,
    StorageError,
    StorageMetrics,
    open_storage,
)
from pilothouse.storage.sqlite import SqliteOptions, SqliteStorage

DEADLINE = 30.0

# A child that writes from 16 concurrent tasks and prints each write as soon
# as it is acknowledged; the parent SIGKILLs it mid-stream.
WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pilothouse.storage import open_storage

    async def main(url):
        store = await open_storage(url)
        print("READY", flush=True)

        async def writer(w):
            i = 0
            while True:
                kv = await store.create(f"/k/{w}/{i}", f"{w}-{i}".encode())
                print(f"ACK {kv.key} {kv.mod_revision}", flush=True)
                i += 1

        await asyncio.gather(*(writer(w) for w in range(16)))

    asyncio.run(main(sys.argv[1]))
    """
)


async def read_line(proc: asyncio.subprocess.Process, deadline: float) -> str:
    assert proc.stdout is not None
    timeout = deadline - asyncio.get_running_loop().time()
    line = await asyncio.wait_for(proc.stdout.readline(), max(timeout, 0.001))
    if not line:
        raise AssertionError(f"the writer process died with status {await proc.wait()}")
    return line.decode().strip()


@pytest.mark.slow
async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, f"sqlite://{path}", stdout=asyncio.subprocess.PIPE
    )
    acked: dict[str, int] = {}
    deadline = asyncio.get_running_loop().time() + DEADLINE
    try:
        assert await read_line(proc, deadline) == "READY"
        while len(acked) < 500:
            _, acked_key, revision = (await read_line(proc, deadline)).split()
            acked[acked_key] = int(revision)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    store = await open_storage(f"sqlite://{path}")
    try:
        current = await store.current_revision()
        assert current >= max(acked.values())
        for key, acked_revision in acked.items():
            kv = await store.get(key)
            assert kv is not None, f"acknowledged write of {key} lost"
            assert kv.mod_revision == acked_revision
        # revisions stay dense: every revision up to the current one is a stored write
        everything = await store.range("/k/")
        assert sorted(kv.mod_revision for kv in everything.kvs) == list(range(1, current + 1))
        # and the store goes on from there
        assert (await store.create("/after", b"")).mod_revision == current + 1
    finally:
        await store.close()


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await open_storage(f"sqlite://{path}")
    kv = await store.create("/a", b"1")
    await store.update("/a", b"2", expected_revision=kv.mod_revision)
    await store.create("/b", b"1")
    await store.delete("/b")
    await store.compact(2)
    before = await store.range("")
    await store.close()

    store = await open_storage(f"sqlite://{path}")
    try:
        assert await store.current_revision() == 4
        assert await store.range("") == before
        assert await store.get("/a", revision=2) == KeyValue("/a", b"2", 1, 2)
        with pytest.raises(CompactedError):
            await store.get("/a", revision=1)
        stream = store.watch("", start_revision=3)
        events = [await asyncio.wait_for(anext(stream), DEADLINE) for _ in range(2)]
        await stream.aclose()
        assert [e.revision for e in events] == [3, 4]
        assert (await store.create("/c", b"")).mod_revision == 5
    finally:
        await store.close()


def row_revisions(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT id FROM revisions ORDER BY id")]
    finally:
        conn.close()


async def test_compaction_deletes_dead_rows_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await open_storage(f"sqlite://{path}?compact_chunk=3")
    await store.create("/stable", b"")  # 1
    kv = await store.create("/churn", b"0")  # 2
    for i in range(1, 8):  # 3..9
        kv = await store.update("/churn", str(i).encode(), expected_revision=kv.mod_revision)
    await store.create("/gone", b"")  # 10
    await store.delete("/gone")  # 11
    await store.create("/new", b"")  # 12
    await store.compact(11)
    # kept: the untouched key, the newest version of /churn, everything after 11
    assert row_revisions(path) == [1, 9, 12]
    await store.close()


async def test_unfinished_physical_compaction_resumes_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await open_storage(f"sqlite://{path}")
    kv = await store.create("/a", b"0")
    for i in range(1, 6):
        kv = await store.update("/a", str(i).encode(), expected_revision=kv.mod_revision)
    await store.close()
    # as if the process died after recording compact_revision, before deleting rows
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = 5 WHERE name = 'compact_revision'")
    conn.commit()
    conn.close()
    store = await open_storage(f"sqlite://{path}")
    with pytest.raises(CompactedError):
        await store.get("/a", revision=4)
    await store.compact(5)  # already recorded: waits for the deletion to finish
    assert row_revisions(path) == [5, 6]
    await store.close()


async def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    store = await open_storage(
        f"sqlite://{tmp_path / 'state.db'}", metrics=StorageMetrics(registry)
    )
    await asyncio.gather(*(store.create(f"/g/{i}", b"") for i in range(256)))
    await store.close()
    commits = registry.get_sample_value(
        "pilothouse_storage_commit_batch_size_count", {"backend": "sqlite"}
    )
    writes = registry.get_sample_value(
        "pilothouse_storage_commit_batch_size_sum", {"backend": "sqlite"}
    )
    creates = registry.get_sample_value(
        "pilothouse_storage_request_duration_seconds_count",
        {"operation": "create", "backend": "sqlite"},
    )
    assert writes == creates == 256
    assert commits is not None and commits < 256


async def test_a_failed_commit_fails_its_writes_and_leaves_no_gap(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SqliteStorage.open(path, options=SqliteOptions(busy_timeout_ms=50))
    await store.create("/a", b"")
    intruder = sqlite3.connect(path, isolation_level=None)
    intruder.execute("BEGIN EXCLUSIVE")  # holds the write lock: our commit cannot happen
    try:
        with pytest.raises(StorageError, match=str(path)):
            await store.create("/b", b"")
        assert await store.current_revision() == 1
    finally:
        intruder.execute("ROLLBACK")
        intruder.close()
    assert (await store.create("/b", b"")).mod_revision == 2
    assert [kv.key for kv in (await store.range("")).kvs] == ["/a", "/b"]
    await store.close()


async def test_db_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await open_storage(f"sqlite://{path}")
    await store.close()
    assert os.stat(path).st_mode & 0o077 == 0


async def test_a_refused_write_fails_alone_in_its_batch(tmp_path: Path) -> None:
    store = await SqliteStorage.open(
        tmp_path / "state.db", options=SqliteOptions(max_row_bytes=4096)
    )
    results = await asyncio.gather(
        *(store.create(f"/ok/{i}", b"small") for i in range(10)),
        store.create("/big", b"x" * 10_000),
        *(store.create(f"/ok/{i}", b"small") for i in range(10, 20)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, StorageError)]
    assert len(refused) == 1 and "/big" in str(refused[0])
    revisions = sorted(r.mod_revision for r in results if isinstance(r, KeyValue))
    assert revisions == list(range(1, 21))
    assert await store.get("/big") is None
    await store.close()


async def test_a_failing_read_fails_alone(tmp_path: Path) -> None:
    store = await SqliteStorage.open(tmp_path / "state.db")
    await store.create("/a", b"")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")
        raise RuntimeError("a bug in a read")

    with pytest.raises(StorageError, match="internal storage error"):
        await store._read("broken", broken)
    assert (await store.get("/a")) is not None  # the reader is still there, not in a transaction
    assert (await store.create("/b", b"")).mod_revision == 2
    await store.close()


async def test_compacting_away_a_deletion_at_the_current_revision(tmp_path: Path) -> None:
    """The newest row is kept (it carries the current revision) until a later write."""
    path = tmp_path / "state.db"
    store = await open_storage(f"sqlite://{path}")
    await store.create("/a", b"")  # 1
    await store.create("/b", b"")  # 2
    await store.delete("/b")  # 3
    await store.compact(3)
    assert row_revisions(path) == [1, 3]
    await store.close()

    store = await open_storage(f"sqlite://{path}")
    assert await store.current_revision() == 3
    assert await store.get("/b") is None
    assert (await store.create("/c", b"")).mod_revision == 4
    await store.compact(4)
    assert row_revisions(path) == [1, 4]
    await store.close()
