"""Fan-out of container events to GetContainerEvents streams.

Each subscriber has a bounded queue (:data:`QUEUE_SIZE`). A subscriber that
falls that far behind is dropped: its stream ends and, as with a Kubernetes
watch, the client must re-list (the kubelet's evented PLEG falls back to
relisting when its stream breaks). Publishing never blocks the runtime.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri

QUEUE_SIZE = 1000
_END = None


class EventHub:
    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscribers: set[asyncio.Queue[cri.ContainerEventResponse | None]] = set()

    def publish(self, event: cri.ContainerEventResponse) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)
                queue.get_nowait()  # make room for the end marker
                queue.put_nowait(_END)

    def close(self) -> None:
        for queue in list(self._subscribers):
            self._subscribers.discard(queue)
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(_END)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> AsyncIterator[cri.ContainerEventResponse]:
        """Events from this call on (the subscription starts now, not at first iteration)."""
        queue: asyncio.Queue[cri.ContainerEventResponse | None] = asyncio.Queue(self.queue_size)
        self._subscribers.add(queue)
        return self._drain(queue)

    async def _drain(
        self, queue: asyncio.Queue[cri.ContainerEventResponse | None]
    ) -> AsyncIterator[cri.ContainerEventResponse]:
        try:
            while (event := await queue.get()) is not _END:
                assert event is not None
                yield event
        finally:
            self._subscribers.discard(queue)
