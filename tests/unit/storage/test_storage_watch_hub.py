"""The watch hub alone: fan-out, the slow-consumer policy, history then live."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.storage.interface import (
    CompactedError,
    EventType,
    KeyValue,
    StorageClosedError,
    WatchEvent,
    WatchOverflowError,
)
from pilothouse.storage.watch import HISTORY_CHUNK, WatchHub

DEADLINE = 10.0


async def until_subscribed(hub: WatchHub, count: int = 1) -> None:
    """Poll (with a deadline) until the generator under test has subscribed."""
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while hub.watcher_count < count:
        assert asyncio.get_running_loop().time() < deadline, "the stream never subscribed"
        await asyncio.sleep(0)


def put(revision: int, key: str = "/a/x") -> WatchEvent:
    return WatchEvent(EventType.PUT, KeyValue(key, b"", revision, revision), None)


def test_publish_queues_only_matching_events_and_tracks_the_revision() -> None:
    hub = WatchHub(backend="test", revision=0)
    a = hub.subscribe("/a/")
    b = hub.subscribe("/b/")
    hub.publish([put(1, "/a/1"), put(2, "/b/1"), put(3, "/a/2")])
    assert [e.revision for e in a.queue] == [1, 3]
    assert [e.revision for e in b.queue] == [2]
    assert hub.published_revision == 3
    assert hub.subscribe("").subscribed_at == 3


def test_a_full_queue_stops_filling_and_remembers_the_first_missed_revision() -> None:
    hub = WatchHub(backend="test", revision=0, queue_size=3)
    slow = hub.subscribe("")
    other = hub.subscribe("")
    hub.publish([put(1), put(2), put(3)])
    assert slow.missed_revision == 0  # full, not over
    other.queue.clear()  # the other consumer keeps up
    hub.publish([put(4), put(5)])
    assert [e.revision for e in slow.queue] == [1, 2, 3]
    assert slow.missed_revision == 4
    hub.publish([put(6)])
    assert [e.revision for e in slow.queue] == [1, 2, 3]  # bounded: nothing more is added
    assert [e.revision for e in other.queue] == [4, 5, 6]
    assert other.missed_revision == 0


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        WatchHub(backend="test", revision=0, queue_size=0)


async def no_history(prefix: str, first: int, last: int, limit: int) -> list[WatchEvent]:
    raise AssertionError("history should not be read")


async def test_stream_replays_history_in_chunks_then_live_without_overlap() -> None:
    hub = WatchHub(backend="test", revision=0)
    total_history = HISTORY_CHUNK * 2 + 5
    hub.publish([put(r) for r in range(1, total_history + 1)])  # nobody listening yet
    calls: list[tuple[int, int]] = []

    async def history(prefix: str, first: int, last: int, limit: int) -> list[WatchEvent]:
        calls.append((first, last))
        # meanwhile, live writes are published: they must come from the queue, once
        hub.publish([put(hub.published_revision + 1)])
        return [put(r) for r in range(first, min(last, first + limit - 1) + 1)]

    stream = hub.stream("/a/", 3, history=history, revisions=lambda: (2, hub.published_revision))
    events = [await asyncio.wait_for(anext(stream), DEADLINE) for _ in range(total_history + 1)]
    await stream.aclose()
    assert [e.revision for e in events] == list(range(3, total_history + 4))
    assert calls == [
        (3, total_history),
        (3 + HISTORY_CHUNK, total_history),
        (3 + 2 * HISTORY_CHUNK, total_history),
    ]
    assert hub.watcher_count == 0


async def test_stream_from_a_compacted_revision() -> None:
    hub = WatchHub(backend="test", revision=9)
    stream = hub.stream("", 5, history=no_history, revisions=lambda: (5, 9))
    with pytest.raises(CompactedError):
        await anext(stream)
    assert hub.watcher_count == 0


async def test_stream_skips_live_events_before_a_future_start() -> None:
    hub = WatchHub(backend="test", revision=1)
    stream = hub.stream("", 4, history=no_history, revisions=lambda: (0, 1))
    pending = asyncio.ensure_future(anext(stream))
    await until_subscribed(hub)  # subscription happens on the first step of the generator
    hub.publish([put(2), put(3), put(4)])
    assert (await asyncio.wait_for(pending, DEADLINE)).revision == 4
    await stream.aclose()


async def test_overflow_delivers_the_queue_then_raises() -> None:
    hub = WatchHub(backend="test", revision=0, queue_size=2)
    stream = hub.stream("", 1, history=no_history, revisions=lambda: (0, 0))
    pending = asyncio.ensure_future(anext(stream))
    await until_subscribed(hub)
    hub.publish([put(1)])
    assert (await asyncio.wait_for(pending, DEADLINE)).revision == 1
    hub.publish([put(2), put(3), put(4), put(5)])
    got = [await anext(stream), await anext(stream)]
    with pytest.raises(WatchOverflowError) as err:
        await anext(stream)
    assert [e.revision for e in got] == [2, 3]
    assert (err.value.next_revision, err.value.queue_size) == (4, 2)
    assert hub.watcher_count == 0


async def test_close_ends_streams_after_their_queued_events() -> None:
    hub = WatchHub(backend="test", revision=0)
    stream = hub.stream("", 1, history=no_history, revisions=lambda: (0, 0))
    pending = asyncio.ensure_future(anext(stream))
    await until_subscribed(hub)
    hub.publish([put(1), put(2)])
    hub.close()
    assert (await asyncio.wait_for(pending, DEADLINE)).revision == 1
    assert [e.revision async for e in stream] == [2]
    with pytest.raises(StorageClosedError):
        await anext(hub.stream("", 1, history=no_history, revisions=lambda: (0, 0)))
