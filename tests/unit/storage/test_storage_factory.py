"""open_storage URLs (the SQLite ones are exercised in tests/integration/storage)."""

from __future__ import annotations

import pytest

from pilothouse.storage import MemoryStorage, Storage, StorageOpenError, open_storage


async def test_memory_url() -> None:
    store = await open_storage("memory://")
    assert isinstance(store, MemoryStorage) and isinstance(store, Storage)
    await store.create("/a", b"1")
    await store.close()


async def test_memory_url_with_a_queue_size() -> None:
    store = await open_storage("memory://?watch_queue_size=7")
    assert isinstance(store, MemoryStorage)
    assert store._hub.queue_size == 7
    await store.close()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("", "unsupported storage URL"),
        ("/var/lib/state.db", "unsupported storage URL"),
        ("etcd://127.0.0.1:2379", "unsupported storage URL"),
        ("memory://somewhere", "takes no path"),
        ("memory://?watch_queue_size=-1", "watch_queue_size"),
        ("memory://?synchronous=FULL", "unknown parameter"),
        ("memory://?=&", "malformed query"),
    ],
    ids=["empty", "bare-path", "etcd-not-yet", "memory-path", "negative", "sqlite-param", "junk"],
)
async def test_bad_urls(url: str, words: str) -> None:
    with pytest.raises(StorageOpenError, match=words):
        await open_storage(url)


async def test_non_string_url() -> None:
    with pytest.raises(StorageOpenError, match="string"):
        await open_storage(42)  # type: ignore[arg-type]
