"""Random operation sequences give the same answers on SQLite as on the in-memory model.

Hypothesis drives both backends with the same calls (including ones that must
fail) and compares every result, error, and the final watch history.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilothouse.storage import MemoryStorage, Storage, StorageError
from pilothouse.storage.sqlite import SqliteOptions, SqliteStorage

KEYS = ["/a", "/a/1", "/a/2", "/a/é", "/b/1"]
PREFIXES = ["", "/a", "/a/", "/b/", "/c/"]

keys = st.sampled_from(KEYS)
# >= 0: that revision; < 0: that many back from the current one (so compactions
# and reads of the recent past are common, not only "future revision" errors)
revisions = st.integers(min_value=-8, max_value=30)
values = st.binary(max_size=8)

operations = st.one_of(
    st.tuples(st.just("create"), keys, values),
    st.tuples(st.just("update"), keys, values, revisions),
    st.tuples(st.just("update_current"), keys, values),
    st.tuples(st.just("delete"), keys, revisions),
    st.tuples(st.just("get"), keys, revisions),
    st.tuples(
        st.just("range"),
        st.sampled_from(PREFIXES),
        st.sampled_from(["", *KEYS]),
        st.integers(min_value=0, max_value=3),
        revisions,
        st.booleans(),
    ),
    st.tuples(st.just("count"), st.sampled_from(PREFIXES)),
    st.tuples(st.just("compact"), revisions),
)


async def apply(store: Storage, op: tuple[Any, ...]) -> object:
    kind, *args = op
    current = await store.current_revision()
    args = [max(current + a, 0) if isinstance(a, int) and a < 0 else a for a in args]
    try:
        if kind == "create":
            return await store.create(args[0], args[1])
        if kind == "update":
            return await store.update(args[0], args[1], expected_revision=args[2])
        if kind == "update_current":  # the usual read-modify-write, which should win
            latest = await store.get(args[0])
            expected = latest.mod_revision if latest else 0
            return await store.update(args[0], args[1], expected_revision=expected)
        if kind == "delete":
            return await store.delete(args[0], expected_revision=args[1])
        if kind == "get":
            return await store.get(args[0], revision=args[1])
        if kind == "range":
            prefix, after, limit, revision, keys_only = args
            return await store.range(
                prefix, start_after=after, limit=limit, revision=revision, keys_only=keys_only
            )
        if kind == "count":
            return await store.count(args[0])
        await store.compact(args[0])
        return ("compacted", args[0])
    except StorageError as exc:
        return (type(exc).__name__, str(exc))


async def history(store: Storage, compacted: int) -> list[object]:
    current = await store.current_revision()
    if current <= compacted:
        return []
    stream = store.watch("", start_revision=compacted + 1)
    async with contextlib.aclosing(stream):
        return [await asyncio.wait_for(anext(stream), 10) for _ in range(current - compacted)]


async def run_both(ops: list[tuple[Any, ...]], directory: str) -> None:
    model = MemoryStorage()
    real = await SqliteStorage.open(
        f"{directory}/state.db", options=SqliteOptions(synchronous="OFF", compact_chunk=2)
    )
    try:
        compacted = 0
        for step, op in enumerate(ops):
            expected = await apply(model, op)
            got = await apply(real, op)
            assert got == expected, f"step {step}: {op}"
            if isinstance(expected, tuple) and expected[0] == "compacted":
                compacted = max(compacted, expected[1])
        assert await real.current_revision() == await model.current_revision()
        assert await history(real, compacted) == await history(model, compacted)
    finally:
        await real.close()
        await model.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(operations, min_size=1, max_size=40))
def test_sqlite_behaves_like_the_model(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(run_both(ops, directory))
