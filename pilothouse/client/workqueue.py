"""``WorkQueue``: client-go's work queue contract, on asyncio.

- **Fair**: items are handed out in the order they were first added.
- **Stingy**: an item is in the queue at most once (duplicates collapse); an
  item being processed (between ``get`` and ``done``) is never handed to a
  second worker; re-adding it while it is processed marks it dirty, and it
  goes back in the queue when ``done`` is called.
- **Delayed adds**: ``add_after(item, delay)``; an item waiting twice keeps
  the earlier deadline. Due items are moved into the queue whenever the
  queue is touched and by any waiting ``get`` (no background task).
- **Rate limited**: ``add_rate_limited(item)`` waits ``rate_limiter.when(item)``;
  ``forget(item)`` resets the item's back-off; ``num_requeues(item)``. The
  default is client-go's controller limiter: per-item exponential back-off
  (5 ms doubling to 1000 s) combined (max) with an overall token bucket of
  10 qps, burst 100.
- **Shutdown**: ``shut_down()`` stops accepting adds and drops delayed items;
  ``get`` still hands out what is already queued, then raises ``ShutDown``.
  ``shut_down_with_drain()`` does the same and returns once every item being
  processed is ``done``.

The queue is unbounded by design: it holds keys, at most one entry per key,
so its size is bounded by the number of distinct objects watched.

Time comes from an injected ``AsyncClock``; with ``AsyncFakeClock`` tests never
wait on real time. Metrics use client-go's names, labelled by the queue name.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from pilothouse.client.clock import AsyncClock, real_clock

__all__ = [
    "BucketRateLimiter",
    "ItemExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "ShutDown",
    "WorkQueue",
    "WorkQueueMetrics",
    "default_controller_rate_limiter",
    "process_next_item",
    "run_worker",
]

T = TypeVar("T", bound=Hashable)

log = logging.getLogger("pilothouse.client.workqueue")


class ShutDown(Exception):
    """``get`` on a queue that is shut down and has nothing left to hand out."""


# -- rate limiters ------------------------------------------------------------------------


class RateLimiter(Protocol):
    """How long an item waits before it is re-queued after a failure."""

    def when(self, item: Hashable) -> float:
        """Seconds to wait before re-queueing ``item``; counts as one requeue."""
        ...

    def forget(self, item: Hashable) -> None:
        """The item succeeded: reset its history."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """How many times ``when`` was asked for ``item`` since it was last forgotten."""
        ...


class ItemExponentialFailureRateLimiter:
    """``base * 2**failures`` seconds per item, capped at ``max_delay``."""

    def __init__(self, base: float = 0.005, max_delay: float = 1000.0) -> None:
        if base <= 0 or max_delay < base:
            raise ValueError("need 0 < base <= max_delay")
        self.base = base
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        if failures >= 64:  # 2**64 overflows anything sensible; the cap applies long before
            return self.max_delay
        return min(self.base * (2 ** failures), self.max_delay)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """An overall token bucket (``qps`` refill, ``burst`` capacity), reservation style:
    each ``when`` takes a token, possibly from the future, and returns the wait."""

    def __init__(self, qps: float = 10.0, burst: int = 100, *,
                 clock: AsyncClock | None = None) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("need qps > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self.clock = clock or real_clock()
        self._tokens = float(burst)
        self._last = self.clock.monotonic()

    def when(self, item: Hashable) -> float:
        now = self.clock.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest wait of several limiters (each is asked, so each counts)."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter(clock: AsyncClock | None = None) -> MaxOfRateLimiter:
    """client-go's ``DefaultControllerRateLimiter``: 5 ms..1000 s per item, 10 qps/100 overall."""
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0),
                            BucketRateLimiter(10.0, 100, clock=clock))


# -- metrics ---------------------------------------------------------------------------------

# client-go's (component-base) workqueue buckets: 10 ns .. 10 s, x10.
_BUCKETS = tuple(10e-9 * 10 ** i for i in range(10))


class WorkQueueMetrics:
    """client-go's workqueue metrics on a Prometheus registry, labelled by queue ``name``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else REGISTRY
        self.depth = Gauge("workqueue_depth", "Current depth of workqueue", ["name"],
                           registry=reg)
        self.adds = Counter("workqueue_adds", "Total number of adds handled by workqueue",
                            ["name"], registry=reg)
        self.queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            ["name"], buckets=_BUCKETS, registry=reg)
        self.work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            ["name"], buckets=_BUCKETS, registry=reg)
        self.retries = Counter("workqueue_retries", "Total number of retries handled by "
                               "workqueue", ["name"], registry=reg)
        self.unfinished_work = Gauge(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been "
            "observed by work_duration.", ["name"], registry=reg)
        self.longest_running = Gauge(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            ["name"], registry=reg)


_default_metrics: WorkQueueMetrics | None = None
_default_lock = threading.Lock()


def default_workqueue_metrics() -> WorkQueueMetrics:
    """The metrics on Prometheus' default registry (made once per process)."""
    global _default_metrics
    with _default_lock:
        if _default_metrics is None:
            _default_metrics = WorkQueueMetrics()
        return _default_metrics


# -- the queue -------------------------------------------------------------------------------


@dataclass(order=True, slots=True)
class _Waiting(Generic[T]):
    ready_at: float
    seq: int
    item: T


class WorkQueue(Generic[T]):
    """A fair, stingy, delaying, rate-limited work queue (see the module docstring).

    ``get``/``done`` must be paired: every item handed out by ``get`` must be
    passed to ``done`` exactly once, success or not.
    """

    def __init__(self, name: str = "", *, clock: AsyncClock | None = None,
                 rate_limiter: RateLimiter | None = None,
                 metrics: WorkQueueMetrics | None = None) -> None:
        self.name = name
        self.clock = clock or real_clock()
        self.rate_limiter = rate_limiter or default_controller_rate_limiter(self.clock)
        self._metrics = metrics if metrics is not None else (
            default_workqueue_metrics() if name else None)
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: dict[T, float] = {}  # item -> when get handed it out
        self._added_at: dict[T, float] = {}
        self._waiting: list[_Waiting[T]] = []
        self._waiting_at: dict[T, float] = {}
        self._seq = itertools.count()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._drained: list[asyncio.Future[None]] = []
        self._shutting_down = False

    # -- adding ---------------------------------------------------------------

    def add(self, item: T) -> None:
        """Queue ``item`` unless it is already queued; deferred while it is processed."""
        if self._shutting_down:
            return
        self._promote()
        self._add(item)

    def _add(self, item: T) -> None:
        if item in self._dirty:
            return
        if self._metrics is not None:
            self._metrics.adds.labels(self.name).inc()
        self._dirty.add(item)
        self._added_at.setdefault(item, self.clock.monotonic())
        if item in self._processing:
            return
        self._queue.append(item)
        self._set_depth()
        self._wake_one()

    def add_after(self, item: T, delay: float) -> None:
        """Queue ``item`` after ``delay`` seconds (now if ``delay`` <= 0)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        ready_at = self.clock.monotonic() + delay
        known = self._waiting_at.get(item)
        if known is not None and known <= ready_at:
            return
        self._waiting_at[item] = ready_at
        heapq.heappush(self._waiting, _Waiting(ready_at, next(self._seq), item))
        self._wake_all()  # a sleeping get may need an earlier wake-up

    def add_rate_limited(self, item: T) -> None:
        """Queue ``item`` after the rate limiter's delay (one more requeue)."""
        if self._shutting_down:
            return
        if self._metrics is not None:
            self._metrics.retries.labels(self.name).inc()
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        """Stop tracking ``item``'s failures (call after it was processed successfully)."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)

    def _promote(self) -> None:
        """Move delayed items whose time has come into the queue."""
        if not self._waiting:
            return
        now = self.clock.monotonic()
        while self._waiting and self._waiting[0].ready_at <= now:
            entry = heapq.heappop(self._waiting)
            if self._waiting_at.get(entry.item) != entry.ready_at:
                continue  # superseded by an earlier deadline
            del self._waiting_at[entry.item]
            self._add(entry.item)

    # -- taking ----------------------------------------------------------------

    async def get(self) -> T:
        """The next item; waits for one. Raises ``ShutDown`` once shut down and empty."""
        loop = asyncio.get_running_loop()
        while True:
            self._promote()
            if self._queue:
                return self._take()
            if self._shutting_down:
                raise ShutDown(self.name)
            waiter: asyncio.Future[None] = loop.create_future()
            self._getters.append(waiter)
            sleeper: asyncio.Task[None] | None = None
            try:
                if self._waiting:
                    sleeper = asyncio.ensure_future(
                        self.clock.sleep_until(self._waiting[0].ready_at))
                    await asyncio.wait([waiter, sleeper], return_when=asyncio.FIRST_COMPLETED)
                else:
                    await waiter
            except BaseException:
                # A wake-up meant for us must not be lost if we are cancelled.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise
            finally:
                if sleeper is not None and not sleeper.done():
                    sleeper.cancel()
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(waiter)

    def _take(self) -> T:
        item = self._queue.popleft()
        now = self.clock.monotonic()
        self._processing[item] = now
        self._dirty.discard(item)
        added = self._added_at.pop(item, now)
        if self._metrics is not None:
            self._metrics.queue_duration.labels(self.name).observe(max(now - added, 0.0))
        self._set_depth()
        return item

    def done(self, item: T) -> None:
        """``item`` is processed; if it was re-added meanwhile, it is queued again."""
        started = self._processing.pop(item, None)
        if started is None:
            return
        if self._metrics is not None:
            self._metrics.work_duration.labels(self.name).observe(
                max(self.clock.monotonic() - started, 0.0))
        if item in self._dirty:
            self._queue.append(item)
            self._set_depth()
            self._wake_one()
        if not self._processing:
            for fut in self._drained:
                if not fut.done():
                    fut.set_result(None)
            self._drained.clear()

    # -- state -------------------------------------------------------------------

    def __len__(self) -> int:
        """Items ready to be handed out (not counting delayed or in-process ones)."""
        self._promote()
        return len(self._queue)

    @property
    def processing(self) -> int:
        return len(self._processing)

    @property
    def waiting(self) -> int:
        """Items waiting for a delayed add."""
        return len(self._waiting_at)

    def shutting_down(self) -> bool:
        return self._shutting_down

    def shut_down(self) -> None:
        """Refuse further adds, drop delayed items, and wake every waiting ``get``."""
        self._shutting_down = True
        self._waiting.clear()
        self._waiting_at.clear()
        self._wake_all()

    async def shut_down_with_drain(self) -> None:
        """``shut_down``, then wait until every item handed out so far is ``done``."""
        self.shut_down()
        if not self._processing:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drained.append(fut)
        await fut

    def update_unfinished_work(self) -> None:
        """Refresh the unfinished-work gauges (call periodically, as client-go does)."""
        if self._metrics is None:
            return
        now = self.clock.monotonic()
        ages = [now - t for t in self._processing.values()]
        self._metrics.unfinished_work.labels(self.name).set(sum(ages))
        self._metrics.longest_running.labels(self.name).set(max(ages, default=0.0))

    def _set_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.depth.labels(self.name).set(len(self._queue))

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)


# -- the worker loop ----------------------------------------------------------------------


async def process_next_item(queue: WorkQueue[T], sync: Callable[[T], Awaitable[None]]) -> bool:
    """Take one item and run ``sync`` on it: success forgets its back-off, failure
    re-queues it rate-limited. False once the queue is shut down.

    An exception from ``sync`` is the signal to retry; it is not swallowed
    silently: it is logged with the item and its requeue count.
    """
    try:
        item = await queue.get()
    except ShutDown:
        return False
    try:
        await sync(item)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception(
            "error syncing %r (queue %s, requeue %d)", item, queue.name,
            queue.num_requeues(item) + 1)
        queue.add_rate_limited(item)
    else:
        queue.forget(item)
    finally:
        queue.done(item)
    return True


async def run_worker(queue: WorkQueue[T], sync: Callable[[T], Awaitable[None]]) -> None:
    """Process items until the queue is shut down (run N of these for N workers)."""
    while await process_next_item(queue, sync):
        pass
