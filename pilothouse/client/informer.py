"""Informers: a watched, indexed local cache of one kind, and handlers on its changes.

This is client-go's reflector + indexer + shared informer, on asyncio:

- **Reflector** (``Informer.run``): list (in pages), replace the cache, then
  watch from the list's resourceVersion. Every event (bookmarks included)
  advances the last seen resourceVersion. When the watch ends or the
  connection breaks, it watches again from there (after a back-off if it
  failed); when the server says 410 Gone, it lists again. A relist diffs the
  new list against the cache: objects that vanished while we were not
  watching are delivered to ``on_delete`` as ``DeletedFinalStateUnknown``
  tombstones carrying their last known state.
- **Indexer**: objects by ``namespace/name`` key (``name`` for cluster-scoped
  kinds), plus named indices — ``namespace`` always, ``spec.nodeName`` for
  Pods, and any ``add_indexer(name, fn)``.
- **Handlers** (``add_event_handler``): plain functions called in event order
  on the informer's task, after the cache reflects the change. They must
  only enqueue (a key into a ``WorkQueue``) and return: a handler that blocks
  stalls the informer; one that raises stops it (the error escalates out of
  ``run``). A handler added late first gets ``on_add`` for every cached object.
- **Resync** (``resync_period``): every period, ``on_update(obj, obj)`` for
  every cached object, so level-triggered controllers re-check everything.

**Objects in the cache are shared and must not be mutated.** Every
``get``/``list``/``by_index`` result and every handler argument is the cached
instance; mutating it corrupts the cache for everyone. Copy first
(``copy_object(obj)``) and write the copy.

``SharedInformerFactory`` hands out one informer per kind (and selectors),
starts them together, and waits for all to sync.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from google.protobuf.message import Message

from pilothouse.api.kinds import Kind
from pilothouse.api.selectors import LabelSelector
from pilothouse.client.client import Client
from pilothouse.client.clock import AsyncClock, real_clock
from pilothouse.client.errors import APIError, ClientError

__all__ = [
    "NAMESPACE_INDEX",
    "NODE_NAME_INDEX",
    "DeletedFinalStateUnknown",
    "EventHandler",
    "Indexer",
    "Informer",
    "SharedInformerFactory",
    "copy_object",
    "meta_namespace_key",
    "object_of",
    "split_key",
]

M = TypeVar("M", bound=Message)
IndexFunc = Callable[[Any], Iterable[str]]

NAMESPACE_INDEX = "namespace"
NODE_NAME_INDEX = "spec.nodeName"

log = logging.getLogger("pilothouse.client.informer")

# Reflector timings, as client-go's: watches last 5-10 minutes; failures back
# off 0.8 s doubling to 30 s.
MIN_WATCH_TIMEOUT = 300
BACKOFF_INITIAL = 0.8
BACKOFF_MAX = 30.0
LIST_PAGE_SIZE = 500


def meta_namespace_key(obj: Any) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects (client-go's key)."""
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else str(meta.name)


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) of a key; namespace is "" for cluster-scoped keys."""
    namespace, sep, name = key.partition("/")
    if not sep:
        return "", namespace
    if not namespace or not name or "/" in name:
        raise ValueError(f"unexpected key format: {key!r}")
    return namespace, name


def copy_object(obj: M) -> M:
    """A deep copy of a (cached) object, safe to mutate and write back."""
    new = type(obj)()
    new.CopyFrom(obj)
    return new


@dataclass(frozen=True, slots=True)
class DeletedFinalStateUnknown(Generic[M]):
    """An object deleted while the informer was not watching; ``obj`` is its last
    known state (possibly stale). Handlers' ``on_delete`` may receive this."""

    key: str
    obj: M


def object_of(obj_or_tombstone: Any) -> Any:
    """The object inside a tombstone, or the object itself."""
    if isinstance(obj_or_tombstone, DeletedFinalStateUnknown):
        return obj_or_tombstone.obj
    return obj_or_tombstone


def _namespace_index(obj: Any) -> builtins.list[str]:
    return [obj.metadata.namespace]


def _node_name_index(obj: Any) -> builtins.list[str]:
    return [obj.spec.nodeName]


class Indexer(Generic[M]):
    """Objects by key, plus named indices (index name -> value -> keys)."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, M] = {}
        self._funcs: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        for name, fn in (indexers or {}).items():
            self.add_indexer(name, fn)

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        """Add an index; existing objects are indexed at once."""
        if name in self._funcs:
            raise ValueError(f"indexer {name!r} already exists")
        self._funcs[name] = fn
        index: dict[str, set[str]] = {}
        self._indices[name] = index
        for key, obj in self._items.items():
            for value in fn(obj):
                index.setdefault(value, set()).add(key)

    @property
    def index_names(self) -> builtins.list[str]:
        return list(self._funcs)

    def get(self, key: str) -> M | None:
        return self._items.get(key)

    def list(self) -> builtins.list[M]:
        return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def by_index(self, name: str, value: str) -> builtins.list[M]:
        """Objects whose index ``name`` yields ``value``."""
        return [self._items[k] for k in self.index_keys(name, value)]

    def index_keys(self, name: str, value: str) -> builtins.list[str]:
        index = self._indices.get(name)
        if index is None:
            raise KeyError(f"no indexer named {name!r} (have {sorted(self._funcs)})")
        return sorted(index.get(value, ()))

    def index_values(self, name: str) -> builtins.list[str]:
        index = self._indices.get(name)
        if index is None:
            raise KeyError(f"no indexer named {name!r} (have {sorted(self._funcs)})")
        return [v for v, keys in index.items() if keys]

    def upsert(self, key: str, obj: M) -> M | None:
        """Store ``obj`` under ``key``; the previous object, if any."""
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name, fn in self._funcs.items():
            index = self._indices[name]
            for value in fn(obj):
                index.setdefault(value, set()).add(key)
        return old

    def remove(self, key: str) -> M | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: str, obj: M) -> None:
        for name, fn in self._funcs.items():
            index = self._indices[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]


@dataclass(frozen=True, slots=True)
class EventHandler:
    """Callbacks for one consumer; any may be None."""

    on_add: Callable[[Any], None] | None = None
    on_update: Callable[[Any, Any], None] | None = None
    on_delete: Callable[[Any], None] | None = None


class Informer(Generic[M]):
    """A watched, indexed cache of one kind (see the module docstring).

    ``namespace=""`` watches all namespaces; selectors narrow what is cached.
    """

    def __init__(self, client: Client, cls: type[M], *, namespace: str = "",
                 label_selector: str = "", field_selector: str = "",
                 resync_period: float | None = None, clock: AsyncClock | None = None,
                 page_size: int = LIST_PAGE_SIZE, max_backoff: float = BACKOFF_MAX) -> None:
        self.client = client
        self.max_backoff = max_backoff
        self.cls = cls
        self.kind: Kind = client.kind_of(cls)
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.clock = clock or real_clock()
        self.page_size = page_size
        indexers: dict[str, IndexFunc] = {}
        if self.kind.namespaced:
            indexers[NAMESPACE_INDEX] = _namespace_index
        if self.kind.kind == "Pod" and not self.kind.group:
            indexers[NODE_NAME_INDEX] = _node_name_index
        self.indexer: Indexer[M] = Indexer(indexers)
        self._handlers: list[EventHandler] = []
        self._synced = asyncio.Event()
        self.last_sync_resource_version = ""
        self.relists = 0  # lists after the first (410 Gone), for tests and metrics
        self.running = False

    # -- configuration ------------------------------------------------------------

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        """Index cached objects by ``fn(obj)`` (an iterable of strings)."""
        self.indexer.add_indexer(name, fn)

    def add_event_handler(self, on_add: Callable[[M], None] | None = None,
                          on_update: Callable[[M, M], None] | None = None,
                          on_delete: Callable[[M | DeletedFinalStateUnknown[M]], None] |
                          None = None) -> EventHandler:
        """Register callbacks (they only enqueue; see the module docstring).

        Objects already cached are delivered to ``on_add`` now.
        """
        handler = EventHandler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if on_add is not None:
            for obj in self.indexer.list():
                on_add(obj)
        return handler

    def remove_event_handler(self, handler: EventHandler) -> None:
        self._handlers.remove(handler)

    # -- reading the cache -----------------------------------------------------------

    def has_synced(self) -> bool:
        """True once the first list is in the cache and its ``on_add``s were delivered."""
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    def get(self, name: str, namespace: str = "") -> M | None:
        """The cached object (shared: do not mutate), or None."""
        return self.indexer.get(f"{namespace}/{name}" if namespace else name)

    def get_by_key(self, key: str) -> M | None:
        return self.indexer.get(key)

    def list(self, namespace: str = "",
             label_selector: LabelSelector | None = None) -> builtins.list[M]:
        """Cached objects (shared: do not mutate), optionally of one namespace/selector."""
        items = (self.indexer.by_index(NAMESPACE_INDEX, namespace)
                 if namespace and self.kind.namespaced else self.indexer.list())
        if label_selector is not None:
            items = [o for o in items
                     if label_selector.matches(dict(o.metadata.labels))]  # type: ignore[attr-defined]
        return items

    def by_index(self, name: str, value: str) -> builtins.list[M]:
        return self.indexer.by_index(name, value)

    # -- dispatch -------------------------------------------------------------------

    def _added(self, obj: M) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                h.on_add(obj)

    def _updated(self, old: M, new: M) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                h.on_update(old, new)

    def _deleted(self, obj: M | DeletedFinalStateUnknown[M]) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                h.on_delete(obj)

    # -- the reflector --------------------------------------------------------------------

    async def run(self) -> None:
        """List and watch until cancelled. Errors talking to the server are retried
        with back-off; an exception from a handler escalates."""
        if self.running:
            raise RuntimeError(f"informer for {self.kind.resource} is already running")
        self.running = True
        tasks = [asyncio.create_task(self._reflect())]
        if self.resync_period:
            tasks.append(asyncio.create_task(self._resync_loop(self.resync_period)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            self.running = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _reflect(self) -> None:
        backoff = BACKOFF_INITIAL
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list_and_replace()
                    need_list = False
                    backoff = BACKOFF_INITIAL
                started = self.clock.monotonic()
                if await self._watch():
                    backoff = BACKOFF_INITIAL
                    continue  # the server ended the watch: resume from the last RV
                if self.clock.monotonic() - started >= 1.0:
                    continue  # a quiet watch that timed out
                # An empty watch that ended at once: do not spin on a sick server.
                log.warning("%s: watch ended at once; retrying in %.1fs", self.kind.resource,
                            backoff)
            except APIError as exc:
                if exc.is_gone():
                    log.info("%s: resourceVersion %s is gone, relisting", self.kind.resource,
                             self.last_sync_resource_version)
                    need_list = True
                    continue
                log.warning("%s: %s; retrying in %.1fs", self.kind.resource, exc, backoff)
            except ClientError as exc:  # APIConnectionError and friends
                log.warning("%s: %s; retrying in %.1fs", self.kind.resource, exc, backoff)
            await self.clock.sleep(backoff * random.uniform(1.0, 1.2))
            backoff = min(backoff * 2, self.max_backoff)

    async def _list_and_replace(self) -> None:
        listed = await self.client.list_all(
            self.cls, namespace=self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector, page_size=self.page_size)
        first = not self._synced.is_set()
        if not first:
            self.relists += 1
        seen: set[str] = set()
        for obj in listed.items:
            key = meta_namespace_key(obj)
            seen.add(key)
            old = self.indexer.upsert(key, obj)
            if old is None:
                self._added(obj)
            elif old.metadata.resourceVersion != obj.metadata.resourceVersion:  # type: ignore[attr-defined]
                self._updated(old, obj)
        for key in [k for k in self.indexer.keys() if k not in seen]:  # noqa: SIM118
            old = self.indexer.remove(key)
            if old is not None:
                self._deleted(DeletedFinalStateUnknown(key, old))
        self.last_sync_resource_version = listed.resource_version
        self._synced.set()

    async def _watch(self) -> bool:
        """One watch from the last RV; True if it delivered anything."""
        timeout = int(MIN_WATCH_TIMEOUT * random.uniform(1.0, 2.0))
        delivered = False
        async with self.client.watch(
                self.cls, namespace=self.namespace, label_selector=self.label_selector,
                field_selector=self.field_selector,
                resource_version=self.last_sync_resource_version, allow_bookmarks=True,
                timeout_seconds=timeout) as events:
            async for event in events:
                delivered = True
                obj = event.object
                rv = event.resource_version
                if event.type == "BOOKMARK":
                    if rv:
                        self.last_sync_resource_version = rv
                    continue
                key = meta_namespace_key(obj)
                if event.type == "DELETED":
                    old = self.indexer.remove(key)
                    self._deleted(obj)
                    del old
                else:
                    old = self.indexer.upsert(key, obj)
                    if old is None:
                        self._added(obj)
                    else:
                        self._updated(old, obj)
                if rv:
                    self.last_sync_resource_version = rv
        return delivered

    async def _resync_loop(self, period: float) -> None:
        while True:
            await self.clock.sleep(period)
            if not self._synced.is_set():
                continue
            for obj in self.indexer.list():
                self._updated(obj, obj)


@dataclass
class _Entry:
    informer: Informer[Any]
    task: asyncio.Task[None] | None = None


class SharedInformerFactory:
    """One informer per kind (and namespace/selectors) for a whole process.

    Components ask for informers while they are built, then ``start()`` them
    together and ``await wait_for_sync()`` before processing work:

        factory = SharedInformerFactory(client)
        pods = factory.informer_for(core_pb2.Pod)
        async with factory:               # start(); shutdown() on exit
            await factory.wait_for_sync()

    An informer that fails (a handler raised) makes ``wait_for_sync`` and
    ``shutdown`` raise its exception.
    """

    def __init__(self, client: Client, *, namespace: str = "",
                 resync_period: float | None = None, clock: AsyncClock | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.resync_period = resync_period
        self.clock = clock or real_clock()
        self._entries: dict[tuple[Any, ...], _Entry] = {}

    def informer_for(self, cls: type[M], *, label_selector: str = "",
                     field_selector: str = "",
                     resync_period: float | None = None) -> Informer[M]:
        """The informer for ``cls`` (made on first request; later requests share it)."""
        key = (cls, self.namespace, label_selector, field_selector)
        entry = self._entries.get(key)
        if entry is None:
            informer = Informer(self.client, cls, namespace=self.namespace,
                                label_selector=label_selector, field_selector=field_selector,
                                resync_period=resync_period or self.resync_period,
                                clock=self.clock)
            entry = _Entry(informer)
            self._entries[key] = entry
        return cast(Informer[M], entry.informer)

    @property
    def informers(self) -> builtins.list[Informer[Any]]:
        return [e.informer for e in self._entries.values()]

    def start(self) -> None:
        """Start every informer not yet started (call again after adding more)."""
        for entry in self._entries.values():
            if entry.task is None:
                entry.task = asyncio.create_task(
                    entry.informer.run(), name=f"informer:{entry.informer.kind.resource}")

    def _raise_failures(self) -> None:
        for entry in self._entries.values():
            task = entry.task
            if task is not None and task.done() and not task.cancelled():
                exc = task.exception()
                if exc is not None:
                    raise exc

    async def wait_for_sync(self) -> None:
        """Wait until every started informer has synced (bound it with ``asyncio.timeout``).

        Raises the exception of an informer that failed meanwhile.
        """
        for entry in list(self._entries.values()):
            if entry.task is None:
                continue
            sync = asyncio.ensure_future(entry.informer.wait_for_sync())
            try:
                await asyncio.wait([sync, entry.task], return_when=asyncio.FIRST_COMPLETED)
            finally:
                sync.cancel()
            self._raise_failures()

    async def shutdown(self) -> None:
        """Stop every informer and wait for them; re-raises an informer's failure."""
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            self._raise_failures()
        finally:
            for entry in self._entries.values():
                entry.task = None

    async def __aenter__(self) -> SharedInformerFactory:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.shutdown()
