"""The watch cache: one storage watch per resource, fanned out in memory.

As in Kubernetes' cacher, each resource has one ``WatchCache``: it lists the
resource once, then follows one storage watch, keeping

- the current objects (by key, with a namespace index), decoded once;
- a bounded window of recent events, so a watcher can resume from a recent
  resourceVersion without touching storage;
- the watchers, indexed by namespace and, for pods, by ``spec.nodeName``
  (every kubelet watches its own pods: an event reaches only the watchers
  that can match it).

An object's JSON is encoded at most once per version and shared by every
watcher and list that sends it (``CachedObject.json``).

Delivery: an event reaches all its watchers in the loop tick that applies it.
A watcher whose stream can take bytes directly (a JSON watch served over
HTTP/1.1, see ``rest.py``) has a *sink*: while its queue is empty, ``offer``
hands the event to the sink, which writes it to the connection at once — no
task wakes up per watcher. The bytes written are built once per event and
encoding and shared by every such watcher (the ``shared`` dict of one
dispatch), and watchers with the same selectors share one match decision.
Anything queued (initial events, a bookmark tick) goes through the queue
first, so order is kept.

Slow consumers: each watcher has a bounded queue (``WATCHER_QUEUE``). A
watcher that falls that far behind is closed — its stream ends — and the
client resumes from the last resourceVersion it saw, or re-lists on 410, as
client-go's reflector does and as Kubernetes' cacher forces. One slow client
never holds back the others or grows memory without bound. A sink refuses an
event when its connection already holds too many unsent bytes (the sink's own
bound, ``rest.py``), and the watcher is closed the same way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from pilothouse.api.kinds import Kind
from pilothouse.api.serialization import (
    Object,
    decode_value,
    dumps,
    encode_value,
    object_to_dict,
)
from pilothouse.storage.interface import (
    CompactedError,
    EventType,
    KeyValue,
    Storage,
    StorageClosedError,
    WatchOverflowError,
)

log = logging.getLogger("pilothouse.apiserver.watchcache")

WATCHER_QUEUE = 1000  # events a watcher may lag behind before it is closed
EVENT_WINDOW = 10_000  # recent events kept for resuming watches


class CachedObject:
    """One version of one object, shared read-only by lists and watchers.

    ``obj`` must never be mutated: callers that change an object copy it first.
    """

    __slots__ = ("_json", "_protobuf", "fields", "key", "kind", "labels", "name", "namespace",
                 "node_name", "obj", "rv")

    def __init__(self, kind: Kind, key: str, obj: Object, rv: int,
                 fields: dict[str, str]) -> None:
        self.kind = kind
        self.key = key
        self.obj = obj
        self.rv = rv
        self.fields = fields
        self.namespace = fields.get("metadata.namespace", "")
        self.name = fields.get("metadata.name", "")
        self.node_name = fields.get("spec.nodeName", "")
        self.labels = labels_of(obj)
        self._json: bytes | None = None
        self._protobuf: bytes | None = None

    def json(self) -> bytes:
        """The object's JSON document, encoded once."""
        if self._json is None:
            self._json = dumps(object_to_dict(self.kind, self.obj))
        return self._json

    def protobuf(self) -> bytes:
        """The object's Kubernetes protobuf frame (with its resourceVersion), encoded once;
        for a custom resource, its JSON (the same bytes ``encode_value`` stores)."""
        if self._protobuf is None:
            self._protobuf = encode_value(self.kind, self.obj)
        return self._protobuf

    def document(self) -> dict[str, Any]:
        """A private copy of the JSON document (parsing the cached JSON is several
        times faster than converting the message again)."""
        doc: dict[str, Any] = json.loads(self.json())
        return doc


def labels_of(obj: Object) -> dict[str, str]:
    if isinstance(obj, Message):
        return dict(obj.metadata.labels)  # type: ignore[attr-defined]
    return dict((obj.get("metadata") or {}).get("labels") or {})


def set_resource_version(obj: Object, rv: int) -> None:
    if isinstance(obj, Message):
        obj.metadata.resourceVersion = str(rv)  # type: ignore[attr-defined]
    else:
        obj.setdefault("metadata", {})["resourceVersion"] = str(rv)


@dataclass(slots=True)
class CacheEvent:
    """ADDED / MODIFIED / DELETED of one object at ``rv``; ``prev`` is the version before."""

    type: str
    obj: CachedObject
    prev: CachedObject | None
    rv: int


# Put into a watcher's queue by its own timer (deadline, bookmark): not an event.
TICK: Any = object()

# A watcher's filter: does this object (labels, fields) match?
Matcher = Callable[[CachedObject], bool]

# A watcher's direct delivery (see the module docstring): writes the event, or
# returns False when it cannot (slow or gone client: the watcher is closed).
# ``shared`` lives for one dispatch: bytes built for one watcher are kept there
# (under a key naming their encoding) for the next.
Sink = Callable[[CacheEvent, dict[Hashable, Any]], bool]


@dataclass(eq=False)
class Watcher:
    """One client's watch: a bounded queue of events the cache pushes into."""

    namespace: str  # "" = all namespaces
    matches: Matcher
    node_name: str | None = None  # set when the watch selects spec.nodeName=X (pods)
    min_rv: int = 0  # deliver only events with rv > min_rv
    queue: asyncio.Queue[CacheEvent | None] = field(
        default_factory=lambda: asyncio.Queue(WATCHER_QUEUE))
    closed: bool = False
    overflowed: bool = False
    sink: Sink | None = None
    # Watchers with equal filter keys have equal ``matches`` (same selectors):
    # one dispatch decides a match once per key. None: not shared.
    filter_key: Hashable | None = None

    def _match(self, obj: CachedObject, shared: dict[Hashable, Any] | None) -> bool:
        if shared is None or self.filter_key is None:
            return self.matches(obj)
        memo = ("match", self.filter_key, id(obj))
        found = shared.get(memo)
        if found is None:
            found = shared[memo] = self.matches(obj)
        return bool(found)

    def offer(self, event: CacheEvent, shared: dict[Hashable, Any] | None = None) -> None:
        if self.closed or event.rv <= self.min_rv:
            return
        now = self._match(event.obj, shared) if event.type != "DELETED" else False
        before = event.prev is not None and self._match(event.prev, shared)
        if event.type == "DELETED":
            before = self._match(event.obj, shared)
        if now and before:
            kind = "MODIFIED"
        elif now:
            kind = "ADDED"
        elif before:
            kind = "DELETED"
        else:
            return
        out = event if kind == event.type else CacheEvent(kind, event.obj, event.prev, event.rv)
        if self.sink is not None and self.queue.empty():
            if not self.sink(out, {} if shared is None else shared):
                self.overflowed = True  # the slow-consumer policy, as below
                self.close()
            return
        try:
            self.queue.put_nowait(out)
        except asyncio.QueueFull:
            # The slow-consumer policy (module docstring): close, client resumes.
            self.overflowed = True
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)
        if self.queue.full() and self.queue.qsize():
            # Make room for the end-of-stream marker.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class TooOldResourceVersion(Exception):
    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class WatchCache:
    """The cached state and watchers of one resource (see the module docstring)."""

    def __init__(
        self,
        kind: Kind,
        storage: Storage,
        field_set: Callable[[Object], dict[str, str]],
        *,
        window: int = EVENT_WINDOW,
    ) -> None:
        self.kind = kind
        self.storage = storage
        self.field_set = field_set
        self.prefix = kind.storage_prefix()
        self.objects: dict[str, CachedObject] = {}
        self.by_namespace: dict[str, dict[str, CachedObject]] = collections.defaultdict(dict)
        self.events: collections.deque[CacheEvent] = collections.deque(maxlen=window)
        self.revision = 0
        # Watches may resume from any revision >= floor (events after it are all kept).
        self.floor = 0
        self.watchers_by_ns: dict[str, set[Watcher]] = collections.defaultdict(set)
        self.watchers_by_node: dict[str, set[Watcher]] = collections.defaultdict(set)
        self.ready = asyncio.Event()
        # (revision, future): resolved once the cache has applied that revision.
        self._revision_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """List the resource and start following it; returns once the cache is ready."""
        await self._load()
        self._task = asyncio.create_task(self._follow(), name=f"watchcache:{self.prefix}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for watchers in list(self.watchers_by_ns.values()) + list(self.watchers_by_node.values()):
            for w in list(watchers):
                w.close()
        for _, waiter in self._revision_waiters:
            if not waiter.done():
                waiter.cancel()
        self._revision_waiters.clear()

    async def _load(self) -> None:
        self.objects.clear()
        self.by_namespace.clear()
        start_after, revision = "", 0
        while True:
            page = await self.storage.range(self.prefix, start_after=start_after, limit=1000,
                                            revision=revision)
            revision = page.revision
            for kv in page.kvs:
                cached = self._decode(kv)
                if cached is not None:
                    self._store(cached)
            if not page.more or not page.kvs:
                break
            start_after = page.kvs[-1].key
        self.revision = revision
        self.floor = revision
        self.events.clear()
        self.ready.set()
        self._wake_revision_waiters()

    async def _follow(self) -> None:
        while True:
            try:
                async with contextlib.aclosing(
                    self.storage.watch(self.prefix, start_revision=self.revision + 1)
                ) as stream:
                    async for ev in stream:
                        self._apply(ev.type, ev.kv, ev.prev_kv)
                return  # the store closed
            except (CompactedError, WatchOverflowError) as exc:
                log.warning("watch cache %s relisting: %s", self.prefix, exc)
                # Objects may have changed unseen: relist, and close every watcher
                # (they cannot be told what they missed; they resume or relist).
                for watcher in self._all_watchers():
                    watcher.close()
                await self._load()
            except StorageClosedError:
                return

    # -- state ---------------------------------------------------------------

    def _decode(self, kv: KeyValue) -> CachedObject | None:
        try:
            obj = decode_value(self.kind, kv.value)
        except ValueError as exc:
            log.error("undecodable object at %s (revision %d): %s", kv.key, kv.mod_revision, exc)
            return None
        set_resource_version(obj, kv.mod_revision)
        return CachedObject(self.kind, kv.key, obj, kv.mod_revision, self.field_set(obj))

    def _store(self, cached: CachedObject) -> None:
        self.objects[cached.key] = cached
        self.by_namespace[cached.namespace][cached.key] = cached

    def _apply(self, type_: EventType, kv: KeyValue, prev_kv: KeyValue | None) -> None:
        prev = self.objects.get(kv.key)
        if type_ is EventType.DELETE:
            if prev is None:
                self.revision = kv.mod_revision
                self._wake_revision_waiters()
                return
            del self.objects[kv.key]
            self.by_namespace[prev.namespace].pop(kv.key, None)
            # The DELETED event carries the last state, at the deletion's revision.
            gone = self._decode(KeyValue(kv.key, kv.value, kv.create_revision, kv.mod_revision))
            event = CacheEvent("DELETED", gone or prev, prev, kv.mod_revision)
        else:
            cached = self._decode(kv)
            if cached is None:
                self.revision = kv.mod_revision
                self._wake_revision_waiters()
                return
            self._store(cached)
            event = CacheEvent("MODIFIED" if prev is not None else "ADDED", cached, prev,
                               kv.mod_revision)
        if len(self.events) == self.events.maxlen:
            self.floor = self.events[0].rv
        self.events.append(event)
        self.revision = kv.mod_revision
        self._dispatch(event)
        self._wake_revision_waiters()

    def _dispatch(self, event: CacheEvent) -> None:
        ns = event.obj.namespace
        targets: set[Watcher] = set()
        targets |= self.watchers_by_ns.get("", set())
        if ns:
            targets |= self.watchers_by_ns.get(ns, set())
        for node in {event.obj.node_name, event.prev.node_name if event.prev else ""}:
            targets |= self.watchers_by_node.get(node, set())
        shared: dict[Hashable, Any] = {}
        for watcher in targets:
            watcher.offer(event, shared)
            if watcher.closed:
                self.remove_watcher(watcher)

    def _all_watchers(self) -> Iterable[Watcher]:
        seen: set[Watcher] = set()
        for group in (*self.watchers_by_ns.values(), *self.watchers_by_node.values()):
            seen |= group
        return seen

    def _wake_revision_waiters(self) -> None:
        if not self._revision_waiters:
            return
        waiting = []
        for rv, waiter in self._revision_waiters:
            if rv <= self.revision:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((rv, waiter))
        self._revision_waiters = waiting

    async def wait_for_revision(self, revision: int, within: float) -> bool:
        """Wait until the cache has applied ``revision`` (an event of this resource
        at that revision, or a later one); False if ``within`` seconds pass first."""
        if self.revision >= revision:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._revision_waiters.append((revision, waiter))
        try:
            await asyncio.wait_for(waiter, within)
        except TimeoutError:
            return False
        finally:
            self._revision_waiters = [(r, w) for r, w in self._revision_waiters
                                      if w is not waiter]
        return True

    # -- reads ---------------------------------------------------------------

    def list(self, namespace: str = "", matches: Matcher | None = None) -> list[CachedObject]:
        """Current objects (of one namespace, or all), sorted by key, filtered."""
        source = self.by_namespace.get(namespace, {}) if namespace else self.objects
        items = sorted(source.values(), key=lambda c: c.key)
        if matches is not None:
            items = [c for c in items if matches(c)]
        return items

    def get(self, key: str) -> CachedObject | None:
        return self.objects.get(key)

    def watch(
        self,
        *,
        namespace: str,
        matches: Matcher,
        resource_version: int | None,
        node_name: str | None = None,
        initial_events: bool = False,
        filter_key: Hashable | None = None,
    ) -> Watcher:
        """Register a watcher.

        ``resource_version`` None: start now; with ``initial_events`` the
        watcher first gets an ADDED event for every current matching object.
        A number: events after that revision (``TooOldResourceVersion`` when
        it is older than the kept window). ``filter_key``: equal for watchers
        whose ``matches`` are equal (see ``Watcher.filter_key``).
        """
        watcher = Watcher(namespace=namespace, matches=matches, node_name=node_name,
                          filter_key=filter_key)
        if resource_version is None or initial_events:
            current = self.list(namespace)
            start = self.revision if resource_version is None else resource_version
            if initial_events:
                for cached in current:
                    if matches(cached) and (node_name is None or cached.node_name == node_name):
                        ev = CacheEvent("ADDED", cached, None, cached.rv)
                        if watcher.queue.full():
                            watcher.close()
                            break
                        watcher.queue.put_nowait(ev)
            watcher.min_rv = self.revision if resource_version is None else start
        else:
            if resource_version < self.floor:
                raise TooOldResourceVersion(resource_version, self.floor)
            watcher.min_rv = resource_version
            for event in self.events:
                if event.rv > resource_version:
                    watcher.offer(event)
        if not watcher.closed:
            if node_name is not None:
                self.watchers_by_node[node_name].add(watcher)
            else:
                self.watchers_by_ns[namespace].add(watcher)
        return watcher

    def remove_watcher(self, watcher: Watcher) -> None:
        watcher.close()
        if watcher.node_name is not None:
            self.watchers_by_node.get(watcher.node_name, set()).discard(watcher)
        else:
            self.watchers_by_ns.get(watcher.namespace, set()).discard(watcher)

    def watcher_count(self) -> int:
        return sum(len(w) for w in self.watchers_by_ns.values()) + sum(
            len(w) for w in self.watchers_by_node.values())
