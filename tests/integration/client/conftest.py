"""A real apiserver in-process (SQLite in tmp_path) and clients for each transport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pilothouse.client import Client
from pilothouse.client.grpc_transport import GrpcTransport
from pilothouse.client.rest import RestTransport
from pilothouse.services.apiserver.server import APIServer

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

