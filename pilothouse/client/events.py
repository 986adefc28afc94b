"""``EventRecorder``: core/v1 Events for what a user sees in ``kubectl describe``.

``event(obj, type, reason, message)`` never blocks and never fails the
caller: it puts the event on a bounded queue (when the queue is full the
event is dropped and counted, as client-go's broadcaster drops), and the
recorder's ``run`` task writes it. A repeat of an event already written
(same object, type, reason, message and source) is not a new Event: the
existing one is patched with ``count + 1`` and a new ``lastTimestamp``, as
client-go's correlator does (simplified: no similar-message aggregation or
spam filter). If that Event is gone (TTL), a fresh one is created.

Usage:

    recorder = EventRecorder(client, "default-scheduler", host="node-1")
    async with recorder:            # runs the writer; flushes on exit
        recorder.event(pod, "Warning", "FailedScheduling", "0/3 nodes are available")
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from google.protobuf.message import Message

from pilothouse.api.timeutil import format_time, time_to_proto
from pilothouse.client.client import Client
from pilothouse.client.clock import AsyncClock, real_clock
from pilothouse.client.errors import APIError, ClientError
from pilothouse.gen.k8s.core.v1 import core_pb2

__all__ = ["EVENT_TYPES", "EventRecorder"]

log = logging.getLogger("pilothouse.client.events")

EVENT_TYPES = ("Normal", "Warning")
MAX_QUEUED = 1000
CACHE_SIZE = 4096
WRITE_ATTEMPTS = 3
RETRY_DELAY = 1.0
# Kubernetes refuses longer messages on Events; cut (and mark) instead of losing the event.
MAX_MESSAGE = 1024


@dataclass(frozen=True, slots=True)
class _Pending:
    ref: core_pb2.ObjectReference
    type: str
    reason: str
    message: str


@dataclass(slots=True)
class _Written:
    namespace: str
    name: str
    count: int


class EventRecorder:
    """Records Events about objects on behalf of ``component`` running on ``host``."""

    def __init__(self, client: Client, component: str, host: str = "", *,
                 clock: AsyncClock | None = None, max_queued: int = MAX_QUEUED,
                 cache_size: int = CACHE_SIZE) -> None:
        if not component:
            raise ValueError("an EventRecorder needs a component name")
        self.client = client
        self.component = component
        self.host = host
        self.clock = clock or real_clock()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_queued)
        self._cache: collections.OrderedDict[tuple[str, ...], _Written] = \
            collections.OrderedDict()
        self._cache_size = cache_size
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0

    # -- recording ------------------------------------------------------------------

    def event(self, obj: Message, type: str, reason: str, message: str) -> None:
        """Queue an Event about ``obj`` (a served kind, or a core/v1 ObjectReference)."""
        if type not in EVENT_TYPES:
            raise ValueError(f"event type must be Normal or Warning, not {type!r}")
        if not reason:
            raise ValueError("an event needs a reason")
        ref = self.reference(obj)
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE - 3] + "..."
        try:
            self._queue.put_nowait(_Pending(ref, type, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event queue full, dropping %s event %s for %s/%s", type, reason,
                        ref.namespace, ref.name)

    def reference(self, obj: Message) -> core_pb2.ObjectReference:
        """The ObjectReference an Event's involvedObject holds for ``obj``."""
        if isinstance(obj, core_pb2.ObjectReference):
            ref = core_pb2.ObjectReference()
            ref.CopyFrom(obj)
            return ref
        kind = self.client.kind_of(obj)
        meta: Any = obj.metadata  # type: ignore[attr-defined]
        ref = core_pb2.ObjectReference()
        ref.kind = kind.kind
        ref.apiVersion = kind.api_version
        ref.name = meta.name
        if meta.namespace:
            ref.namespace = meta.namespace
        if meta.uid:
            ref.uid = meta.uid
        if meta.resourceVersion:
            ref.resourceVersion = meta.resourceVersion
        return ref

    # -- writing ----------------------------------------------------------------------

    async def run(self) -> None:
        """Write queued events until cancelled."""
        while True:
            pending = await self._queue.get()
            try:
                await self._write_with_retries(pending)
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        """Wait until every event queued so far has been written (or given up on)."""
        await self._queue.join()

    async def __aenter__(self) -> EventRecorder:
        self._task = asyncio.create_task(self.run(), name=f"events:{self.component}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if exc_type is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):  # bounded: a dead apiserver must not hang exit
                    await self.flush()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _write_with_retries(self, pending: _Pending) -> None:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                await self._write(pending)
                self.written += 1
                return
            except APIError as exc:
                # The server refused the Event itself (invalid, forbidden): retrying won't help.
                log.warning("event %s for %s/%s rejected: %s", pending.reason,
                            pending.ref.namespace, pending.ref.name, exc)
                return
            except ClientError as exc:
                if attempt == WRITE_ATTEMPTS:
                    log.warning("giving up on event %s for %s/%s: %s", pending.reason,
                                pending.ref.namespace, pending.ref.name, exc)
                    return
                await self.clock.sleep(RETRY_DELAY * attempt)

    def _key(self, p: _Pending) -> tuple[str, ...]:
        r = p.ref
        return (self.component, self.host, r.kind, r.namespace, r.name, r.uid, r.apiVersion,
                p.type, p.reason, p.message)

    async def _write(self, pending: _Pending) -> None:
        now = self.clock.now()
        key = self._key(pending)
        seen = self._cache.get(key)
        if seen is not None:
            try:
                await self.client.patch(
                    core_pb2.Event, seen.name, namespace=seen.namespace,
                    patch={"count": seen.count + 1, "lastTimestamp": format_time(now)})
            except APIError as exc:
                if not exc.is_not_found():
                    raise
                del self._cache[key]  # expired: record it afresh below
            else:
                seen.count += 1
                self._cache.move_to_end(key)
                return
        event = core_pb2.Event()
        ref = pending.ref
        namespace = ref.namespace or "default"
        nanos = int(now.timestamp()) * 1_000_000_000 + now.microsecond * 1000
        event.metadata.name = f"{ref.name}.{nanos:x}"
        event.metadata.namespace = namespace
        event.involvedObject.CopyFrom(ref)
        event.reason = pending.reason
        event.message = pending.message
        event.type = pending.type
        event.source.component = self.component
        if self.host:
            event.source.host = self.host
        event.count = 1
        event.firstTimestamp.CopyFrom(time_to_proto(now))
        event.lastTimestamp.CopyFrom(time_to_proto(now))
        event.reportingComponent = self.component
        event.reportingInstance = self.host
        for bump in range(1, 10):
            try:
                created = await self.client.create(event)
                break
            except APIError as exc:
                # Two events about one object in the same nanosecond (a fake clock): next name.
                if not exc.is_already_exists():
                    raise
                event.metadata.name = f"{ref.name}.{nanos + bump:x}"
        else:
            raise APIError(409, "AlreadyExists", f"no free name for an event on {ref.name}")
        self._cache[key] = _Written(namespace, created.metadata.name, 1)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
