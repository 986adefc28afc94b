"""A real apiserver in-process on 127.0.0.1:0, with SQLite in tmp_path, and an HTTP client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pilothouse.services.apiserver.server import APIServer


@pytest.fixture
async def client(apiserver: APIServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=apiserver.url, timeout=10) as c:
        yield c


def configmap(name: str, data: dict[str, str] | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {"k": "v"}}



class WatchStream:
    """Reads a watch response line by line."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, within: float = 10.0) -> dict[str, Any]:
        while True:
            line = await asyncio.wait_for(anext(self._lines), within)
            if line.strip():
                event: dict[str, Any] = json.loads(line)
                return event
