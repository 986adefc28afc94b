"""A real apiserver in-process (SQLite in tmp_path) and clients for each transport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pilothouse.client import Client
from pilothouse.client.grpc_transport import GrpcTransport
from pilothouse.client.rest import RestTransport
from pilothouse.services.apiserver.server import APIServer, APIServerConfig


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[APIServer]:
    server = APIServer(APIServerConfig(data_dir=tmp_path / "data", port=0))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


TRANSPORTS = ["rest", "grpc"]


def make_client(apiserver: APIServer, transport: str) -> Client:
    if transport == "rest":
        return Client(RestTransport(apiserver.url, timeout=10))
    if transport == "grpc":
        return Client(GrpcTransport(apiserver.grpc_address, timeout=10))
    raise AssertionError(f"unknown transport {transport}")


@pytest.fixture(params=TRANSPORTS)
async def client(apiserver: APIServer, request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    """A client over each transport in turn."""
    async with make_client(apiserver, request.param) as c:
        yield c


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], within: float = 10.0,
                   what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.01)
