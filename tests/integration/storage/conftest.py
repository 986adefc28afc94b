"""Fixtures for the storage contract suite: one store per backend, real SQLite in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pilothouse.storage import Storage, open_storage

BACKENDS = ["memory", "sqlite"]

OpenStore = Callable[..., Awaitable[Storage]]


def store_url(backend: str, tmp_path: Path, **params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    base = "memory://" if backend == "memory" else f"sqlite://{tmp_path / 'state.db'}"
    return f"{base}?{query}" if query else base


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def open_store(backend: str, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """Open a store of the test's backend with URL parameters; all are closed after the test."""
    opened: list[Storage] = []

    async def _open(**params: object) -> Storage:
        store = await open_storage(store_url(backend, tmp_path, **params))
        opened.append(store)
        return store

    yield _open
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> Storage:
    return await open_store()
