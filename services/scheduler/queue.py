"""The scheduling queue: active, back-off and unschedulable pods (Kubernetes' PriorityQueue).

- **activeQ**: pods ready to be tried, ordered by the profile's QueueSort
  (PrioritySort: higher priority, then earlier).
- **backoffQ**: pods that failed recently and wait ``initial * 2^(attempts-1)``
  seconds (1 s doubling to 10 s by default) before going back to activeQ.
- **unschedulable**: pods that fit nowhere; a cluster event moves them back
  (to backoffQ while their back-off lasts, else activeQ) only if one of the
  plugins that rejected them registered that event (``events_to_register``;
  a plugin without it cares about every event). A pod left there for 5
  minutes is moved back anyway.
- **gated**: pods a PreEnqueue plugin (SchedulingGates) holds; an update to
  the pod re-checks them.

A pod is "in flight" between ``pop`` and ``done``. If a move request
happens while a pod is in flight, a failure sends it to backoffQ rather than
unschedulable (the event might have helped it). Nominated pods (preemptors
waiting for their victims to go) are tracked here too: Filter counts them
on their nominated node.

Time comes from an injected clock; ``flush`` is driven by ``run`` every
second, and tests call it after advancing a fake clock. Every queue holds at
most one entry per pod (keys), so its size is bounded by the pending pods.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pilothouse.api.timeutil import Clock
from pilothouse.services.scheduler.framework import ClusterEvent, PodInfo, Status

__all__ = ["UNSCHEDULABLE_TIMEOUT", "QueuedPodInfo", "SchedulingQueue"]

#: Pods stay at most this long in the unschedulable set (podMaxInUnschedulablePodsDuration).
UNSCHEDULABLE_TIMEOUT = 300.0
_ALL_EVENTS = (ClusterEvent("*", "*"),)


@dataclass(eq=False)
class QueuedPodInfo:
    pod_info: PodInfo
    #: When the pod last entered a queue (orders activeQ; starts the back-off).
    timestamp: float
    initial_attempt_timestamp: float | None = None
    attempts: int = 0
    #: Plugins that rejected the pod in its last attempt.
    unschedulable_plugins: set[str] = field(default_factory=set)
    gated_by: str = ""
    #: An update to the pod arrived while it was being scheduled.
    updated: PodInfo | None = None

    @property
    def key(self) -> str:
        return self.pod_info.key


class SchedulingQueue:
    def __init__(self, *, clock: Clock, sort_key: Callable[[PodInfo, float], Any],
                 pre_enqueue: Callable[[PodInfo], Status | None] = lambda _p: None,
                 plugin_events: dict[str, list[ClusterEvent]] | None = None,
                 initial_backoff: float = 1.0, max_backoff: float = 10.0) -> None:
        self.clock = clock
        self.sort_key = sort_key
        self.pre_enqueue = pre_enqueue
        self.plugin_events = plugin_events or {}
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._seq = itertools.count()
        self._active: list[tuple[Any, int, str]] = []
        self._active_set: dict[str, QueuedPodInfo] = {}
        self._backoff: list[tuple[float, int, str]] = []
        self._backoff_set: dict[str, QueuedPodInfo] = {}
        self._unschedulable: dict[str, QueuedPodInfo] = {}
        self._gated: dict[str, QueuedPodInfo] = {}
        self._in_flight: dict[str, QueuedPodInfo] = {}
        self.scheduling_cycle = 0
        self.move_request_cycle = -1
        self._wake = asyncio.Event()
        self._closed = False
        # Nominations: node -> pods, pod key -> node.
        self._nominated: dict[str, dict[str, PodInfo]] = {}
        self._nominated_node: dict[str, str] = {}

    # -- sizes -----------------------------------------------------------------------

    def pending(self) -> dict[str, int]:
        """Pods per queue (``scheduler_pending_pods{queue}``)."""
        return {"active": len(self._active_set), "backoff": len(self._backoff_set),
                "unschedulable": len(self._unschedulable), "gated": len(self._gated)}

    def __contains__(self, key: object) -> bool:
        return (key in self._active_set or key in self._backoff_set or
                key in self._unschedulable or key in self._gated)

    def where(self, key: str) -> str:
        """Which queue holds ``key`` ("" if none; "in-flight" while being scheduled)."""
        for name, q in (("active", self._active_set), ("backoff", self._backoff_set),
                        ("unschedulable", self._unschedulable), ("gated", self._gated),
                        ("in-flight", self._in_flight)):
            if key in q:
                return name
        return ""

    # -- internal moves --------------------------------------------------------------

    def _push_active(self, qpi: QueuedPodInfo) -> None:
        self._active_set[qpi.key] = qpi
        heapq.heappush(self._active, (self.sort_key(qpi.pod_info, qpi.timestamp),
                                      next(self._seq), qpi.key))
        self._wake.set()

    def _push_backoff(self, qpi: QueuedPodInfo) -> None:
        self._backoff_set[qpi.key] = qpi
        heapq.heappush(self._backoff, (self.backoff_expiry(qpi), next(self._seq), qpi.key))

    def _enqueue(self, qpi: QueuedPodInfo) -> None:
        """Into activeQ, or gated when a PreEnqueue plugin says no."""
        status = self.pre_enqueue(qpi.pod_info)
        if status is not None and not status.is_success():
            qpi.gated_by = status.plugin or "PreEnqueue"
            self._gated[qpi.key] = qpi
            return
        qpi.gated_by = ""
        self._push_active(qpi)

    def _discard(self, key: str) -> QueuedPodInfo | None:
        for q in (self._active_set, self._backoff_set, self._unschedulable, self._gated):
            qpi = q.pop(key, None)
            if qpi is not None:
                return qpi  # heap entries are dropped lazily
        return None

    # -- back-off ----------------------------------------------------------------------

    def backoff_duration(self, qpi: QueuedPodInfo) -> float:
        duration = self.initial_backoff
        for _ in range(1, qpi.attempts):
            if duration > self.max_backoff - duration:
                return self.max_backoff
            duration += duration
        return min(duration, self.max_backoff)

    def backoff_expiry(self, qpi: QueuedPodInfo) -> float:
        return qpi.timestamp + self.backoff_duration(qpi)

    def is_backing_off(self, qpi: QueuedPodInfo) -> bool:
        return qpi.attempts > 0 and self.backoff_expiry(qpi) > self.clock.monotonic()

    # -- informer-driven changes ----------------------------------------------------------

    def add(self, pi: PodInfo) -> None:
        """A new pending pod."""
        key = pi.key
        if key in self or key in self._in_flight:
            self.update(pi)
            return
        now = self.clock.monotonic()
        self._enqueue(QueuedPodInfo(pi, now, now))

    def update(self, pi: PodInfo) -> None:
        """The pending pod changed (labels, tolerations, gates, priority ...)."""
        key = pi.key
        inflight = self._in_flight.get(key)
        if inflight is not None:
            inflight.updated = pi
            return
        if key in self._active_set:
            qpi = self._active_set[key]
            qpi.pod_info = pi
            heapq.heappush(self._active, (self.sort_key(pi, qpi.timestamp), next(self._seq), key))
            return
        if key in self._backoff_set:
            self._backoff_set[key].pod_info = pi
            return
        if key in self._gated:
            qpi = self._gated.pop(key)
            qpi.pod_info = pi
            self._enqueue(qpi)
            return
        if key in self._unschedulable:
            qpi = self._unschedulable.pop(key)
            qpi.pod_info = pi
            # An update may have fixed what made it unschedulable: try again.
            if self.is_backing_off(qpi):
                self._push_backoff(qpi)
            else:
                self._push_active(qpi)
            return
        self.add(pi)

    def delete(self, key: str) -> None:
        self._discard(key)
        self._in_flight.pop(key, None)
        self.delete_nominated(key)

    # -- the scheduling loop's side ----------------------------------------------------------

    async def pop(self) -> QueuedPodInfo | None:
        """The next pod to schedule (waits for one); None once closed."""
        while True:
            if self._closed:
                return None
            self.flush_backoff_completed()
            while self._active:
                _, _, key = heapq.heappop(self._active)
                qpi = self._active_set.pop(key, None)
                if qpi is None:
                    continue  # a stale heap entry (deleted or re-sorted)
                self.scheduling_cycle += 1
                qpi.attempts += 1
                if qpi.initial_attempt_timestamp is None:
                    qpi.initial_attempt_timestamp = self.clock.monotonic()
                qpi.updated = None
                self._in_flight[key] = qpi
                return qpi
            self._wake.clear()
            await self._wake.wait()

    def done(self, key: str) -> None:
        """The pod's scheduling attempt is over (scheduled, or re-queued)."""
        self._in_flight.pop(key, None)

    def add_unschedulable(self, qpi: QueuedPodInfo, pod_cycle: int) -> None:
        """Re-queue a pod whose attempt failed (in cycle ``pod_cycle``)."""
        key = qpi.key
        if key not in self._in_flight:
            return  # deleted while we were scheduling it
        del self._in_flight[key]
        if qpi.updated is not None:
            qpi.pod_info, qpi.updated = qpi.updated, None
        qpi.timestamp = self.clock.monotonic()
        if not qpi.unschedulable_plugins or self.move_request_cycle >= pod_cycle:
            # An error, or something changed while we tried: back off, then retry.
            self._push_backoff(qpi)
        else:
            self._unschedulable[key] = qpi

    def requeue_after_bind_failure(self, qpi: QueuedPodInfo) -> None:
        """The bind failed after the cycle ended: back off and retry."""
        if qpi.key in self:
            return
        qpi.timestamp = self.clock.monotonic()
        self._push_backoff(qpi)

    def activate(self, keys: Iterable[str]) -> None:
        """Move these pods to activeQ now (Kubernetes' Activate)."""
        for key in keys:
            qpi = self._unschedulable.pop(key, None) or self._backoff_set.pop(key, None)
            if qpi is not None:
                self._push_active(qpi)

    # -- moving unschedulable pods back ------------------------------------------------------

    def _interested(self, qpi: QueuedPodInfo, event: ClusterEvent) -> bool:
        if not qpi.unschedulable_plugins:
            return True
        for name in qpi.unschedulable_plugins:
            for registered in self.plugin_events.get(name, _ALL_EVENTS):
                if registered.covers(event):
                    return True
        return False

    def move_all_to_active_or_backoff(self, event: ClusterEvent) -> int:
        """A cluster event: move the unschedulable pods it may help. Returns how many."""
        moved = 0
        for key, qpi in list(self._unschedulable.items()):
            if not self._interested(qpi, event):
                continue
            del self._unschedulable[key]
            if self.is_backing_off(qpi):
                self._push_backoff(qpi)
            else:
                self._push_active(qpi)
            moved += 1
        self.move_request_cycle = self.scheduling_cycle
        return moved

    def flush_backoff_completed(self) -> int:
        now = self.clock.monotonic()
        moved = 0
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            qpi = self._backoff_set.pop(key, None)
            if qpi is None:
                continue
            self._push_active(qpi)
            moved += 1
        return moved

    def flush_unschedulable_left_over(self) -> int:
        now = self.clock.monotonic()
        stale = [k for k, q in self._unschedulable.items()
                 if now - q.timestamp > UNSCHEDULABLE_TIMEOUT]
        for key in stale:
            qpi = self._unschedulable.pop(key)
            if self.is_backing_off(qpi):
                self._push_backoff(qpi)
            else:
                self._push_active(qpi)
        return len(stale)

    async def run(self, sleep: Callable[[float], Any]) -> None:
        """Flush back-off every second and stale unschedulable pods every 30 s."""
        ticks = 0
        while not self._closed:
            await sleep(1.0)
            ticks += 1
            self.flush_backoff_completed()
            if ticks % 30 == 0:
                self.flush_unschedulable_left_over()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    # -- nominated pods ------------------------------------------------------------------

    def add_nominated(self, pi: PodInfo, node_name: str) -> None:
        self.delete_nominated(pi.key)
        if not node_name:
            return
        self._nominated.setdefault(node_name, {})[pi.key] = pi
        self._nominated_node[pi.key] = node_name

    def delete_nominated(self, key: str) -> None:
        node = self._nominated_node.pop(key, None)
        if node is None:
            return
        pods = self._nominated.get(node)
        if pods is not None:
            pods.pop(key, None)
            if not pods:
                del self._nominated[node]

    def nominated_pods_for_node(self, node_name: str) -> list[PodInfo]:
        return list(self._nominated.get(node_name, {}).values())

    def nominated_node_names(self) -> dict[str, dict[str, PodInfo]]:
        return self._nominated
