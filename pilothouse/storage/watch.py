"""Watch fan-out shared by the backends: one hub, one bounded queue per watcher.

A backend calls :meth:`WatchHub.publish` on the event loop with the events
of each commit, in commit order. A watch is an async generator
(:meth:`WatchHub.stream`) that

1. subscribes: from then on its queue receives every published event under
   its prefix with a revision above ``subscribed_at`` (the hub's published
   revision at that moment);
2. replays the stored history from ``start_revision`` through
   ``subscribed_at`` in chunks, read by the backend (history at or below
   ``subscribed_at`` is committed, so it is all readable);
3. then yields the queued live events.

So every revision is seen exactly once, in order: history covers
``[start, subscribed_at]``, the queue ``(subscribed_at, ...)``.

Slow consumers: each queue holds at most ``queue_size`` events. When a
publish finds a watcher's queue full, the watcher stops receiving (its
queue stops growing, so memory stays bounded), the consumer still gets
every event already queued, and then ``WatchOverflowError`` naming the first
revision it missed. It must watch again from there (or re-list if that is
compacted), as Kubernetes' cacher and kine do with a watcher that cannot
keep up. One slow watcher never slows the writers or the other watchers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from pilothouse.storage.interface import (
    StorageClosedError,
    WatchEvent,
    WatchOverflowError,
    WatchStream,
)
from pilothouse.storage.metrics import StorageMetrics
from pilothouse.storage.mvcc import check_watch_start

log = logging.getLogger("pilothouse.storage")

DEFAULT_WATCH_QUEUE_SIZE = 10_000
HISTORY_CHUNK = 512

# (prefix, first revision, last revision, most events) -> events in revision order.
# Raises CompactedError if the first revision is at or below the compact revision.
HistoryReader = Callable[[str, int, int, int], Awaitable[list[WatchEvent]]]


class Watcher:
    """One subscriber: a bounded queue filled by the hub, drained by one consumer."""

    __slots__ = ("_waiter", "closed", "missed_revision", "prefix", "queue", "subscribed_at")

    def __init__(self, prefix: str, subscribed_at: int) -> None:
        self.prefix = prefix
        self.subscribed_at = subscribed_at
        # Bounded by the hub's queue_size. Policy for a consumer that falls behind:
        # stop filling (memory stays bounded), let it drain, then WatchOverflowError
        # naming the first missed revision; it re-watches from there or re-lists.
        self.queue: deque[WatchEvent] = deque()
        self.closed = False
        self.missed_revision = 0  # first revision dropped on overflow (0: none)
        self._waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_event(self) -> WatchEvent | None:
        """The next queued event; None once the hub closed; raises after an overflow."""
        while not self.queue:
            if self.missed_revision:
                raise _Overflow(self.missed_revision)
            if self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.queue.popleft()


class _Overflow(Exception):
    def __init__(self, missed_revision: int) -> None:
        super().__init__(missed_revision)
        self.missed_revision = missed_revision


class WatchHub:
    """Fan-out of committed events to watchers; lives on the event loop."""

    def __init__(
        self,
        *,
        backend: str,
        revision: int,
        queue_size: int = DEFAULT_WATCH_QUEUE_SIZE,
        metrics: StorageMetrics | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"watch queue size must be >= 1, got {queue_size}")
        self.backend = backend
        self.published_revision = revision
        self.queue_size = queue_size
        self._metrics = metrics or StorageMetrics(registry=None)
        self._watchers: set[Watcher] = set()
        self._by_prefix: dict[str, set[Watcher]] = {}
        self._closed = False

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def subscribe(self, prefix: str) -> Watcher:
        watcher = Watcher(prefix, self.published_revision)
        self._watchers.add(watcher)
        self._by_prefix.setdefault(prefix, set()).add(watcher)
        self._metrics.watcher_opened(self.backend)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)
            group = self._by_prefix.get(watcher.prefix)
            if group is not None:
                group.discard(watcher)
                if not group:
                    del self._by_prefix[watcher.prefix]
            self._metrics.watcher_closed(self.backend, overflowed=bool(watcher.missed_revision))
        watcher.closed = True

    def publish(self, events: Sequence[WatchEvent]) -> None:
        """Queue one commit's events (increasing revisions above the published one).

        Watchers are grouped by prefix, so an event costs one ``startswith`` per
        distinct prefix (the apiserver has one watch per resource), not a check per
        watcher.
        """
        if not events:
            return
        self.published_revision = events[-1].revision
        for prefix, watchers in self._by_prefix.items():
            matching = [e for e in events if e.kv.key.startswith(prefix)]
            if not matching:
                continue
            for watcher in watchers:
                if watcher.missed_revision:
                    continue
                for event in matching:
                    if len(watcher.queue) >= self.queue_size:
                        watcher.missed_revision = event.revision
                        log.warning(
                            "watch overflow: closing slow watcher",
                            extra={
                                "backend": self.backend,
                                "prefix": watcher.prefix,
                                "missed_revision": event.revision,
                                "queue_size": self.queue_size,
                            },
                        )
                        break
                    watcher.queue.append(event)
                watcher.wake()

    def close(self) -> None:
        """End every watch (their streams finish normally)."""
        self._closed = True
        for watcher in self._watchers:
            watcher.closed = True
            watcher.wake()

    async def stream(
        self,
        prefix: str,
        start_revision: int,
        *,
        history: HistoryReader,
        revisions: Callable[[], tuple[int, int]],
    ) -> WatchStream:
        """The watch generator behind ``Storage.watch`` (see the module docstring).

        ``revisions()`` returns the backend's (compact revision, current revision).
        """
        if self._closed:
            raise StorageClosedError("storage is closed")
        compacted, current = revisions()
        check_watch_start(start_revision, compacted, current)
        watcher = self.subscribe(prefix)
        try:
            nxt = start_revision
            while nxt <= watcher.subscribed_at:
                batch = await history(prefix, nxt, watcher.subscribed_at, HISTORY_CHUNK)
                for event in batch:
                    yield event
                if len(batch) < HISTORY_CHUNK:
                    break
                nxt = batch[-1].revision + 1
            while True:
                try:
                    live = await watcher.next_event()
                except _Overflow as exc:
                    raise WatchOverflowError(
                        prefix, max(exc.missed_revision, start_revision), self.queue_size
                    ) from None
                if live is None:
                    return
                if live.revision >= start_revision:
                    yield live
        finally:
            self.unsubscribe(watcher)
