"""Fixtures of the integration tier: a real apiserver in-process on 127.0.0.1:0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilothouse.services.apiserver.server import APIServer, APIServerConfig


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[APIServer]:
    """REST and gRPC on free ports, SQLite in tmp_path."""
    server = APIServer(APIServerConfig(data_dir=tmp_path / "data", port=0, grpc_port=0))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
