"""Consistent lists (no resourceVersion) served from the watch cache once it holds
every acknowledged write, as Kubernetes' ConsistentListFromCache does; storage when
the cache does not catch up in time, or for paged lists."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from pilothouse.services.apiserver import registry as registry_module
from pilothouse.services.apiserver.registry import ResourceStore
from pilothouse.services.apiserver.server import APIServer
from tests.integration.apiserver.conftest import configmap

CM = "/api/v1/namespaces/default/configmaps"


def _store(apiserver: APIServer) -> ResourceStore:
    assert apiserver.registry is not None
    return apiserver.registry.store_for("", "configmaps")


def _count_storage_lists(monkeypatch: pytest.MonkeyPatch, store: ResourceStore) -> list[int]:
    calls: list[int] = []
    original = store._list_storage

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, "_list_storage", counted)
    return calls


async def test_list_from_cache_has_the_writes_made_just_before(
        apiserver: APIServer, client: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    storage_lists = _count_storage_lists(monkeypatch, _store(apiserver))
    for round_ in range(5):
        names = [f"r{round_}-{i}" for i in range(10)]
        created = await asyncio.gather(*(client.post(CM, json=configmap(n)) for n in names))
        assert all(r.status_code == 201 for r in created)
        await client.delete(f"{CM}/{names[0]}")
        listed = (await client.get(CM)).json()
        listed_names = {o["metadata"]["name"] for o in listed["items"]}
        assert set(names[1:]) <= listed_names
        assert names[0] not in listed_names
        newest = max(int(r.json()["metadata"]["resourceVersion"]) for r in created)
        assert int(listed["metadata"]["resourceVersion"]) >= newest
    assert storage_lists == [], "consistent lists went to storage"
    # Nothing under way: the list is as of the store's current revision, so it is
    # not older than a write to another resource the client saw answered.
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    written = (await client.post("/api/v1/namespaces/default/secrets", json=secret)).json()
    listed = (await client.get(CM)).json()
    assert int(listed["metadata"]["resourceVersion"]) >= \
        int(written["metadata"]["resourceVersion"])
    # A watch from the list's revision starts right after it: nothing missed.
    rv = listed["metadata"]["resourceVersion"]
    async with client.stream("GET", CM, params={"watch": "1", "resourceVersion": rv}) as r:
        await client.post(CM, json=configmap("after"))
        async for line in r.aiter_lines():
            if line.strip():
                assert '"name":"after"' in line
                break


async def test_paged_and_lagging_lists_read_storage(
        apiserver: APIServer, client: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(apiserver)
    storage_lists = _count_storage_lists(monkeypatch, store)
    await client.post(CM, json=configmap("one"))
    page = (await client.get(CM, params={"limit": "1"})).json()
    assert [o["metadata"]["name"] for o in page["items"]] == ["one"]
    assert storage_lists == [1]
    # A cache that cannot show the newest write in time: storage answers instead.
    assert apiserver.registry is not None
    apiserver.registry.note_write(store.cache.prefix, store.cache.revision + 1_000_000)
    monkeypatch.setattr(registry_module, "CONSISTENT_LIST_WAIT", 0.01)
    listed = (await client.get(CM)).json()
    assert [o["metadata"]["name"] for o in listed["items"]] == ["one"]
    assert storage_lists == [1, 1]
