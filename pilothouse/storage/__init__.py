"""Storage: an etcd-shaped protocol and its backends (SQLite embedded, etcd v3).

Everything the apiserver needs is importable from here::

    from pilothouse.storage import open_storage, Storage, KeyValue, ConflictError

``open_storage("sqlite:///var/lib/pilothouse/state.db")`` or
``open_storage("memory://")``; the contract is in :mod:`.interface`, periodic
compaction in :mod:`.compactor`, the in-memory fake in :mod:`.memory`.
"""

from pilothouse.storage.compactor import CompactionPolicy, Compactor
from pilothouse.storage.factory import open_storage
from pilothouse.storage.interface import (
    CompactedError,
    ConflictError,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RangeResult,
    Storage,
    StorageClosedError,
    StorageError,
    StorageOpenError,
    WatchEvent,
    WatchOverflowError,
    WatchStream,
)
from pilothouse.storage.memory import MemoryStorage
from pilothouse.storage.metrics import StorageMetrics
from pilothouse.storage.sqlite import SqliteOptions, SqliteStorage

__all__ = [
    "CompactedError",
    "CompactionPolicy",
    "Compactor",
    "ConflictError",
    "EventType",
    "FutureRevisionError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "MemoryStorage",
    "RangeResult",
    "SqliteOptions",
    "SqliteStorage",
    "Storage",
    "StorageClosedError",
    "StorageError",
    "StorageMetrics",
    "StorageOpenError",
    "WatchEvent",
    "WatchOverflowError",
    "WatchStream",
    "open_storage",
]
