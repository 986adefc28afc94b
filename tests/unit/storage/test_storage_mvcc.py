"""MVCC decisions, without any backend."""

from __future__ import annotations

import pytest

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


def make_row(
    revision: int,
    *,
    key: str = "/k",
    value: bytes = b"v",
    created: bool = False,
    deleted: bool = False,
    create_revision: int = 1,
    prev_revision: int = 0,
    old_value: bytes | None = None,
) -> Row:
    return Row(
        revision, key, int(created), int(deleted), create_revision, prev_revision, value, old_value
    )


LIVE = make_row(5, value=b"five", create_revision=2, prev_revision=2, old_value=b"two")
TOMBSTONE = make_row(6, value=b"five", deleted=True, create_revision=2, prev_revision=5)


def test_create_of_absent_key() -> None:
    assert plan_create("/k", b"new", None, 1) == Row(1, "/k", 1, 0, 1, 0, b"new", None)


def test_create_after_tombstone_links_to_it() -> None:
    row = plan_create("/k", b"new", TOMBSTONE, 9)
    assert (row.created, row.create_revision, row.prev_revision) == (1, 9, 6)


def test_create_of_live_key_fails() -> None:
    with pytest.raises(KeyExistsError):
        plan_create("/k", b"new", LIVE, 9)


@pytest.mark.parametrize("expected", [0, 5], ids=["unconditional", "matching"])
def test_update(expected: int) -> None:
    row = plan_update("/k", b"new", expected, LIVE, 9)
    assert row == Row(9, "/k", 0, 0, 2, 5, b"new", b"five")


@pytest.mark.parametrize(
    ("latest", "expected", "error"),
    [
        (None, 0, KeyNotFoundError),
        (TOMBSTONE, 0, KeyNotFoundError),
        (TOMBSTONE, 6, KeyNotFoundError),
        (LIVE, 4, ConflictError),
    ],
    ids=["absent", "deleted", "deleted-at-expected", "stale"],
)
@pytest.mark.parametrize("verb", ["update", "delete"])
def test_update_and_delete_refusals(
    verb: str, latest: Row | None, expected: int, error: type[Exception]
) -> None:
    with pytest.raises(error) as err:
        if verb == "update":
            plan_update("/k", b"x", expected, latest, 9)
        else:
            plan_delete("/k", expected, latest, 9)
    if isinstance(err.value, ConflictError):
        assert err.value.current == KeyValue("/k", b"five", 2, 5)


def test_delete_keeps_the_last_value() -> None:
    assert plan_delete("/k", 5, LIVE, 9) == Row(9, "/k", 0, 1, 2, 5, b"five", None)


@pytest.mark.parametrize(
    ("row", "event"),
    [
        (
            make_row(3, created=True, create_revision=3),
            WatchEvent(EventType.PUT, KeyValue("/k", b"v", 3, 3), None),
        ),
        (
            LIVE,
            WatchEvent(EventType.PUT, KeyValue("/k", b"five", 2, 5), KeyValue("/k", b"two", 2, 2)),
        ),
        (
            TOMBSTONE,
            WatchEvent(
                EventType.DELETE, KeyValue("/k", b"five", 2, 6), KeyValue("/k", b"five", 2, 5)
            ),
        ),
    ],
    ids=["create", "update", "delete"],
)
def test_event_of(row: Row, event: WatchEvent) -> None:
    assert event_of(row) == event
    assert event_of(row).revision == row.revision


def test_live_kv() -> None:
    assert live_kv(None) is None
    assert live_kv(TOMBSTONE) is None
    assert live_kv(LIVE) == KeyValue("/k", b"five", 2, 5)


@pytest.mark.parametrize(
    ("revision", "compacted", "current", "result"),
    [
        (0, 0, 0, 0),
        (0, 5, 9, 9),
        (5, 5, 9, 5),
        (9, 5, 9, 9),
        (4, 5, 9, CompactedError),
        (10, 5, 9, FutureRevisionError),
    ],
    ids=["empty-now", "now", "at-compacted", "at-current", "compacted", "future"],
)
def test_resolve_read_revision(
    revision: int, compacted: int, current: int, result: int | type[Exception]
) -> None:
    if isinstance(result, int):
        assert resolve_read_revision(revision, compacted, current) == result
    else:
        with pytest.raises(result):
            resolve_read_revision(revision, compacted, current)


def test_watch_must_start_after_the_compacted_revision() -> None:
    check_watch_start(6, 5, 9)
    check_watch_start(1, 0, 0)
    with pytest.raises(CompactedError) as err:
        check_watch_start(5, 5, 9)
    assert (err.value.requested_revision, err.value.compact_revision) == (5, 5)
    assert err.value.current_revision == 9


def test_compact_revision_not_in_future() -> None:
    check_compact_revision(9, 9)
    with pytest.raises(FutureRevisionError):
        check_compact_revision(10, 9)
