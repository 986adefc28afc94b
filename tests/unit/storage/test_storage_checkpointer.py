"""SQLite checkpoints run on the checkpointer thread, never inside a writer's commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pilothouse.storage.sqlite import SqliteStorage
from tests.support import wait_for

VALUE = b"v" * 8192  # two pages per row: 600 rows fill far more than 1000 WAL pages


async def test_checkpointer_copies_the_wal_into_the_database(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = await SqliteStorage.open(db)
    try:
        await asyncio.gather(*(store.create(f"/registry/configmaps/default/c{i:04d}", VALUE)
                               for i in range(600)))
        # Until a checkpoint, the rows live only in the WAL; the writer never
        # checkpoints (wal_autocheckpoint = 0), so this is the checkpointer's work.
        await wait_for(lambda: store._checkpointer.checkpoints > 0, what="a checkpoint")
        await wait_for(lambda: db.stat().st_size > 600 * len(VALUE),
                       what="the rows copied into the database file")
    finally:
        await store.close()
    assert not store._checkpointer.is_alive()
    reopened = await SqliteStorage.open(db)
    try:
        page = await reopened.range("/registry/configmaps/", limit=0)
        assert page.count == 600
    finally:
        await reopened.close()
