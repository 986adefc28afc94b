"""``open_storage(url)``: the one way components get a :class:`Storage`.

URLs:

- ``sqlite:///var/lib/pilothouse/state.db`` (absolute path) or
  ``sqlite://state.db`` (relative to the working directory), with optional
  query parameters ``synchronous`` (FULL, NORMAL, EXTRA), ``integrity_check``
  (quick, full, off), ``watch_queue_size``, ``max_batch``, ``compact_chunk``,
  ``busy_timeout_ms``, ``max_row_bytes``:
  ``sqlite:///tmp/x.db?synchronous=NORMAL``.
- ``memory://`` (optionally ``memory://?watch_queue_size=100``): nothing
  survives close; for tests and throwaway clusters.

A bad URL is a :class:`StorageOpenError` that quotes it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from pilothouse.storage.interface import Storage, StorageOpenError
from pilothouse.storage.memory import MemoryStorage
from pilothouse.storage.metrics import StorageMetrics
from pilothouse.storage.sqlite import SqliteOptions, SqliteStorage

_SQLITE_PARAMS = {
    "synchronous": str,
    "integrity_check": str,
    "watch_queue_size": int,
    "max_batch": int,
    "compact_chunk": int,
    "busy_timeout_ms": int,
    "max_row_bytes": int,
}
_MEMORY_PARAMS = {"watch_queue_size": int}


async def open_storage(url: str, *, metrics: StorageMetrics | None = None) -> Storage:
    """Open the store ``url`` names (see the module docstring)."""
    if not isinstance(url, str):
        raise StorageOpenError(f"storage URL must be a string, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"sqlite", "memory"}:
        raise StorageOpenError(
            f"unsupported storage URL {url!r}: expected sqlite:///path/to/db or memory://"
        )
    location, _, query = rest.partition("?")
    if scheme == "memory":
        if location:
            raise StorageOpenError(f"storage URL {url!r}: memory:// takes no path")
        params = _parse_query(url, query, _MEMORY_PARAMS)
        return MemoryStorage(metrics=metrics, **params)
    path = urllib.parse.unquote(location)
    if not path:
        raise StorageOpenError(f"storage URL {url!r}: no database path (sqlite:///path/to/db)")
    params = _parse_query(url, query, _SQLITE_PARAMS)
    try:
        options = SqliteOptions(**params)
    except ValueError as exc:
        raise StorageOpenError(f"storage URL {url!r}: {exc}") from None
    return await SqliteStorage.open(path, options=options, metrics=metrics)


def _parse_query(url: str, query: str, allowed: Mapping[str, type]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise StorageOpenError(f"storage URL {url!r}: malformed query {query!r}") from None
    for name, raw in pairs:
        kind = allowed.get(name)
        if kind is None:
            raise StorageOpenError(
                f"storage URL {url!r}: unknown parameter {name!r} "
                f"(known: {', '.join(sorted(allowed))})"
            )
        try:
            params[name] = kind(raw)
        except ValueError:
            raise StorageOpenError(
                f"storage URL {url!r}: parameter {name}={raw!r} is not {kind.__name__}"
            ) from None
        if kind is int and params[name] < 1:
            raise StorageOpenError(f"storage URL {url!r}: parameter {name} must be >= 1")
    return params
