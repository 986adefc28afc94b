"""Per-key exponential back-off (CrashLoopBackOff, image pull back-off).

The rules are Kubernetes' (``flowcontrol.Backoff`` as the kubelet uses it):

- An event (a container exit, a failed pull) at time ``t`` is "in back-off"
  while ``now - t`` is less than the key's current delay.
- ``next(key, t)`` moves the key on: the first time (or when the previous
  event is older than ``reset_after``, e.g. a container that ran 10 minutes)
  the delay is ``initial``; otherwise it doubles, up to ``maximum``.

So a crashing container restarts at once the first time, then after 10 s,
20 s, 40 s ... 5 min. Times are monotonic seconds of the injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilothouse.api.timeutil import Clock


@dataclass
class _Entry:
    delay: float
    last_update: float


class Backoff:
    def __init__(self, *, clock: Clock, initial: float = 10.0, maximum: float = 300.0,
                 reset_after: float = 600.0) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("back-off needs 0 < initial <= maximum")
        self.clock = clock
        self.initial = initial
        self.maximum = maximum
        self.reset_after = reset_after
        self._entries: dict[str, _Entry] = {}

    def delay(self, key: str) -> float:
        """The key's current delay (0 when it has none)."""
        entry = self._entries.get(key)
        return entry.delay if entry is not None else 0.0

    def _expired(self, entry: _Entry, event_time: float) -> bool:
        return event_time - entry.last_update > self.reset_after

    def in_backoff_since(self, key: str, event_time: float) -> bool:
        """True while an event at ``event_time`` must still wait before a retry."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, event_time):
            return False
        return self.clock.monotonic() - event_time < entry.delay

    def retry_at(self, key: str, event_time: float) -> float:
        """When the back-off for an event at ``event_time`` ends (monotonic seconds)."""
        entry = self._entries.get(key)
        return event_time + (entry.delay if entry is not None else 0.0)

    def next(self, key: str, event_time: float) -> float:
        """Record a retry for an event at ``event_time``; the new delay."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, event_time):
            entry = _Entry(self.initial, event_time)
            self._entries[key] = entry
        else:
            entry.delay = min(entry.delay * 2, self.maximum)
            entry.last_update = event_time
        return entry.delay

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        """Drop every key starting with ``prefix`` (a deleted pod's keys)."""
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]
