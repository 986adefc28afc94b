"""What every controller is built from, and how the controller-manager knows it.

A controller is one module (../shared/CONVENTIONS.md): its constructor takes
the shared informers and a narrow writer (the ``Client``); event handlers only
turn objects into ``namespace/name`` keys and enqueue them; ``async def
sync(key)`` reads the informer caches, recomputes everything, treats "not
found" as "clean up and return", and raises to be retried (the work queue
backs off per key). It is registered by one ``ControllerDescriptor``.

    DESCRIPTOR = ControllerDescriptor("replicaset", start_replicaset)

    async def start_replicaset(ctx: ControllerContext) -> None:
        controller = ReplicaSetController(ctx)
        await controller.run(workers=ctx.workers)   # until cancelled
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime

from pilothouse.client import Client, EventRecorder, SharedInformerFactory, WorkQueue, run_worker
from pilothouse.client.clock import AsyncClock, real_clock

log = logging.getLogger("pilothouse.controllers")


@dataclass
class ControllerContext:
    """What the controller-manager hands every controller."""

    client: Client
    informers: SharedInformerFactory
    recorder: EventRecorder
    clock: AsyncClock = field(default_factory=real_clock)
    workers: int = 2
    # Controller-specific settings by name (e.g. "node-monitor-grace-period": 40.0).
    settings: dict[str, object] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock.now()


@dataclass(frozen=True)
class ControllerDescriptor:
    """One line in the controller-manager's table: a name (for ``--controllers``)
    and the coroutine that runs the controller until it is cancelled."""

    name: str
    start: Callable[[ControllerContext], Awaitable[None]]
    enabled_by_default: bool = True


class Controller:
    """A work queue of keys and workers that call ``sync(key)``.

    Subclasses implement ``sync`` and register event handlers that call
    ``enqueue``. ``run`` waits for the informers to sync, then runs ``workers``
    workers until cancelled; the queue is shut down on the way out.
    """

    name = "controller"

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.queue: WorkQueue = WorkQueue(self.name, clock=ctx.clock)

    def enqueue(self, key: Hashable) -> None:
        self.queue.add(key)

    def enqueue_after(self, key: Hashable, delay: float) -> None:
        self.queue.add_after(key, delay)

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def run(self, workers: int | None = None) -> None:
        await self.ctx.informers.wait_for_sync()
        count = workers or self.ctx.workers
        log.info("controller started", extra={"controller": self.name, "workers": count})
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(count):
                    group.create_task(run_worker(self.queue, self.sync))
        finally:
            self.queue.shut_down()
