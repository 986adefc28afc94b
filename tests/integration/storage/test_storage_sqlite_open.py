"""Opening a SQLite store: every bad file is a clear StorageOpenError, and is left untouched."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from pilothouse.storage import StorageOpenError, open_storage
from pilothouse.storage.sqlite import SCHEMA_VERSION, SqliteStorage


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def make_store(path: Path, keys: int = 0, value: bytes = b"v") -> None:
    store = await SqliteStorage.open(path)
    for i in range(keys):
        await store.create(f"/k/{i:05}", value)
    await store.close()


async def assert_refused(path: Path, *words: str) -> None:
    """Opening ``path`` fails naming it (and ``words``) and changes nothing on disk."""
    before = {p.name: digest(p) for p in path.parent.iterdir() if p.is_file()}
    with pytest.raises(StorageOpenError) as err:
        await open_storage(f"sqlite://{path}")
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message
    after = {p.name: digest(p) for p in path.parent.iterdir() if p.is_file()}
    assert after == before


async def test_new_file_and_missing_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    store = await open_storage(f"sqlite://{path}")
    await store.create("/x", b"1")
    await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is a text file, not a database\n" * 50)
    await assert_refused(path, "not a SQLite database")


async def test_garbage_after_a_sqlite_header(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    await assert_refused(path)


async def test_corrupt_pages(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await make_store(path, keys=400, value=b"x" * 300)
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    page = 4096
    for n in range(3, 8):  # scribble over whole b-tree pages in the middle of the file
        data[n * page : (n + 1) * page] = bytes([0xA5]) * page
    path.write_bytes(bytes(data))
    await assert_refused(path, "corrupt")


async def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await make_store(path, keys=400, value=b"x" * 300)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    await assert_refused(path)


async def test_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await make_store(path, keys=3)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    await assert_refused(path, "newer", f"schema version {SCHEMA_VERSION + 1}")


async def test_someone_elses_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (9.5)")
    conn.commit()
    conn.close()
    await assert_refused(path, "not a pilothouse database", "invoices")


async def test_an_empty_sqlite_file_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size = 8192")
    conn.execute("VACUUM")  # writes a header, no tables
    conn.close()
    store = await open_storage(f"sqlite://{path}")
    assert (await store.create("/a", b"")).mod_revision == 1
    await store.close()


async def test_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.mkdir()
    with pytest.raises(StorageOpenError, match="directory") as err:
        await open_storage(f"sqlite://{path}")
    assert str(path) in str(err.value)


async def test_unreachable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    path = blocker / "state.db"
    with pytest.raises(StorageOpenError) as err:
        await open_storage(f"sqlite://{path}")
    assert str(path) in str(err.value)


async def test_a_store_in_use_is_refused_and_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = await open_storage(f"sqlite://{path}")
    await first.create("/a", b"1")
    with pytest.raises(StorageOpenError, match="in use"):
        await open_storage(f"sqlite://{path}")
    assert (await first.create("/b", b"2")).mod_revision == 2
    await first.close()
    second = await open_storage(f"sqlite://{path}")  # the lock went with close()
    assert await second.current_revision() == 2
    await second.close()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqlite://", "no database path"),
        ("sqlite:///x.db?synchronous=sometimes", "synchronous"),
        ("sqlite:///x.db?max_batch=zero", "max_batch"),
        ("sqlite:///x.db?max_batch=0", "max_batch"),
        ("sqlite:///x.db?frobnicate=1", "unknown parameter"),
        ("sqlite:///x.db?integrity_check=always", "integrity_check"),
    ],
    ids=["no-path", "bad-sync", "non-int", "zero", "unknown-param", "bad-check"],
)
async def test_bad_sqlite_urls(url: str, words: str) -> None:
    with pytest.raises(StorageOpenError, match=words) as err:
        await open_storage(url)
    assert url in str(err.value)
