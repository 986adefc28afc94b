"""The storage contract, run against every backend (see conftest.BACKENDS).

Each test states one promise of ``pilothouse.storage.interface.Storage``.
Waiting is always "the next event, with a deadline", never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from pilothouse.storage import (
    CompactedError,
    ConflictError,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Storage,
    StorageClosedError,
    WatchEvent,
    WatchOverflowError,
    WatchStream,
)

OpenStore = Callable[..., Awaitable[Storage]]  # the conftest fixture's type

DEADLINE = 10.0


async def take(stream: WatchStream, n: int) -> list[WatchEvent]:
    """The next ``n`` events, each within the deadline."""
    return [await asyncio.wait_for(anext(stream), DEADLINE) for _ in range(n)]


def pod(name: str, ns: str = "default") -> str:
    return f"/registry/pods/{ns}/{name}"


# -- basics -------------------------------------------------------------------------------


async def test_is_a_storage(store: Storage) -> None:
    assert isinstance(store, Storage)


async def test_empty_store_is_at_revision_zero(store: Storage) -> None:
    assert await store.current_revision() == 0
    result = await store.range("")
    assert (result.kvs, result.revision, result.more, result.count) == ([], 0, False, 0)
    assert await store.get(pod("a")) is None


async def test_create_then_get(store: Storage) -> None:
    kv = await store.create(pod("a"), b"v1")
    assert kv == KeyValue(pod("a"), b"v1", create_revision=1, mod_revision=1)
    assert await store.get(pod("a")) == kv
    assert await store.current_revision() == 1


async def test_create_existing_key_fails_and_writes_nothing(store: Storage) -> None:
    await store.create(pod("a"), b"v1")
    with pytest.raises(KeyExistsError) as err:
        await store.create(pod("a"), b"v2")
    assert err.value.key == pod("a")
    assert await store.current_revision() == 1
    assert (await store.get(pod("a"))) == KeyValue(pod("a"), b"v1", 1, 1)


async def test_each_write_advances_the_revision_by_one(store: Storage) -> None:
    a = await store.create(pod("a"), b"1")
    b = await store.create(pod("b"), b"1")
    a2 = await store.update(pod("a"), b"2", expected_revision=a.mod_revision)
    d = await store.delete(pod("b"))
    assert [a.mod_revision, b.mod_revision, a2.mod_revision, d.mod_revision] == [1, 2, 3, 4]
    assert await store.current_revision() == 4


async def test_update_keeps_create_revision(store: Storage) -> None:
    await store.create(pod("x"), b"filler")
    kv = await store.create(pod("a"), b"v1")
    new = await store.update(pod("a"), b"v2", expected_revision=kv.mod_revision)
    assert new == KeyValue(pod("a"), b"v2", create_revision=2, mod_revision=3)
    assert await store.get(pod("a")) == new


async def test_update_with_same_value_still_makes_a_revision(store: Storage) -> None:
    kv = await store.create(pod("a"), b"same")
    new = await store.update(pod("a"), b"same", expected_revision=kv.mod_revision)
    assert new.mod_revision == kv.mod_revision + 1


async def test_update_conflict_carries_current_and_writes_nothing(store: Storage) -> None:
    kv = await store.create(pod("a"), b"v1")
    v2 = await store.update(pod("a"), b"v2", expected_revision=kv.mod_revision)
    with pytest.raises(ConflictError) as err:
        await store.update(pod("a"), b"v3", expected_revision=kv.mod_revision)
    assert err.value.current == v2
    assert err.value.expected_revision == kv.mod_revision
    assert await store.current_revision() == 2
    assert await store.get(pod("a")) == v2


async def test_unconditional_update(store: Storage) -> None:
    await store.create(pod("a"), b"v1")
    await store.update(pod("a"), b"v2", expected_revision=0)
    new = await store.update(pod("a"), b"v3", expected_revision=0)
    assert new == KeyValue(pod("a"), b"v3", 1, 3)


@pytest.mark.parametrize("expected_revision", [0, 1, 7], ids=["unconditional", "one", "seven"])
async def test_update_missing_key_is_not_found(store: Storage, expected_revision: int) -> None:
    with pytest.raises(KeyNotFoundError):
        await store.update(pod("a"), b"v", expected_revision=expected_revision)
    assert await store.current_revision() == 0


async def test_delete_returns_last_value_at_deletion_revision(store: Storage) -> None:
    kv = await store.create(pod("a"), b"v1")
    gone = await store.delete(pod("a"), expected_revision=kv.mod_revision)
    assert gone == KeyValue(pod("a"), b"v1", create_revision=1, mod_revision=2)
    assert await store.get(pod("a")) is None
    assert await store.count("") == 0


async def test_delete_conflict_and_missing(store: Storage) -> None:
    kv = await store.create(pod("a"), b"v1")
    await store.update(pod("a"), b"v2", expected_revision=kv.mod_revision)
    with pytest.raises(ConflictError) as err:
        await store.delete(pod("a"), expected_revision=kv.mod_revision)
    assert err.value.current is not None and err.value.current.value == b"v2"
    with pytest.raises(KeyNotFoundError):
        await store.delete(pod("nope"))
    assert await store.current_revision() == 2


async def test_deleted_key_cannot_be_updated_but_can_be_recreated(store: Storage) -> None:
    await store.create(pod("a"), b"v1")
    await store.delete(pod("a"))
    with pytest.raises(KeyNotFoundError):
        await store.update(pod("a"), b"v2", expected_revision=0)
    again = await store.create(pod("a"), b"v3")
    assert again == KeyValue(pod("a"), b"v3", create_revision=3, mod_revision=3)


async def test_get_at_past_revisions(store: Storage) -> None:
    kv = await store.create(pod("a"), b"v1")
    await store.update(pod("a"), b"v2", expected_revision=kv.mod_revision)
    await store.delete(pod("a"))
    await store.create(pod("a"), b"v4")
    got = [await store.get(pod("a"), revision=r) for r in (1, 2, 3, 4)]
    assert [g.value if g else None for g in got] == [b"v1", b"v2", None, b"v4"]
    assert [g.create_revision if g else None for g in got] == [1, 1, None, 4]


async def test_read_at_future_revision_fails(store: Storage) -> None:
    await store.create(pod("a"), b"v1")
    with pytest.raises(FutureRevisionError):
        await store.get(pod("a"), revision=2)
    with pytest.raises(FutureRevisionError):
        await store.range("", revision=5)


async def test_values_are_opaque_bytes(store: Storage) -> None:
    blob = bytes(range(256)) * 64 + b"\x00\xff"
    await store.create(pod("bin"), blob)
    got = await store.get(pod("bin"))
    assert got is not None and got.value == blob
    await store.create(pod("empty"), b"")
    empty = await store.get(pod("empty"))
    assert empty is not None and empty.value == b""


async def test_non_ascii_keys_order_like_python_strings(store: Storage) -> None:
    keys = ["/k/a", "/k/z", "/k/é", "/k/日本", "/k/\U0001f600", "/k/A", "/k/a/b"]
    for key in keys:
        await store.create(key, key.encode())
    result = await store.range("/k/")
    assert [kv.key for kv in result.kvs] == sorted(keys)
    assert [kv.value for kv in result.kvs] == [k.encode() for k in sorted(keys)]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.create("", b"v"), ValueError),
        (lambda s: s.create("/a\x00b", b"v"), ValueError),
        (lambda s: s.create("/a\ud800", b"v"), ValueError),
        (lambda s: s.create(7, b"v"), TypeError),
        (lambda s: s.create("/a", "text"), TypeError),
        (lambda s: s.get("/a", revision=-1), ValueError),
        (lambda s: s.range("/", limit=-1), ValueError),
        (lambda s: s.update("/a", b"v", expected_revision=-3), ValueError),
        (lambda s: s.delete("/a", expected_revision=True), TypeError),
    ],
    ids=[
        "empty-key",
        "nul-in-key",
        "lone-surrogate",
        "int-key",
        "str-value",
        "negative-revision",
        "negative-limit",
        "negative-expected",
        "bool-expected",
    ],
)
async def test_bad_arguments_are_clear_errors(store: Storage, call: object, error: type) -> None:
    with pytest.raises(error):
        await call(store)  # type: ignore[operator]
    assert await store.current_revision() == 0


# -- range, count, paging -------------------------------------------------------------


async def seed(store: Storage, keys: list[str]) -> None:
    for key in keys:
        await store.create(key, key.encode())


async def test_range_selects_by_prefix_in_key_order(store: Storage) -> None:
    await seed(
        store,
        [pod("b"), pod("a"), pod("a", "kube-system"), "/registry/podsx/a", "/registry/services/a"],
    )
    result = await store.range("/registry/pods/")
    assert [kv.key for kv in result.kvs] == [pod("a"), pod("b"), pod("a", "kube-system")]
    assert (result.count, result.more, result.revision) == (3, False, 5)
    assert (await store.range("/registry/pods/default/")).count == 2
    assert (await store.range("")).count == 5
    assert (await store.range("/nothing/")).kvs == []


async def test_range_limit_more_and_count(store: Storage) -> None:
    await seed(store, [pod(f"p{i:02}") for i in range(7)])
    page = await store.range("/registry/pods/", limit=3)
    assert [kv.key for kv in page.kvs] == [pod("p00"), pod("p01"), pod("p02")]
    assert (page.more, page.count) == (True, 7)
    exact = await store.range("/registry/pods/", limit=7)
    assert (len(exact.kvs), exact.more, exact.count) == (7, False, 7)


async def test_range_keys_only(store: Storage) -> None:
    await seed(store, [pod("a"), pod("b")])
    result = await store.range("/registry/", keys_only=True)
    assert [(kv.key, kv.value, kv.mod_revision) for kv in result.kvs] == [
        (pod("a"), b"", 1),
        (pod("b"), b"", 2),
    ]


async def test_range_start_after(store: Storage) -> None:
    await seed(store, ["/a/1", "/a/2", "/a/3", "/b/1"])
    after = await store.range("/a/", start_after="/a/1")
    assert [kv.key for kv in after.kvs] == ["/a/2", "/a/3"]
    assert after.count == 2  # counts what is left from start_after on, as etcd does
    # a start_after before the prefix does not widen it; one past it selects nothing
    assert [kv.key for kv in (await store.range("/a/", start_after="/")).kvs] == [
        "/a/1",
        "/a/2",
        "/a/3",
    ]
    assert (await store.range("/a/", start_after="/a/9")).kvs == []


async def test_range_does_not_show_deleted_keys(store: Storage) -> None:
    await seed(store, ["/a/1", "/a/2", "/a/3"])
    await store.delete("/a/2")
    result = await store.range("/a/")
    assert [kv.key for kv in result.kvs] == ["/a/1", "/a/3"]
    assert result.count == 2
    assert await store.count("/a/") == 2


async def test_paging_at_a_revision_is_a_consistent_snapshot(store: Storage) -> None:
    keys = [pod(f"p{i:02}") for i in range(25)]
    await seed(store, keys)
    first = await store.range("/registry/pods/", limit=10)
    snapshot_rev = first.revision
    seen = list(first.kvs)
    # the world moves on between pages: deletions, updates and new keys everywhere
    await store.delete(pod("p15"))
    await store.update(pod("p20"), b"changed", expected_revision=0)
    await store.create(pod("p12a"), b"new")
    await store.create(pod("a-first"), b"new")
    more = first.more
    while more:
        page = await store.range(
            "/registry/pods/", start_after=seen[-1].key, limit=10, revision=snapshot_rev
        )
        assert page.revision == snapshot_rev
        assert page.count == 25 - len(seen)
        seen.extend(page.kvs)
        more = page.more
    assert [kv.key for kv in seen] == keys
    assert all(kv.value == kv.key.encode() for kv in seen)
    now = await store.range("/registry/pods/")
    assert now.count == 26 and now.revision == snapshot_rev + 4


async def test_count(store: Storage) -> None:
    await seed(store, ["/a/1", "/a/2", "/b/1"])
    await store.update("/a/1", b"x", expected_revision=0)
    assert [await store.count(p) for p in ("", "/a/", "/b/", "/c/")] == [3, 2, 1, 0]


# -- watch ------------------------------------------------------------------------------


async def test_watch_from_now_sees_only_later_writes(store: Storage) -> None:
    await store.create("/a/old", b"old")
    async with contextlib.aclosing(store.watch("/a/", start_revision=0)) as stream:
        await store.create("/a/new", b"new")
        (event,) = await take(stream, 1)
    assert event == WatchEvent(EventType.PUT, KeyValue("/a/new", b"new", 2, 2), None)


async def test_watch_from_now_is_fixed_when_watch_is_called(store: Storage) -> None:
    stream = store.watch("/a/", start_revision=0)
    await store.create("/a/1", b"written before iterating")
    (event,) = await take(stream, 1)
    await stream.aclose()
    assert event.kv.key == "/a/1" and event.revision == 1


async def test_watch_event_shapes(store: Storage) -> None:
    async with contextlib.aclosing(store.watch("/a/", start_revision=0)) as stream:
        kv = await store.create("/a/x", b"v1")
        await store.update("/a/x", b"v2", expected_revision=kv.mod_revision)
        await store.delete("/a/x")
        created, updated, deleted = await take(stream, 3)
    assert created == WatchEvent(EventType.PUT, KeyValue("/a/x", b"v1", 1, 1), None)
    assert updated == WatchEvent(
        EventType.PUT, KeyValue("/a/x", b"v2", 1, 2), KeyValue("/a/x", b"v1", 1, 1)
    )
    assert deleted == WatchEvent(
        EventType.DELETE, KeyValue("/a/x", b"v2", 1, 3), KeyValue("/a/x", b"v2", 1, 2)
    )


async def test_watch_filters_by_prefix(store: Storage) -> None:
    async with contextlib.aclosing(store.watch("/registry/pods/", start_revision=0)) as stream:
        await store.create("/registry/podsx/a", b"")
        await store.create("/registry/services/a", b"")
        await store.create(pod("a"), b"")
        (event,) = await take(stream, 1)
    assert (event.kv.key, event.revision) == (pod("a"), 3)


async def test_watch_from_past_revision_replays_history_then_goes_live(store: Storage) -> None:
    await seed(store, [f"/a/{i}" for i in range(5)])
    async with contextlib.aclosing(store.watch("/a/", start_revision=2)) as stream:
        history = await take(stream, 4)
        await store.create("/a/live", b"")
        (live,) = await take(stream, 1)
    assert [e.revision for e in history] == [2, 3, 4, 5]
    assert (live.kv.key, live.revision) == ("/a/live", 6)


async def test_watch_from_future_revision_waits_for_it(store: Storage) -> None:
    await store.create("/a/1", b"")
    async with contextlib.aclosing(store.watch("/a/", start_revision=4)) as stream:
        for i in (2, 3, 4, 5):
            await store.create(f"/a/{i}", b"")
        events = await take(stream, 2)
    assert [e.revision for e in events] == [4, 5]


async def test_watch_history_longer_than_one_chunk(store: Storage) -> None:
    for i in range(1200):  # more than watch.HISTORY_CHUNK
        await store.create(f"/h/{i:05}", b"")
    async with contextlib.aclosing(store.watch("/h/", start_revision=1)) as stream:
        events = await take(stream, 1200)
    assert [e.revision for e in events] == list(range(1, 1201))


async def test_watch_sees_concurrent_writes_in_order_without_gaps_or_duplicates(
    store: Storage,
) -> None:
    """Writers and a late watcher race; the watch still shows every revision exactly once."""
    writers, per_writer = 8, 40
    total = writers * per_writer
    revisions: list[int] = []

    async def writer(w: int) -> None:
        for i in range(per_writer):
            kv = await store.create(f"/c/{w}/{i}", b"x")
            revisions.append(kv.mod_revision)

    early = store.watch("/c/", start_revision=1)
    tasks = [asyncio.create_task(writer(w)) for w in range(writers)]
    first = await take(early, 1)
    # a second watcher joins mid-stream, from the start of history
    late = store.watch("/c/", start_revision=1)
    rest_early = await take(early, total - 1)
    all_late = await take(late, total)
    await asyncio.gather(*tasks)
    await early.aclose()
    await late.aclose()
    assert sorted(revisions) == list(range(1, total + 1))
    for events in (first + rest_early, all_late):
        assert [e.revision for e in events] == list(range(1, total + 1))
        assert Counter(e.kv.key for e in events).most_common(1)[0][1] == 1


async def test_watch_all_with_many_writers_on_one_key(store: Storage) -> None:
    await store.create("/hot", b"0")
    async with contextlib.aclosing(store.watch("", start_revision=0)) as stream:
        wins = 0

        async def bump() -> None:
            nonlocal wins
            for _ in range(20):
                while True:
                    cur = await store.get("/hot")
                    assert cur is not None
                    try:
                        await store.update(
                            "/hot",
                            str(int(cur.value) + 1).encode(),
                            expected_revision=cur.mod_revision,
                        )
                    except ConflictError:
                        continue
                    wins += 1
                    break

        await asyncio.gather(*(bump() for _ in range(6)))
        events = await take(stream, 120)
    assert wins == 120
    final = await store.get("/hot")
    assert final is not None and final.value == b"120"
    assert [e.revision for e in events] == list(range(2, 122))
    # each event's prev_kv is exactly the previous event's kv: no lost update
    for before, after in itertools.pairwise(events):
        assert after.prev_kv == before.kv
        assert int(after.kv.value) == int(before.kv.value) + 1


async def test_slow_watcher_is_closed_with_overflow_and_can_resume(open_store: OpenStore) -> None:
    store = await open_store(watch_queue_size=4)
    await store.create("/s/0", b"")
    stream = store.watch("/s/", start_revision=1)
    (first,) = await take(stream, 1)  # now subscribed, and not reading
    for i in range(1, 11):
        await store.create(f"/s/{i}", b"")
    queued = await take(stream, 4)
    with pytest.raises(WatchOverflowError) as err:
        await asyncio.wait_for(anext(stream), DEADLINE)
    assert first.revision == 1
    assert [e.revision for e in queued] == [2, 3, 4, 5]
    assert err.value.next_revision == 6
    async with contextlib.aclosing(
        store.watch("/s/", start_revision=err.value.next_revision)
    ) as again:
        assert [e.revision for e in await take(again, 6)] == [6, 7, 8, 9, 10, 11]


async def test_slow_watcher_does_not_hold_back_others(open_store: OpenStore) -> None:
    store = await open_store(watch_queue_size=2)
    slow = store.watch("/s/", start_revision=0)
    await store.create("/s/0", b"")
    await take(slow, 1)
    fast = store.watch("/s/", start_revision=0)
    got: list[WatchEvent] = []
    for i in range(1, 6):
        await store.create(f"/s/{i}", b"")
        got += await take(fast, 1)
    assert [e.revision for e in got] == [2, 3, 4, 5, 6]
    await take(slow, 2)
    with pytest.raises(WatchOverflowError):
        await asyncio.wait_for(anext(slow), DEADLINE)
    await fast.aclose()


async def test_close_ends_watches_and_later_calls_fail(store: Storage) -> None:
    stream = store.watch("", start_revision=0)
    await store.create("/a", b"")
    await take(stream, 1)
    pending = asyncio.create_task(anext(stream, None))
    await store.close()
    assert await asyncio.wait_for(pending, DEADLINE) is None
    with pytest.raises(StorageClosedError):
        await store.get("/a")
    with pytest.raises(StorageClosedError):
        await store.create("/b", b"")
    with pytest.raises(StorageClosedError):
        await anext(store.watch("", start_revision=0))
    await store.close()  # idempotent


# -- compaction -------------------------------------------------------------------------


async def build_history(store: Storage) -> None:
    """Revisions 1..10 over keys that live, change, die and come back."""
    await store.create("/k/stable", b"s")  # 1: never touched again
    kv = await store.create("/k/churn", b"c1")  # 2
    for n in range(2, 5):  # 3, 4, 5
        kv = await store.update("/k/churn", f"c{n}".encode(), expected_revision=kv.mod_revision)
    await store.create("/k/gone", b"g")  # 6
    await store.delete("/k/gone")  # 7
    await store.create("/k/back", b"b1")  # 8
    await store.delete("/k/back")  # 9
    await store.create("/k/back", b"b2")  # 10


async def test_compaction_keeps_reads_at_and_after_the_revision(store: Storage) -> None:
    await build_history(store)
    before = {rev: await store.range("/k/", revision=rev) for rev in range(6, 11)}
    await store.compact(6)
    for rev, result in before.items():
        assert await store.range("/k/", revision=rev) == result
    assert await store.get("/k/stable", revision=6) == KeyValue("/k/stable", b"s", 1, 1)
    with pytest.raises(CompactedError) as err:
        await store.get("/k/churn", revision=5)
    assert (err.value.compact_revision, err.value.current_revision) == (6, 10)
    with pytest.raises(CompactedError):
        await store.range("/k/", revision=1)


async def test_compaction_of_everything_keeps_the_current_state(store: Storage) -> None:
    await build_history(store)
    now = await store.range("")
    await store.compact(10)
    assert await store.range("") == now
    assert await store.count("") == 3
    assert await store.current_revision() == 10
    created = await store.create("/k/gone", b"again")  # its tombstone was compacted away
    assert created.mod_revision == created.create_revision == 11


async def test_watch_from_compacted_revision_fails_and_after_it_works(store: Storage) -> None:
    await build_history(store)
    await store.compact(7)
    for start in (1, 7):
        with pytest.raises(CompactedError) as err:
            await anext(store.watch("/k/", start_revision=start))
        assert err.value.compact_revision == 7
    async with contextlib.aclosing(store.watch("/k/", start_revision=8)) as stream:
        events = await take(stream, 3)
    assert [(e.type, e.revision) for e in events] == [
        (EventType.PUT, 8),
        (EventType.DELETE, 9),
        (EventType.PUT, 10),
    ]


async def test_compaction_is_idempotent_and_not_in_the_future(store: Storage) -> None:
    await build_history(store)
    await store.compact(5)
    await store.compact(5)
    await store.compact(3)  # below: nothing happens
    assert (await store.get("/k/churn", revision=5)) is not None
    with pytest.raises(FutureRevisionError):
        await store.compact(11)
    await store.compact(9)
    with pytest.raises(CompactedError):
        await store.get("/k/churn", revision=8)


async def test_compaction_while_watching_live(store: Storage) -> None:
    await build_history(store)
    async with contextlib.aclosing(store.watch("/k/", start_revision=0)) as stream:
        await store.compact(10)
        await store.update("/k/stable", b"s2", expected_revision=1)
        (event,) = await take(stream, 1)
    assert event.prev_kv == KeyValue("/k/stable", b"s", 1, 1)


async def test_repeated_compaction_under_churn_matches_a_replay(store: Storage) -> None:
    """Many rounds of updates and compactions: the state always equals what was written."""
    expected: dict[str, bytes] = {}
    for rnd in range(15):
        for i in range(10):
            key = f"/r/{i}"
            value = f"{rnd}-{i}".encode()
            if (rnd + i) % 4 == 0 and key in expected:
                await store.delete(key)
                del expected[key]
            elif key in expected:
                await store.update(key, value, expected_revision=0)
                expected[key] = value
            else:
                await store.create(key, value)
                expected[key] = value
        await store.compact(await store.current_revision() - rnd % 3)
        result = await store.range("/r/")
        assert {kv.key: kv.value for kv in result.kvs} == expected


# -- concurrency ------------------------------------------------------------------------


async def test_many_writers_on_one_key_exactly_one_wins_per_revision(store: Storage) -> None:
    kv = await store.create("/hot", b"start")
    results = await asyncio.gather(
        *(
            store.update("/hot", f"w{i}".encode(), expected_revision=kv.mod_revision)
            for i in range(50)
        ),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, KeyValue)]
    conflicts = [r for r in results if isinstance(r, ConflictError)]
    assert len(wins) == 1 and len(conflicts) == 49
    assert all(c.current == wins[0] for c in conflicts)
    assert await store.get("/hot") == wins[0]
    assert await store.current_revision() == 2


async def test_concurrent_creates_of_one_key_exactly_one_wins(store: Storage) -> None:
    results = await asyncio.gather(
        *(store.create("/once", f"{i}".encode()) for i in range(30)), return_exceptions=True
    )
    assert sum(isinstance(r, KeyValue) for r in results) == 1
    assert sum(isinstance(r, KeyExistsError) for r in results) == 29


async def test_concurrent_deletes_exactly_one_wins(store: Storage) -> None:
    await store.create("/d", b"")
    results = await asyncio.gather(*(store.delete("/d") for _ in range(10)), return_exceptions=True)
    assert sum(isinstance(r, KeyValue) for r in results) == 1
    assert sum(isinstance(r, KeyNotFoundError) for r in results) == 9


async def test_concurrent_writes_get_distinct_consecutive_revisions(store: Storage) -> None:
    kvs = await asyncio.gather(*(store.create(f"/n/{i}", b"") for i in range(200)))
    assert sorted(kv.mod_revision for kv in kvs) == list(range(1, 201))
    assert await store.count("/n/") == 200


async def test_reads_see_every_acknowledged_write(store: Storage) -> None:
    async def write_then_read(i: int) -> None:
        kv = await store.create(f"/rw/{i}", str(i).encode())
        assert await store.get(f"/rw/{i}") == kv
        assert (await store.range("/rw/")).revision >= kv.mod_revision
        assert await store.current_revision() >= kv.mod_revision

    await asyncio.gather(*(write_then_read(i) for i in range(50)))
