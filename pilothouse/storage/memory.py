"""An in-memory :class:`~pilothouse.storage.interface.Storage`: the fake for tests.

Same contract as the SQLite backend (the contract suite runs on both), same
MVCC decisions (:mod:`pilothouse.storage.mvcc`), no I/O: every call completes
without yielding to the event loop, so each call is atomic. Nothing survives
``close()``. Use it in unit tests of anything built on storage::

    store = MemoryStorage()
    kv = await store.create("/registry/pods/default/web", b"...")
"""

from __future__ import annotations

import bisect
import time

from pilothouse.storage.interface import (
    KeyValue,
    RangeResult,
    StorageClosedError,
    WatchEvent,
    WatchStream,
)
from pilothouse.storage.keys import (
    check_key,
    check_prefix,
    check_revision,
    check_value,
    in_prefix,
)
from pilothouse.storage.metrics import StorageMetrics
from pilothouse.storage.mvcc import (
    Row,
    check_compact_revision,
    check_watch_start,
    event_of,
    live_kv,
    plan_create,
    plan_delete,
    plan_update,
    resolve_read_revision,
)
from pilothouse.storage.watch import DEFAULT_WATCH_QUEUE_SIZE, WatchHub

BACKEND = "memory"


def _revision_of(row: Row) -> int:
    return row.revision


class MemoryStorage:
    """The revision log in Python lists; see the module docstring."""

    def __init__(
        self,
        *,
        watch_queue_size: int = DEFAULT_WATCH_QUEUE_SIZE,
        metrics: StorageMetrics | None = None,
    ) -> None:
        self._metrics = metrics or StorageMetrics(registry=None)
        self._revision = 0
        self._compact_revision = 0
        self._log: list[Row] = []  # every row not compacted away, by revision
        self._versions: dict[str, list[Row]] = {}  # key -> its rows, by revision
        self._keys: list[str] = []  # sorted keys of _versions
        self._hub = WatchHub(
            backend=BACKEND, revision=0, queue_size=watch_queue_size, metrics=self._metrics
        )
        self._closed = False

    # -- reads -------------------------------------------------------------

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        check_key(key)
        check_revision(revision)
        self._check_open()
        at = resolve_read_revision(revision, self._compact_revision, self._revision)
        return live_kv(self._row_at(key, at))

    async def range(
        self,
        prefix: str,
        *,
        start_after: str = "",
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
    ) -> RangeResult:
        check_prefix(prefix)
        check_prefix(start_after)
        check_revision(limit, "limit")
        check_revision(revision)
        self._check_open()
        at = resolve_read_revision(revision, self._compact_revision, self._revision)
        kvs: list[KeyValue] = []
        count = 0
        if start_after >= prefix:
            i = bisect.bisect_right(self._keys, start_after)
        else:
            i = bisect.bisect_left(self._keys, prefix)
        while i < len(self._keys) and in_prefix(self._keys[i], prefix):
            kv = live_kv(self._row_at(self._keys[i], at))
            i += 1
            if kv is None:
                continue
            count += 1
            if not limit or len(kvs) < limit:
                kvs.append(
                    KeyValue(kv.key, b"", kv.create_revision, kv.mod_revision) if keys_only else kv
                )
        return RangeResult(kvs=kvs, revision=at, more=count > len(kvs), count=count)

    async def count(self, prefix: str) -> int:
        check_prefix(prefix)
        self._check_open()
        i = bisect.bisect_left(self._keys, prefix)
        n = 0
        while i < len(self._keys) and in_prefix(self._keys[i], prefix):
            n += not self._versions[self._keys[i]][-1].deleted
            i += 1
        return n

    # -- writes ------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> KeyValue:
        check_key(key)
        value = check_value(value)
        self._check_open()
        return self._append(plan_create(key, value, self._latest(key), self._revision + 1))

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        check_key(key)
        value = check_value(value)
        check_revision(expected_revision, "expected_revision")
        self._check_open()
        row = plan_update(key, value, expected_revision, self._latest(key), self._revision + 1)
        return self._append(row)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        check_key(key)
        check_revision(expected_revision, "expected_revision")
        self._check_open()
        row = plan_delete(key, expected_revision, self._latest(key), self._revision + 1)
        return self._append(row)

    # -- watch, compaction, lifecycle ----------------------------------------

    def watch(self, prefix: str, *, start_revision: int) -> WatchStream:
        check_prefix(prefix)
        check_revision(start_revision, "start_revision")
        start = start_revision or self._revision + 1
        return self._hub.stream(
            prefix,
            start,
            history=self._history,
            revisions=lambda: (self._compact_revision, self._revision),
        )

    async def current_revision(self) -> int:
        self._check_open()
        return self._revision

    async def compact(self, revision: int) -> None:
        check_revision(revision)
        self._check_open()
        check_compact_revision(revision, self._revision)
        if revision <= self._compact_revision:
            return
        self._compact_revision = revision
        for key in list(self._versions):
            rows = self._versions[key]
            split = bisect.bisect_right(rows, revision, key=_revision_of)
            kept = rows[split:]
            if split and not rows[split - 1].deleted:
                kept.insert(0, rows[split - 1])
            if kept:
                self._versions[key] = kept
            else:
                del self._versions[key]
        self._keys = sorted(self._versions)
        alive = {id(row) for rows in self._versions.values() for row in rows}
        self._log = [row for row in self._log if id(row) in alive]
        self._metrics.set_revisions(BACKEND, self._revision, self._compact_revision)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub.close()

    # -- internals ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosedError("memory storage is closed")

    def _latest(self, key: str) -> Row | None:
        rows = self._versions.get(key)
        return rows[-1] if rows else None

    def _row_at(self, key: str, revision: int) -> Row | None:
        rows = self._versions.get(key)
        if not rows:
            return None
        i = bisect.bisect_right(rows, revision, key=_revision_of)
        return rows[i - 1] if i else None

    def _append(self, row: Row) -> KeyValue:
        started = time.perf_counter()
        self._revision = row.revision
        self._log.append(row)
        rows = self._versions.get(row.key)
        if rows is None:
            self._versions[row.key] = [row]
            bisect.insort(self._keys, row.key)
        else:
            rows.append(row)
        event = event_of(row)
        self._hub.publish([event])
        self._metrics.set_revisions(BACKEND, self._revision, self._compact_revision)
        self._metrics.observe_request(
            "delete" if row.deleted else "create" if row.created else "update",
            BACKEND,
            time.perf_counter() - started,
        )
        return event.kv

    async def _history(self, prefix: str, first: int, last: int, limit: int) -> list[WatchEvent]:
        check_watch_start(first, self._compact_revision, self._revision)
        events: list[WatchEvent] = []
        i = bisect.bisect_left(self._log, first, key=_revision_of)
        while i < len(self._log) and self._log[i].revision <= last and len(events) < limit:
            row = self._log[i]
            if in_prefix(row.key, prefix):
                events.append(event_of(row))
            i += 1
        return events
