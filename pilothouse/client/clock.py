"""Clocks one can sleep on: the real one, and a fake that sleeps until told.

``pilothouse.api.timeutil.Clock`` gives ``now()`` and ``monotonic()``; the client
machinery also has to *wait* (delayed queue adds, back-off, lease renewals,
resync). ``AsyncClock`` adds ``sleep`` and ``sleep_until`` on the monotonic
clock. ``AsyncFakeClock`` wakes a sleeper exactly when ``advance`` moves the
monotonic reading to or past its deadline, so tests drive time by hand and
never wait on real time; ``wait_for_sleepers(n)`` lets a test wait (by
polling the event loop, not the wall clock) until the code under test has
gone to sleep.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import datetime
from typing import Protocol, runtime_checkable

from pilothouse.api.timeutil import Clock, FakeClock, SystemClock

__all__ = ["AsyncClock", "AsyncFakeClock", "RealClock", "real_clock"]


@runtime_checkable
class AsyncClock(Clock, Protocol):
    """A ``Clock`` that can also be slept on (monotonic seconds)."""

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on the monotonic clock (at once if <= 0)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``monotonic()`` >= ``deadline`` (at once if it already is)."""
        ...


class RealClock(SystemClock):
    """The system clock, sleeping with ``asyncio.sleep``."""

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep(seconds)`` (a zero or negative delay only yields)."""
        await asyncio.sleep(max(seconds, 0.0))

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the monotonic clock reaches ``deadline``."""
        await asyncio.sleep(max(deadline - self.monotonic(), 0.0))


_REAL = RealClock()


def real_clock() -> RealClock:
    """The shared real clock (the default wherever a clock is injected)."""
    return _REAL


class AsyncFakeClock(FakeClock):
    """A ``FakeClock`` whose sleepers wake when ``advance`` reaches their deadline.

    Use it from one event loop. ``advance`` resolves due sleepers in deadline
    order; they run when the test next yields to the loop.
    """

    def __init__(self, start: datetime | None = None, monotonic_start: float = 0.0) -> None:
        if start is None:
            super().__init__(monotonic_start=monotonic_start)
        else:
            super().__init__(start, monotonic_start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of fake monotonic time."""
        await self.sleep_until(self.monotonic() + seconds)

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until ``advance`` moves ``monotonic()`` to ``deadline`` or beyond."""
        if deadline <= self.monotonic():
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), future))
        try:
            await future
        finally:
            if not future.done():
                future.cancel()
            self._sleepers = [s for s in self._sleepers if s[2] is not future]
            heapq.heapify(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        super().advance(seconds)
        now = self.monotonic()
        while self._sleepers and self._sleepers[0][0] <= now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many coroutines are asleep on this clock right now."""
        return sum(1 for s in self._sleepers if not s[2].done())

    def next_deadline(self) -> float | None:
        """The earliest deadline anyone sleeps until, or None."""
        pending = [s[0] for s in self._sleepers if not s[2].done()]
        return min(pending) if pending else None

    async def wait_for_sleepers(self, count: int = 1, *, within: float = 10.0) -> None:
        """Wait until at least ``count`` coroutines sleep on this clock.

        Polls the event loop (with a real-time deadline ``within``, for code
        under test that talks to a real server): if the code never goes to
        sleep, this fails instead of hanging.
        """
        deadline = time.monotonic() + within
        spins = 0
        while self.sleepers < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} sleeper(s) on the fake clock within {within}s, "
                    f"found {self.sleepers}")
            spins += 1
            # Yield first (pure-asyncio code settles in a few turns), then poll gently.
            await asyncio.sleep(0 if spins < 100 else 0.001)
