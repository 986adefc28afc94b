"""The SQLite backend: MVCC over an append-only revision log in one file.

Layout (schema version 1, ``PRAGMA user_version``; ``PRAGMA application_id``
marks the file as ours):

- ``revisions``: one row per revision (``id`` is the revision; columns as
  :class:`pilothouse.storage.mvcc.Row`), indexed by ``(key, id, deleted)``. Reading a
  key at revision R is "its row with the greatest id <= R, unless that row is
  a tombstone". Compaction never deletes the newest row, so ``MAX(id)`` is the
  current revision.
- ``meta``: ``compact_revision`` (reads below it and watches from at or below
  it fail) and ``compacted_upto`` (how far the physical deletion got).

Threads: the event loop never touches SQLite. One *writer* thread owns the
only read-write connection and applies writes by *group commit*: it takes
every write queued since its last commit, applies them in order in one
transaction (each decided by :mod:`pilothouse.storage.mvcc` against the rows
before it, so a conflict fails only that write), commits once (WAL,
``synchronous=FULL``: one fsync), and only then acknowledges them all and
publishes their watch events, in revision order. One *reader* thread owns a
read-only connection; each read is one transaction, so a range and its
revision and count are one snapshot. WAL lets reads run during commits.
One *checkpointer* thread copies the WAL back into the database file
(``PRAGMA wal_checkpoint(PASSIVE)``, which never blocks the writer), so no
commit pays for a checkpoint: SQLite's automatic checkpoint, which runs inside
the commit that crosses 1000 WAL pages, is turned off on the writer.

Compaction to R sets ``compact_revision`` at once (in a write transaction),
then deletes in chunks between write batches, walking the rows after
``compacted_upto``: a row at or below R kills the row its ``prev_revision``
names (superseded by then), and a tombstone at or below R kills itself.
Rows above R are never deleted, so reads at or after R are unchanged.

Opening is careful: the file is locked (``flock``) against a second process,
its header, ``application_id``, schema version and ``PRAGMA quick_check`` are
checked through a read-only connection first, and any failure is a
:class:`StorageOpenError` naming the file, with nothing on disk changed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pilothouse.storage.interface import (
    KeyValue,
    RangeResult,
    StorageClosedError,
    StorageError,
    StorageOpenError,
    WatchEvent,
    WatchStream,
)
from pilothouse.storage.keys import (
    check_key,
    check_prefix,
    check_revision,
    check_value,
    prefix_end,
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

log = logging.getLogger("pilothouse.storage")

BACKEND = "sqlite"
SCHEMA_VERSION = 1
APPLICATION_ID = 0x50485331  # "PHS1"
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = (
    """CREATE TABLE revisions (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        created INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        create_revision INTEGER NOT NULL,
        prev_revision INTEGER NOT NULL,
        value BLOB NOT NULL,
        old_value BLOB
    )""",
    # (key, id, deleted) covers "is this the key's newest live row at R?", so
    # ranges and counts decide liveness from the index and read table rows
    # (with their values) only for what they return.
    "CREATE INDEX revisions_key_id ON revisions (key, id, deleted)",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta (name, value) VALUES ('compact_revision', 0), ('compacted_upto', 0)",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_TABLES = {"revisions", "meta"}

_COLUMNS = "id, key, created, deleted, create_revision, prev_revision, value, old_value"
_SQL_LATEST = f"SELECT {_COLUMNS} FROM revisions WHERE key = ? ORDER BY id DESC LIMIT 1"
_SQL_AT = f"SELECT {_COLUMNS} FROM revisions WHERE key = ? AND id <= ? ORDER BY id DESC LIMIT 1"
_SQL_INSERT = f"INSERT INTO revisions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_SQL_REVISIONS = (
    "SELECT (SELECT MAX(id) FROM revisions),"
    " (SELECT value FROM meta WHERE name = 'compact_revision')"
)
_SQL_COMPACT_STATE = (
    "SELECT (SELECT value FROM meta WHERE name = 'compact_revision'),"
    " (SELECT value FROM meta WHERE name = 'compacted_upto')"
)
# "A live row with no newer row of its key at or below the read revision",
# as a correlated subquery, so a page walks the key index in key order and
# stops at its LIMIT. The unary + keeps the planner off the rowid for ``id <= ?``.
_LIVE_AT = (
    "r.deleted = 0 AND +r.id <= :rev AND NOT EXISTS (SELECT 1 FROM revisions r2"
    " WHERE r2.key = r.key AND r2.id > r.id AND r2.id <= :rev)"
)

DEFAULT_MAX_BATCH = 512
PAGE_COUNT_CACHE = 256
DEFAULT_COMPACT_CHUNK = 1000
# The checkpointer runs at most this often while writes come in.
CHECKPOINT_INTERVAL = 0.5
# A WAL this many pages long is checkpointed with RESTART (waits for the writer
# between two of its transactions) so that it cannot grow without bound when
# passive checkpoints keep falling just behind a steady stream of commits.
CHECKPOINT_RESTART_PAGES = 16_384

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SqliteOptions:
    """Tuning of a SQLite store (all settable from the URL query, see factory)."""

    synchronous: str = "FULL"  # FULL: durable against power loss; NORMAL: against crashes
    integrity_check: str = "quick"  # at open: quick | full | off
    watch_queue_size: int = DEFAULT_WATCH_QUEUE_SIZE
    max_batch: int = DEFAULT_MAX_BATCH  # most writes in one group commit
    compact_chunk: int = DEFAULT_COMPACT_CHUNK  # rows examined per compaction transaction
    busy_timeout_ms: int = 10_000  # how long a transaction waits for a lock held elsewhere
    # The largest row (key, value and previous value) a write may store; a bigger
    # write fails alone with StorageError. 0: SQLite's own limit (about 1 GB).
    max_row_bytes: int = 0

    def __post_init__(self) -> None:
        if self.synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(
                f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {self.synchronous!r}"
            )
        if self.integrity_check not in {"quick", "full", "off"}:
            raise ValueError(
                f"integrity_check must be quick, full or off, not {self.integrity_check!r}"
            )
        if self.max_row_bytes < 0:
            raise ValueError(f"max_row_bytes must be >= 0, got {self.max_row_bytes}")
        for name in ("watch_queue_size", "max_batch", "compact_chunk", "busy_timeout_ms"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class _WriteOp(NamedTuple):
    kind: str  # create | update | delete | compact
    key: str
    value: bytes
    revision: int  # expected revision (update/delete) or target (compact)
    future: asyncio.Future[Any]


class _ReadJob(NamedTuple):
    run: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


_STOP = object()
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


def _settle(outcomes: Iterable[_Outcome]) -> None:
    for future, result, error in outcomes:
        if future.done():  # the caller was cancelled
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _drain(jobs: queue.SimpleQueue[Any], first: Any, most: int) -> tuple[list[Any], bool]:
    """``first`` and whatever else is queued (up to ``most``); and whether STOP was seen."""
    batch = [first]
    while len(batch) < most:
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            break
        if job is _STOP:
            return batch, True
        batch.append(job)
    return batch, False


def _leftovers(jobs: queue.SimpleQueue[Any]) -> list[Any]:
    """Jobs still queued when a thread stops (they get StorageClosedError)."""
    left: list[Any] = []
    while True:
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            return left
        if job is not _STOP:
            left.append(job)


def _internal(path: Path, exc: BaseException) -> StorageError:
    return StorageError(f"{path}: internal storage error: {exc!r}")


_STATEMENT_ERRORS = {sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH}


def _is_statement_error(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _STATEMENT_ERRORS


class _Thread(threading.Thread):
    """A thread that owns one connection and posts results to the event loop."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name=name, daemon=True)
        self.loop = loop
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.done: concurrent.futures.Future[None] = concurrent.futures.Future()

    def post(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self.loop.call_soon_threadsafe(callback)


class _Writer(_Thread):
    """The only writer: group commit and compaction (see the module docstring)."""

    def __init__(self, store: SqliteStorage) -> None:
        super().__init__(f"pilothouse-storage-writer:{store.path.name}", store._loop)
        self.store = store
        self.options = store.options
        self.conn: sqlite3.Connection | None = None
        self.revision = 0
        self.compact_revision = 0
        self.compacted_upto = 0
        self.compact_waiters: list[tuple[int, asyncio.Future[Any]]] = []
        self.compaction_paused = False  # after a failed step, until the next compact()
        self.kept_tombstone = 0  # a dead row kept only because it was the newest

    @property
    def compaction_pending(self) -> bool:
        return self.compacted_upto < self.compact_revision and not self.compaction_paused

    def run(self) -> None:
        try:
            self.conn = _connect_writer(self.store.path, self.options)
            self.revision, self.compact_revision, self.compacted_upto = _load_state(self.conn)
            newest = self.conn.execute(
                "SELECT id, deleted FROM revisions ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if newest and newest[1] and newest[0] <= self.compacted_upto:
                self.kept_tombstone = newest[0]  # kept by a compaction before a restart
        except BaseException as exc:  # reported to open(), which raises StorageOpenError
            self.ready.set_exception(exc)
            self._close()
            self.done.set_result(None)
            return
        self.ready.set_result(None)
        try:
            self._loop()
        finally:
            self._close()
            self.done.set_result(None)

    def _close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self.conn = None

    def _loop(self) -> None:
        while True:
            if self.compaction_pending:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    self._compact_step()
                    continue
            else:
                job = self.jobs.get()
            if job is _STOP:
                break
            batch, stop = _drain(self.jobs, job, self.options.max_batch)
            try:
                self._commit(batch)
            except Exception as exc:  # a bug: fail these writes, keep serving the others
                log.exception("writer failed", extra={"path": str(self.store.path)})
                with contextlib.suppress(sqlite3.Error):
                    if self.conn is not None and self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                failed = [(op.future, None, _internal(self.store.path, exc)) for op in batch]
                self.post(functools.partial(_settle, failed))
            if stop:
                break
            if self.compaction_pending:
                self._compact_step()
        closed = StorageClosedError(f"{self.store.path}: storage closed")
        failed = [(f, None, closed) for _, f in self.compact_waiters]
        failed.extend((op.future, None, closed) for op in _leftovers(self.jobs))
        self.post(functools.partial(_settle, failed))

    def _commit(self, batch: list[_WriteOp]) -> None:
        assert self.conn is not None
        conn = self.conn
        started = time.perf_counter()
        revision = self.revision
        compact_revision = self.compact_revision
        outcomes: list[_Outcome] = []
        events: list[WatchEvent] = []
        waiters: list[tuple[int, asyncio.Future[Any]]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                try:
                    if op.kind == "compact":
                        check_compact_revision(op.revision, revision)
                        if op.revision > compact_revision:
                            compact_revision = op.revision
                            conn.execute(
                                "UPDATE meta SET value = ? WHERE name = 'compact_revision'",
                                (compact_revision,),
                            )
                        waiters.append((op.revision, op.future))
                        self.compaction_paused = False
                        continue
                    cur = conn.execute(_SQL_LATEST, (op.key,)).fetchone()
                    latest = Row(*cur) if cur is not None else None
                    if op.kind == "create":
                        row = plan_create(op.key, op.value, latest, revision + 1)
                    elif op.kind == "update":
                        row = plan_update(op.key, op.value, op.revision, latest, revision + 1)
                    else:
                        row = plan_delete(op.key, op.revision, latest, revision + 1)
                except StorageError as exc:
                    outcomes.append((op.future, None, exc))
                    continue
                try:
                    conn.execute(_SQL_INSERT, row)
                except sqlite3.Error as exc:
                    # A statement-level refusal (value too big, constraint) undoes only
                    # this statement: fail this write, keep the batch. Anything else
                    # may have ended the transaction, and fails the batch below.
                    if not (conn.in_transaction and _is_statement_error(exc)):
                        raise
                    err = StorageError(f"{self.store.path}: write of {op.key!r} refused: {exc}")
                    outcomes.append((op.future, None, err))
                    continue
                revision = row.revision
                event = event_of(row)
                events.append(event)
                outcomes.append((op.future, event.kv, None))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            log.error(
                "write transaction failed",
                extra={"path": str(self.store.path), "error": str(exc), "writes": len(batch)},
            )
            outcomes = [
                (op.future, None, StorageError(f"{self.store.path}: write failed: {exc}"))
                for op in batch
            ]
            self.post(functools.partial(_settle, outcomes))
            return
        self.revision = revision
        self.compact_revision = compact_revision
        # Publish the new revisions to readers of the store's attributes before
        # anyone is told: an acknowledged write is always <= current_revision().
        self.store._committed_revision = revision
        self.store._compact_revision = compact_revision
        self.store._metrics.observe_commit(BACKEND, len(batch), time.perf_counter() - started)
        done = [(r, f) for r, f in waiters if r <= self.compacted_upto]
        self.compact_waiters.extend((r, f) for r, f in waiters if r > self.compacted_upto)
        outcomes.extend((f, None, None) for _, f in done)
        self.post(functools.partial(self.store._deliver, events, outcomes))
        self.store._checkpointer.poke()

    def _compact_step(self) -> None:
        """Delete the dead rows among the next chunk after ``compacted_upto``."""
        assert self.conn is not None
        conn = self.conn
        target = self.compact_revision
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                "SELECT id, prev_revision, deleted FROM revisions"
                " WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (self.compacted_upto, target, self.options.compact_chunk),
            ).fetchall()
            dead = [(prev,) for _, prev, _ in rows if prev]
            dead.extend((rid,) for rid, _, deleted in rows if deleted and rid != self.revision)
            kept = self.kept_tombstone
            if kept and kept < self.revision:
                dead.append((kept,))
                kept = 0
            if any(rid == self.revision and deleted for rid, _, deleted in rows):
                # The newest row carries the current revision (MAX(id)): keep this
                # tombstone until a later write exists, then drop it as above.
                kept = self.revision
            conn.executemany("DELETE FROM revisions WHERE id = ?", dead)
            upto = rows[-1][0] if len(rows) == self.options.compact_chunk else target
            conn.execute("UPDATE meta SET value = ? WHERE name = 'compacted_upto'", (upto,))
            conn.execute("COMMIT")
            if upto == target:
                conn.execute("PRAGMA incremental_vacuum")
        except Exception as exc:  # disk trouble, or a bug: stop until the next compact()
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            log.error("compaction failed", extra={"path": str(self.store.path), "error": str(exc)})
            error = StorageError(f"{self.store.path}: compaction failed: {exc}")
            failed = [(f, None, error) for _, f in self.compact_waiters]
            self.compact_waiters = []
            self.compaction_paused = True
            self.post(functools.partial(_settle, failed))
            return
        self.compacted_upto = upto
        self.kept_tombstone = kept
        log.debug(
            "compaction step",
            extra={
                "path": str(self.store.path),
                "compacted_upto": upto,
                "target": target,
                "deleted": len(dead),
                "seconds": round(time.perf_counter() - started, 6),
            },
        )
        done = [f for r, f in self.compact_waiters if r <= upto]
        self.compact_waiters = [(r, f) for r, f in self.compact_waiters if r > upto]
        if done:
            log.info("compacted", extra={"path": str(self.store.path), "revision": upto})
            self.store._metrics.set_db_size(BACKEND, _db_size(self.store.path))
            self.post(functools.partial(_settle, [(f, None, None) for f in done]))


class _Reader(_Thread):
    """Runs reads, each in its own read transaction, in arrival order."""

    def __init__(self, store: SqliteStorage) -> None:
        super().__init__(f"pilothouse-storage-reader:{store.path.name}", store._loop)
        self.path = store.path
        self.options = store.options
        self.conn: sqlite3.Connection | None = None

    def run(self) -> None:
        try:
            self.conn = _connect_reader(self.path, self.options)
        except BaseException as exc:
            self.ready.set_exception(exc)
            self.done.set_result(None)
            return
        self.ready.set_result(None)
        try:
            stop = False
            while not stop:
                job = self.jobs.get()
                if job is _STOP:
                    break
                batch, stop = _drain(self.jobs, job, DEFAULT_MAX_BATCH)
                outcomes: list[_Outcome] = []
                for read in batch:
                    try:
                        outcomes.append((read.future, read.run(self.conn), None))
                    except StorageError as exc:
                        outcomes.append((read.future, None, exc))
                    except Exception as exc:
                        with contextlib.suppress(sqlite3.Error):
                            if self.conn.in_transaction:
                                self.conn.execute("ROLLBACK")
                        if isinstance(exc, sqlite3.Error):
                            err = StorageError(f"{self.path}: read failed: {exc}")
                        else:  # a bug: this read fails, the reader goes on
                            log.exception("reader failed", extra={"path": str(self.path)})
                            err = _internal(self.path, exc)
                        outcomes.append((read.future, None, err))
                self.post(functools.partial(_settle, outcomes))
        finally:
            closed = StorageClosedError(f"{self.path}: storage closed")
            self.post(
                functools.partial(
                    _settle, [(j.future, None, closed) for j in _leftovers(self.jobs)]
                )
            )
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self.done.set_result(None)


class _Checkpointer(threading.Thread):
    """Copies the WAL into the database file off the writer's path (module docstring).

    The writer calls :meth:`poke` after each commit; the checkpointer runs one
    passive checkpoint per poke, at most every ``CHECKPOINT_INTERVAL`` seconds.
    """

    def __init__(self, store: SqliteStorage) -> None:
        super().__init__(name=f"pilothouse-storage-checkpointer:{store.path.name}", daemon=True)
        self.path = store.path
        self.options = store.options
        self._wake = threading.Event()
        self._stopping = False
        self.checkpoints = 0
        self.wal_pages = 0  # WAL length (pages) at the last checkpoint

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def run(self) -> None:
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=True)
        except sqlite3.Error as exc:
            log.error("checkpointer cannot connect", extra={"path": str(self.path),
                                                            "error": str(exc)})
            return
        try:
            conn.execute(f"PRAGMA busy_timeout = {self.options.busy_timeout_ms}")
            while True:
                self._wake.wait()
                if self._stopping:
                    return
                self._wake.clear()
                self.checkpoint(conn)
                time.sleep(CHECKPOINT_INTERVAL)
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        mode = "RESTART" if self.wal_pages >= CHECKPOINT_RESTART_PAGES else "PASSIVE"
        try:
            _, pages, _ = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:  # busy or disk trouble: the next poke retries
            log.warning("checkpoint failed", extra={"path": str(self.path), "error": str(exc)})
            return
        self.checkpoints += 1
        self.wal_pages = max(pages, 0)


class SqliteStorage:
    """The embedded default backend; open it with :meth:`open` (or ``open_storage``)."""

    def __init__(
        self,
        path: Path,
        *,
        loop: asyncio.AbstractEventLoop,
        options: SqliteOptions,
        metrics: StorageMetrics,
        lock_fd: int,
    ) -> None:
        self.path = path
        self.options = options
        self._loop = loop
        self._metrics = metrics
        self._lock_fd = lock_fd
        self._closed = False
        self._committed_revision = 0
        self._compact_revision = 0
        self._page_counts: OrderedDict[tuple[str, str, int], int] = OrderedDict()
        self._writer = _Writer(self)
        self._reader = _Reader(self)
        self._checkpointer = _Checkpointer(self)
        self._hub = WatchHub(
            backend=BACKEND,
            revision=0,
            queue_size=options.watch_queue_size,
            metrics=metrics,
        )

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        options: SqliteOptions | None = None,
        metrics: StorageMetrics | None = None,
    ) -> SqliteStorage:
        """Open (creating if absent) the store in ``path``; StorageOpenError if it cannot be."""
        options = options or SqliteOptions()
        metrics = metrics or StorageMetrics(registry=None)
        db, lock_fd = await asyncio.to_thread(_prepare, os.fspath(path), options)
        store = cls(
            db, loop=asyncio.get_running_loop(), options=options, metrics=metrics, lock_fd=lock_fd
        )
        try:
            for thread in (store._writer, store._reader):
                thread.start()
                await asyncio.wrap_future(thread.ready)
        except BaseException as exc:
            await store._shutdown()
            if isinstance(exc, StorageOpenError):
                raise
            if isinstance(exc, sqlite3.Error | OSError):
                raise StorageOpenError(f"{db}: cannot open storage: {exc}") from None
            raise
        store._checkpointer.start()
        store._committed_revision = store._writer.revision
        store._compact_revision = store._writer.compact_revision
        store._hub.published_revision = store._writer.revision
        metrics.set_revisions(BACKEND, store._committed_revision, store._compact_revision)
        metrics.set_db_size(BACKEND, _db_size(db))
        log.info(
            "storage opened",
            extra={
                "backend": BACKEND,
                "path": str(db),
                "revision": store._committed_revision,
                "compact_revision": store._compact_revision,
                "synchronous": options.synchronous,
            },
        )
        return store

    # -- reads -------------------------------------------------------------

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        check_key(key)
        check_revision(revision)
        return await self._read("get", lambda conn: _read_get(conn, key, revision))

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
        # Paging: the count after a page's last key at its revision is already
        # known (count - len(kvs)) and can never change, so a consistent walk
        # through a big prefix counts it once, not once per page.
        known = self._page_counts.get((prefix, start_after, revision)) if revision else None
        result = await self._read(
            "range",
            lambda conn: _read_range(conn, prefix, start_after, limit, revision, keys_only, known),
        )
        if result.more:
            self._page_counts[(prefix, result.kvs[-1].key, result.revision)] = result.count - len(
                result.kvs
            )
            while len(self._page_counts) > PAGE_COUNT_CACHE:
                self._page_counts.popitem(last=False)
        return result

    async def count(self, prefix: str) -> int:
        check_prefix(prefix)
        return await self._read("count", lambda conn: _read_count(conn, prefix))

    # -- writes ------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> KeyValue:
        check_key(key)
        kv: KeyValue = await self._write("create", key, check_value(value), 0)
        return kv

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        check_key(key)
        check_revision(expected_revision, "expected_revision")
        kv: KeyValue = await self._write("update", key, check_value(value), expected_revision)
        return kv

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        check_key(key)
        check_revision(expected_revision, "expected_revision")
        kv: KeyValue = await self._write("delete", key, b"", expected_revision)
        return kv

    # -- watch, compaction, lifecycle ----------------------------------------

    def watch(self, prefix: str, *, start_revision: int) -> WatchStream:
        check_prefix(prefix)
        check_revision(start_revision, "start_revision")
        start = start_revision or self._committed_revision + 1
        return self._hub.stream(
            prefix,
            start,
            history=self._history,
            revisions=lambda: (self._compact_revision, self._committed_revision),
        )

    async def current_revision(self) -> int:
        self._check_open()
        return self._committed_revision

    async def compact(self, revision: int) -> None:
        check_revision(revision)
        await self._write("compact", "", b"", revision)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hub.close()
        await self._shutdown()
        log.info("storage closed", extra={"backend": BACKEND, "path": str(self.path)})

    # -- internals ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosedError(f"{self.path}: storage is closed")

    async def _shutdown(self) -> None:
        if self._checkpointer.is_alive():
            self._checkpointer.stop()
            await asyncio.to_thread(self._checkpointer.join)
        for thread in (self._reader, self._writer):  # the writer last: it owns the WAL
            if thread.is_alive():
                thread.jobs.put(_STOP)
                await asyncio.wrap_future(thread.done)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # after every connection: closing it drops SQLite's locks
            self._lock_fd = -1

    async def _write(self, kind: str, key: str, value: bytes, revision: int) -> Any:
        self._check_open()
        if not self._writer.is_alive():
            raise StorageError(f"{self.path}: the writer thread has stopped")
        future: asyncio.Future[Any] = self._loop.create_future()
        started = time.perf_counter()
        self._writer.jobs.put(_WriteOp(kind, key, value, revision, future))
        try:
            return await future
        except StorageError as exc:
            self._metrics.count_error(kind, BACKEND, exc)
            raise
        finally:
            self._metrics.observe_request(kind, BACKEND, time.perf_counter() - started)

    async def _read(self, operation: str, run: Callable[[sqlite3.Connection], T]) -> T:
        self._check_open()
        if not self._reader.is_alive():
            raise StorageError(f"{self.path}: the reader thread has stopped")
        future: asyncio.Future[T] = self._loop.create_future()
        started = time.perf_counter()
        self._reader.jobs.put(_ReadJob(run, future))
        try:
            return await future
        except StorageError as exc:
            self._metrics.count_error(operation, BACKEND, exc)
            raise
        finally:
            self._metrics.observe_request(operation, BACKEND, time.perf_counter() - started)

    def _deliver(self, events: list[WatchEvent], outcomes: list[_Outcome]) -> None:
        """On the loop, after a commit: events to watchers, then results to writers."""
        self._hub.publish(events)
        _settle(outcomes)
        self._metrics.set_revisions(BACKEND, self._committed_revision, self._compact_revision)

    async def _history(self, prefix: str, first: int, last: int, limit: int) -> list[WatchEvent]:
        return await self._read(
            "watch_history", lambda conn: _read_history(conn, prefix, first, last, limit)
        )


# -- reads, run on the reader thread -----------------------------------------------


def _revisions(conn: sqlite3.Connection) -> tuple[int, int]:
    current, compacted = conn.execute(_SQL_REVISIONS).fetchone()
    return current or 0, compacted or 0


def _read_get(conn: sqlite3.Connection, key: str, revision: int) -> KeyValue | None:
    if revision == 0:
        found = conn.execute(_SQL_LATEST, (key,)).fetchone()
        return live_kv(Row(*found)) if found is not None else None
    conn.execute("BEGIN")
    try:
        current, compacted = _revisions(conn)
        at = resolve_read_revision(revision, compacted, current)
        found = conn.execute(_SQL_AT, (key, at)).fetchone()
    finally:
        conn.execute("COMMIT")
    return live_kv(Row(*found)) if found is not None else None


def _key_bounds(prefix: str, start_after: str) -> tuple[str, dict[str, str]]:
    """SQL conditions (on ``r.key``) and parameters selecting keys under ``prefix`` after
    ``start_after``."""
    params: dict[str, str] = {}
    if start_after >= prefix and start_after:
        clauses = ["r.key > :lo"]
        params["lo"] = start_after
    elif prefix:
        clauses = ["r.key >= :lo"]
        params["lo"] = prefix
    else:
        clauses = []
    end = prefix_end(prefix)
    if end is not None:
        clauses.append("r.key < :hi")
        params["hi"] = end
    return " AND ".join([*clauses, ""]), params


def _read_range(
    conn: sqlite3.Connection,
    prefix: str,
    start_after: str,
    limit: int,
    revision: int,
    keys_only: bool,
    known_count: int | None = None,
) -> RangeResult:
    bounds, params = _key_bounds(prefix, start_after)
    value = "X''" if keys_only else "r.value"
    conn.execute("BEGIN")
    try:
        current, compacted = _revisions(conn)
        at = resolve_read_revision(revision, compacted, current)
        args: dict[str, Any] = {**params, "rev": at, "n": limit + 1 if limit else -1}
        rows = conn.execute(
            f"SELECT r.key, {value}, r.create_revision, r.id FROM revisions r"
            f" WHERE {bounds}{_LIVE_AT} ORDER BY r.key LIMIT :n",
            args,
        ).fetchall()
        more = bool(limit) and len(rows) > limit
        if more and known_count is not None:
            rows.pop()
            count = known_count
        elif more:
            rows.pop()
            (count,) = conn.execute(
                f"SELECT COUNT(*) FROM revisions r WHERE {bounds}{_LIVE_AT}", args
            ).fetchone()
        else:
            count = len(rows)
    finally:
        conn.execute("COMMIT")
    return RangeResult(kvs=[KeyValue(*r) for r in rows], revision=at, more=more, count=count)


def _read_count(conn: sqlite3.Connection, prefix: str) -> int:
    bounds, params = _key_bounds(prefix, "")
    (count,) = conn.execute(
        f"SELECT COUNT(*) FROM revisions r WHERE {bounds}r.deleted = 0"
        " AND r.id = (SELECT MAX(r2.id) FROM revisions r2 WHERE r2.key = r.key)",
        params,
    ).fetchone()
    return int(count)


def _read_history(
    conn: sqlite3.Connection, prefix: str, first: int, last: int, limit: int
) -> list[WatchEvent]:
    # +key: walk the rowid range in revision order instead of the key index.
    bounds, params = _key_bounds(prefix, "")
    bounds = bounds.replace("r.key", "+r.key")
    conn.execute("BEGIN")
    try:
        current, compacted = _revisions(conn)
        check_watch_start(first, compacted, current)
        rows = conn.execute(
            f"SELECT {', '.join('r.' + c for c in _COLUMNS.split(', '))} FROM revisions r"
            f" WHERE {bounds}r.id >= :first AND r.id <= :last ORDER BY r.id LIMIT :n",
            {**params, "first": first, "last": last, "n": limit},
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    return [event_of(Row(*r)) for r in rows]


# -- opening ------------------------------------------------------------------------


def _open_error(path: Path, why: str) -> StorageOpenError:
    return StorageOpenError(f"cannot open storage {path}: {why}")


def _prepare(name: str, options: SqliteOptions) -> tuple[Path, int]:
    """Lock the file and check it is a store we can use: its absolute path and lock fd.

    Runs before any read-write connection exists, so a file we refuse is
    never written to.
    """
    path = Path(os.path.abspath(name))
    if path.is_dir():
        raise _open_error(path, "it is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _open_error(path, f"cannot create its directory: {exc.strerror or exc}") from None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise _open_error(path, exc.strerror or str(exc)) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _open_error(path, "it is in use by another process (locked)") from None
        header = os.pread(fd, 100, 0)
        if header:
            if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
                raise _open_error(path, "it is not a SQLite database")
            _validate_existing(path, options)
    except BaseException:
        os.close(fd)
        raise
    return path, fd


def _validate_existing(path: Path, options: SqliteOptions) -> None:
    """Check an existing file through a read-only connection (which never writes it)."""
    sidecars = [Path(f"{path}-wal"), Path(f"{path}-shm")]
    existed = {p: p.exists() for p in sidecars}
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise _open_error(path, f"unreadable: {exc}") from None
    ok = False
    try:
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = _tables(conn)
        except sqlite3.Error as exc:
            raise _open_error(path, f"corrupt or unreadable database: {exc}") from None
        if app_id != APPLICATION_ID:
            if app_id == 0 and not tables:
                ok = True
                return  # an empty SQLite file: ours to initialise
            raise _open_error(
                path,
                f"it is not a pilothouse database (application_id {app_id:#x}, "
                f"tables: {', '.join(sorted(tables)) or 'none'})",
            )
        if version > SCHEMA_VERSION:
            raise _open_error(
                path,
                f"its schema version {version} is newer than this pilothouse supports "
                f"({SCHEMA_VERSION}); use a newer pilothouse",
            )
        if version < SCHEMA_VERSION or not {"revisions", "meta"} <= tables:
            raise _open_error(path, f"unknown schema (version {version}, tables {sorted(tables)})")
        if options.integrity_check != "off":
            pragma = "quick_check" if options.integrity_check == "quick" else "integrity_check"
            try:
                problems = [r[0] for r in conn.execute(f"PRAGMA {pragma}(10)")]
            except sqlite3.Error as exc:
                raise _open_error(path, f"corrupt database: {exc}") from None
            if problems != ["ok"]:
                raise _open_error(path, "corrupt database: " + "; ".join(problems))
        ok = True
    finally:
        conn.close()
        if not ok:  # leave the directory as we found it
            for sidecar in sidecars:
                if not existed[sidecar]:
                    with contextlib.suppress(OSError):
                        if sidecar.name.endswith("-shm") or sidecar.stat().st_size == 0:
                            sidecar.unlink()


def _connect_writer(path: Path, options: SqliteOptions) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, cached_statements=64)
    try:
        conn.execute(f"PRAGMA busy_timeout = {options.busy_timeout_ms}")
        if options.max_row_bytes:
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, options.max_row_bytes)
        tables = _tables(conn)
        if not tables:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise _open_error(path, f"cannot use WAL journal mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {options.synchronous.upper()}")
        # Checkpoints run on their own thread (_Checkpointer), never inside a commit.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        if not tables:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
            log.info("storage created", extra={"backend": BACKEND, "path": str(path)})
        elif not tables <= _TABLES:
            raise _open_error(path, f"unexpected tables {sorted(tables - _TABLES)}")
    except BaseException:
        conn.close()
        raise
    return conn


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _connect_reader(path: Path, options: SqliteOptions) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, cached_statements=64)
    conn.execute(f"PRAGMA busy_timeout = {options.busy_timeout_ms}")
    conn.execute("PRAGMA query_only = 1")
    conn.execute("PRAGMA cache_size = -32768")
    return conn


def _load_state(conn: sqlite3.Connection) -> tuple[int, int, int]:
    revision, _ = _revisions(conn)
    compacted, upto = conn.execute(_SQL_COMPACT_STATE).fetchone()
    return revision, compacted or 0, upto or 0


def _db_size(path: Path) -> int:
    total = 0
    for name in (str(path), f"{path}-wal"):
        with contextlib.suppress(OSError):
            total += os.path.getsize(name)
    return total
