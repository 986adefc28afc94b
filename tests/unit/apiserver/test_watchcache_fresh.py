"""WatchCache.wait_for_revision: what consistent lists from the cache wait on."""

from __future__ import annotations

import asyncio

from pilothouse.api.kinds import KindRegistry
from pilothouse.api.serialization import encode_value
from pilothouse.services.apiserver import strategies  # noqa: F401  (registers strategies)
from pilothouse.services.apiserver.strategy import strategy_for
from pilothouse.services.apiserver.watchcache import WatchCache
from pilothouse.storage import MemoryStorage


async def test_waits_until_the_write_is_applied_then_returns_true() -> None:
    kind = KindRegistry.builtin().by_resource("", "v1", "configmaps")
    assert kind is not None
    storage = MemoryStorage()
    cache = WatchCache(kind, storage, strategy_for(kind).field_set)
    await cache.start()
    try:
        assert await cache.wait_for_revision(cache.revision, within=5)  # already there
        cm = kind.new()
        cm.metadata.name = "a"  # type: ignore[attr-defined]
        cm.metadata.namespace = "default"  # type: ignore[attr-defined]
        kv = await storage.create(kind.storage_key("default", "a"), encode_value(kind, cm))
        waiting = asyncio.create_task(cache.wait_for_revision(kv.mod_revision, within=30))
        assert await waiting
        assert cache.get(kind.storage_key("default", "a")) is not None
        # A revision nothing will reach: False once the wait is over, nothing left behind.
        assert not await cache.wait_for_revision(kv.mod_revision + 10, within=0.01)
        assert cache._revision_waiters == []
    finally:
        await cache.stop()
        await storage.close()
