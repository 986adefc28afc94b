"""MVCC decisions, free of I/O, shared by every log-structured backend.

The log has one :class:`Row` per revision (the SQLite table has the same
columns). Given the latest row of a key, ``plan_create`` / ``plan_update`` /
``plan_delete`` either return the row to append or raise the error the
contract asks for; the backend only fetches the latest row and appends.

Row meaning:
- ``created``: this write created the key (create_revision == revision).
- ``deleted``: a tombstone; ``value`` is the last value the key had.
- ``prev_revision``: the revision of the key's previous row (0 if none is
  left). Compaction uses it: a row is dead once a later row of its key is
  at or below the compact revision, and that later row names it here.
- ``old_value``: the previous value on an update (so a watch event carries
  ``prev_kv`` without a second lookup); None on creates and tombstones.
"""

from __future__ import annotations

from typing import NamedTuple

from pilothouse.storage.interface import (
    CompactedError,
    ConflictError,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    WatchEvent,
)


class Row(NamedTuple):
    revision: int
    key: str
    created: int  # 0/1, as SQLite stores it
    deleted: int
    create_revision: int
    prev_revision: int
    value: bytes
    old_value: bytes | None


def live_kv(row: Row | None) -> KeyValue | None:
    """The key's version this row leaves behind (None: the key does not exist)."""
    if row is None or row.deleted:
        return None
    return KeyValue(row.key, row.value, row.create_revision, row.revision)


def event_of(row: Row) -> WatchEvent:
    """The watch event a row reports."""
    if row.deleted:
        kv = KeyValue(row.key, row.value, row.create_revision, row.revision)
        prev = KeyValue(row.key, row.value, row.create_revision, row.prev_revision)
        return WatchEvent(EventType.DELETE, kv, prev)
    kv = KeyValue(row.key, row.value, row.create_revision, row.revision)
    if row.created:
        return WatchEvent(EventType.PUT, kv, None)
    prev = KeyValue(row.key, row.old_value or b"", row.create_revision, row.prev_revision)
    return WatchEvent(EventType.PUT, kv, prev)


def plan_create(key: str, value: bytes, latest: Row | None, revision: int) -> Row:
    """The row that creates ``key`` at ``revision``; KeyExistsError if it exists."""
    if latest is not None and not latest.deleted:
        raise KeyExistsError(key)
    prev = latest.revision if latest is not None else 0
    return Row(revision, key, 1, 0, revision, prev, value, None)


def plan_update(
    key: str, value: bytes, expected_revision: int, latest: Row | None, revision: int
) -> Row:
    """The row that updates ``key`` at ``revision``; KeyNotFoundError / ConflictError."""
    current = _current(key, expected_revision, latest)
    return Row(revision, key, 0, 0, current.create_revision, current.revision, value, current.value)


def plan_delete(key: str, expected_revision: int, latest: Row | None, revision: int) -> Row:
    """The tombstone that deletes ``key`` at ``revision``; KeyNotFoundError / ConflictError."""
    current = _current(key, expected_revision, latest)
    return Row(revision, key, 0, 1, current.create_revision, current.revision, current.value, None)


def _current(key: str, expected_revision: int, latest: Row | None) -> Row:
    if latest is None or latest.deleted:
        raise KeyNotFoundError(key)
    if expected_revision and expected_revision != latest.revision:
        raise ConflictError(key, expected_revision, live_kv(latest))
    return latest


def resolve_read_revision(revision: int, compact_revision: int, current_revision: int) -> int:
    """The revision a read at ``revision`` (0: now) happens at, or the error it gets.

    A read at the compact revision itself is allowed: compaction keeps the
    state at that revision.
    """
    if revision == 0:
        return current_revision
    if revision > current_revision:
        raise FutureRevisionError(revision, current_revision)
    if revision < compact_revision:
        raise CompactedError(revision, compact_revision, current_revision)
    return revision


def check_watch_start(start_revision: int, compact_revision: int, current_revision: int) -> None:
    """CompactedError if history from ``start_revision`` on is no longer complete.

    Compaction at R may drop the tombstone written at R, so a watch must
    start strictly after the compact revision.
    """
    if start_revision <= compact_revision:
        raise CompactedError(start_revision, compact_revision, current_revision)


def check_compact_revision(revision: int, current_revision: int) -> None:
    if revision > current_revision:
        raise FutureRevisionError(revision, current_revision)
