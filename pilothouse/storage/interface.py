"""The storage contract: a small, etcd-shaped, revisioned key-value store.

Every backend (SQLite, in-memory, etcd) implements :class:`Storage` and passes
the same contract suite (``tests/integration/storage``). The model:

- One global, strictly increasing *revision*. Every successful write (create,
  update, delete) gets the next revision; nothing else advances it. A fresh
  store is at revision 0, the first write is revision 1.
- A key's ``create_revision`` is the revision that created it (it survives
  updates; a key deleted and created again gets a new one); its
  ``mod_revision`` is the revision of its last write.
- Reads can be made *at* a past revision until that revision is compacted;
  compaction drops the history before a revision but never changes what a
  read at or after it returns.
- Values are opaque bytes (the API layer's protobuf envelope); storage never
  looks inside.
- Keys are non-empty strings without NUL characters, like
  ``/registry/pods/<namespace>/<name>``. Keys order by their UTF-8 bytes (the
  same as Python's ``str`` order), and a *prefix* selects every key that
  starts with it (``""`` selects everything).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One version of one key."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One write, as a watcher sees it.

    PUT: ``kv`` is the new version; ``prev_kv`` the version it replaced, or
    None when the write created the key.
    DELETE: ``kv.value`` is the last value the key had, ``kv.mod_revision`` the
    revision of the deletion, ``kv.create_revision`` that of the deleted
    object; ``prev_kv`` is the version that was deleted (same value, its own
    mod_revision).
    """

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None

    @property
    def revision(self) -> int:
        """The revision of the write this event reports."""
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class RangeResult:
    """One page of a range read.

    ``revision``: the revision the page was read at (pass it back to read the
    next page consistently). ``more``: keys after the last one returned still
    match. ``count``: how many keys match at that revision after
    ``start_after`` (this page included), so ``count - len(kvs)`` keys remain;
    with ``start_after=""`` it is the total under the prefix, as etcd does.
    """

    kvs: list[KeyValue]
    revision: int
    more: bool
    count: int


class StorageError(Exception):
    """Base of every error a backend raises on purpose."""


class KeyExistsError(StorageError):
    """create() of a key that already exists."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} already exists")
        self.key = key


class KeyNotFoundError(StorageError):
    """update() or delete() of a key that does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} not found")
        self.key = key


class ConflictError(StorageError):
    """update()/delete() whose expected_revision is not the key's mod_revision.

    ``current`` is the key's current version (so the caller can retry against
    it without another read); it is None only if the key vanished meanwhile.
    """

    def __init__(self, key: str, expected_revision: int, current: KeyValue | None) -> None:
        have = current.mod_revision if current is not None else "none"
        super().__init__(
            f"key {key!r}: expected mod_revision {expected_revision}, current is {have}"
        )
        self.key = key
        self.expected_revision = expected_revision
        self.current = current


class CompactedError(StorageError):
    """The revision asked for has been compacted away (Kubernetes' 410 Gone)."""

    def __init__(
        self, requested_revision: int, compact_revision: int, current_revision: int
    ) -> None:
        super().__init__(
            f"revision {requested_revision} has been compacted "
            f"(compacted through {compact_revision}, current revision {current_revision})"
        )
        self.requested_revision = requested_revision
        self.compact_revision = compact_revision
        self.current_revision = current_revision


class FutureRevisionError(StorageError):
    """A read or compaction at a revision the store has not reached yet."""

    def __init__(self, requested_revision: int, current_revision: int) -> None:
        super().__init__(
            f"revision {requested_revision} is in the future (current revision {current_revision})"
        )
        self.requested_revision = requested_revision
        self.current_revision = current_revision


class WatchOverflowError(StorageError):
    """A watcher fell too far behind and was closed.

    Every event before ``next_revision`` was delivered; the watcher may watch
    again from ``next_revision`` (or re-list if that is compacted).
    """

    def __init__(self, prefix: str, next_revision: int, queue_size: int) -> None:
        super().__init__(
            f"watch on {prefix!r} closed: more than {queue_size} events undelivered; "
            f"resume from revision {next_revision}"
        )
        self.prefix = prefix
        self.next_revision = next_revision
        self.queue_size = queue_size


class StorageClosedError(StorageError):
    """A call on a store after close() began."""


class StorageOpenError(StorageError):
    """The store cannot be opened (unreadable, corrupt, newer schema, in use, bad URL).

    The message names the file or URL; nothing on disk was changed.
    """


# The watch stream type: an async generator, so ``contextlib.aclosing`` and
# ``aclose()`` end a watch deterministically (also an AsyncIterator).
WatchStream = AsyncGenerator[WatchEvent, None]


@runtime_checkable
class Storage(Protocol):
    """An etcd-shaped, revisioned key-value store (see the module docstring).

    All methods are coroutines bound to the event loop the store was opened
    on. Writes are linearizable: when a write returns, it is durable, later
    reads see it, and its revision is greater than every revision returned
    before. A write whose caller was cancelled may or may not have happened
    (as with etcd): read the key to find out. After ``close()`` every method
    raises :class:`StorageClosedError`.
    """

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        """The key's version at ``revision`` (0: now), or None if it did not exist then.

        Raises CompactedError if ``revision`` is below the compacted revision,
        FutureRevisionError if it is above the current revision.
        """
        ...

    async def range(
        self,
        prefix: str,
        *,
        start_after: str = "",
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
    ) -> RangeResult:
        """Keys under ``prefix`` in key order, at ``revision`` (0: now).

        Only keys greater than ``start_after`` are returned, at most ``limit``
        of them (0: all). To page consistently, pass the first page's
        ``RangeResult.revision`` as ``revision`` and its last key as
        ``start_after``. ``keys_only`` returns every value as ``b""``.
        Raises CompactedError / FutureRevisionError as ``get`` does, and
        ValueError for a negative limit or revision.
        """
        ...

    async def count(self, prefix: str) -> int:
        """How many keys exist under ``prefix`` now."""
        ...

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Create ``key`` if it does not exist (create-if-absent).

        Returns the new version (create_revision == mod_revision == the new
        revision). Raises KeyExistsError if the key exists; nothing is written.
        """
        ...

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        """Replace ``key``'s value if its mod_revision is ``expected_revision``.

        ``expected_revision=0`` updates unconditionally. Returns the new
        version (same create_revision, mod_revision = the new revision); every
        update makes a revision, even with an unchanged value. Raises
        KeyNotFoundError if the key does not exist, ConflictError (with the
        current version) if its mod_revision differs; nothing is written.
        """
        ...

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        """Delete ``key`` if its mod_revision is ``expected_revision`` (0: unconditionally).

        Returns the deleted version with mod_revision set to the deletion's
        revision (its value is the last value). Raises KeyNotFoundError /
        ConflictError as ``update`` does; nothing is written then.
        """
        ...

    def watch(self, prefix: str, *, start_revision: int) -> WatchStream:
        """Every write under ``prefix`` with revision >= ``start_revision``, in order.

        ``start_revision=0`` means "from now": writes after the revision
        current when ``watch()`` is called (not when iteration starts). Events
        come in strictly increasing revision order with no gaps and no
        duplicates: first the stored history, then live writes. A
        ``start_revision`` in the future waits for it.

        Raised from the iteration: CompactedError if ``start_revision`` is at
        or below the compacted revision (the history is gone: re-list);
        WatchOverflowError if the consumer fell too far behind (every event
        before its ``next_revision`` was delivered). The stream ends normally
        when the store is closed. Close it with ``aclose()`` (or
        ``contextlib.aclosing``) to stop watching.
        """
        ...

    async def current_revision(self) -> int:
        """The revision of the last acknowledged write (0 for an empty store)."""
        ...

    async def compact(self, revision: int) -> None:
        """Drop history before ``revision``: reads below it and watches from at or
        below it raise CompactedError afterwards; reads at or after it are unchanged.

        Idempotent: compacting at or below the compacted revision does nothing.
        Raises FutureRevisionError above the current revision.
        """
        ...

    async def close(self) -> None:
        """Finish acknowledged work, end every watch, release the files. Idempotent."""
        ...
