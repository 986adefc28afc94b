"""A real apiserver (SQLite in tmp_path), simulated nodes, and a scheduler, in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pilothouse.client import Client
from pilothouse.client.rest import RestTransport
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.apiserver.server import APIServer, APIServerConfig
from pilothouse.services.scheduler.config import default_config
from pilothouse.services.scheduler.scheduler import Scheduler
from pilothouse.services.scheduler.server import SchedulerHTTP
from tests.support import wait_for


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[APIServer]:
    server = APIServer(APIServerConfig(data_dir=tmp_path / "data", port=0, grpc_port=None))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(apiserver: APIServer) -> AsyncIterator[Client]:
    async with Client(RestTransport(apiserver.url, timeout=10)) as c:
        yield c


class Running:
    """A scheduler running as a task, with its HTTP endpoint."""

    def __init__(self, scheduler: Scheduler, task: asyncio.Task[None], http: SchedulerHTTP):
        self.scheduler = scheduler
        self.task = task
        self.http = http


@pytest.fixture
async def scheduler(apiserver: APIServer) -> AsyncIterator[Running]:
    async with Client(RestTransport(apiserver.url, timeout=10)) as c:
        config = default_config()
        sched = Scheduler(c, config=config, identity="test-scheduler")
        http = SchedulerHTTP(sched, "127.0.0.1", 0)
        await http.start()
        task = asyncio.create_task(sched.run(leader_elect=False))
        try:
            await wait_for(lambda: sched.synced or task.done(), what="scheduler sync")
            if task.done():
                task.result()
            yield Running(sched, task, http)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await http.stop()



async def node_of(client: Client, name: str, namespace: str = "default") -> str:
    pod = await client.get(core_pb2.Pod, name, namespace=namespace)
    return str(pod.spec.nodeName)


async def wait_bound(client: Client, *names: str, within: float = 15.0) -> dict[str, str]:
    placed: dict[str, str] = {}

    async def all_bound() -> bool:
        for n in names:
            node = await node_of(client, n)
            if node:
                placed[n] = node
        return len(placed) == len(names)

    await wait_for(all_bound, within, f"pods {names} bound")
    return placed


async def events_for(client: Client, pod: str, reason: str) -> list[Any]:
    events = await client.list(core_pb2.Event, namespace="default",
                               field_selector=f"involvedObject.name={pod}")
    return [e for e in events.items if e.reason == reason]
