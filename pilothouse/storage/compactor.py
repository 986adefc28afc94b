"""Periodic compaction: keep a window of history, drop what is older.

Kubernetes' apiserver compacts etcd every few minutes to the revision it saw
one interval earlier; this does the same with two retention windows, and
compacts only what is older than *both*: at least ``retain_seconds`` of
history and at least ``retain_revisions`` revisions stay watchable.

Time is sampled, not stored per revision: each tick records (now, current
revision); a revision is old enough once a sample taken at least
``retain_seconds`` ago covers it. The owner (the apiserver) runs
:meth:`Compactor.run` as a task and cancels it on shutdown; tests call
:meth:`Compactor.tick` with an injected clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pilothouse.storage.interface import Storage, StorageClosedError, StorageError

log = logging.getLogger("pilothouse.storage")


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    interval_seconds: float = 60.0
    retain_seconds: float = 300.0
    retain_revisions: int = 1000

    def __post_init__(self) -> None:
        if self.interval_seconds <= 0:
            raise ValueError(f"interval_seconds must be > 0, got {self.interval_seconds}")
        if self.retain_seconds < 0 or self.retain_revisions < 0:
            raise ValueError("retain_seconds and retain_revisions must be >= 0")


def compaction_target(
    samples: Iterable[tuple[float, int]], now: float, current: int, policy: CompactionPolicy
) -> int:
    """The newest revision outside both retention windows (0: nothing to compact).

    ``samples`` are (time, current revision at that time) pairs.
    """
    cutoff = now - policy.retain_seconds
    by_time = max((rev for at, rev in samples if at <= cutoff), default=0)
    by_count = current - policy.retain_revisions
    return max(0, min(by_time, by_count, current))


class Compactor:
    """Compacts ``storage`` on a schedule (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        *,
        policy: CompactionPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.policy = policy or CompactionPolicy()
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self.compacted_revision = 0

    async def tick(self) -> int:
        """Sample the revision and compact if a new revision left both windows.

        Returns the revision compacted to by this tick (0: none).
        """
        now = self._clock()
        current = await self.storage.current_revision()
        self._samples.append((now, current))
        cutoff = now - self.policy.retain_seconds
        # Only the newest sample at or before the cutoff still matters.
        while len(self._samples) > 1 and self._samples[1][0] <= cutoff:
            self._samples.popleft()
        target = compaction_target(self._samples, now, current, self.policy)
        if target <= self.compacted_revision:
            return 0
        started = time.perf_counter()
        await self.storage.compact(target)
        self.compacted_revision = target
        log.info(
            "compacted storage",
            extra={
                "revision": target,
                "current_revision": current,
                "seconds": round(time.perf_counter() - started, 6),
            },
        )
        return target

    async def run(self) -> None:
        """Tick every ``interval_seconds`` until cancelled or the store closes."""
        while True:
            try:
                await self.tick()
            except StorageClosedError:
                return
            except StorageError as exc:  # transient (disk full, ...): the next tick retries
                log.warning("compaction failed", extra={"error": str(exc)})
            await asyncio.sleep(self.policy.interval_seconds)
