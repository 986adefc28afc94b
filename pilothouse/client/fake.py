"""``FakeTransport``: an in-memory apiserver behind the ``Transport`` protocol.

For unit tests of anything built on ``Client`` (informers, controllers,
leader election, events). It keeps Kubernetes' observable rules, not its
implementation:

- one resourceVersion counter across all kinds (like etcd's revision);
- create refuses existing names (409 AlreadyExists); update and patch are
  conditional on ``metadata.resourceVersion`` when set (409 Conflict);
  ``status`` updates keep everything but ``status``; the main resource
  keeps the stored ``status`` (for kinds with a status subresource);
- a watch from a resourceVersion replays the kept events after it; older than
  the compaction floor (``compact``) is 410 Expired; ``""`` starts with ADDED
  events for the current objects;
- list supports label selectors, the ``metadata.name``/``metadata.namespace``/
  ``spec.nodeName`` field selectors, and ``limit``/``continue``;
- merge patches (and strategic ones, applied as merge patches: good enough
  for maps and scalars, not for lists of objects with merge keys).

Test hooks: ``actions`` (every call, in order), ``fail_next`` (inject an
error), ``disconnect_watches`` (break open watches), ``end_watches`` (the
server ends them cleanly), ``send_bookmark``, ``compact``.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message

from pilothouse.api.kinds import Kind, KindRegistry
from pilothouse.api.selectors import LabelSelector, SelectorError
from pilothouse.api.serialization import object_from_dict, object_to_dict
from pilothouse.client.errors import APIConnectionError, APIError
from pilothouse.client.transport import (
    DeleteOptions,
    KindIndex,
    ListOptions,
    ObjectList,
    PatchType,
    WatchEvent,
    WatchOptions,
)

__all__ = ["Action", "FakeTransport"]

_END = object()


@dataclass(frozen=True, slots=True)
class Action:
    """One call the fake served: verb, resource (plural), namespace, name, subresource."""

    verb: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""


@dataclass
class _Watch:
    kind: Kind
    namespace: str
    options: WatchOptions
    queue: asyncio.Queue[Any]


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _field_value(kind: Kind, obj: Any, path: str) -> str | None:
    if path == "metadata.name":
        return str(obj.metadata.name)
    if path == "metadata.namespace":
        return str(obj.metadata.namespace)
    if path == "spec.nodeName" and kind.kind == "Pod":
        return str(obj.spec.nodeName)
    if path == "status.phase" and kind.kind == "Pod":
        return str(obj.status.phase)
    return None


def _field_matcher(kind: Kind, text: str) -> list[tuple[str, str, bool]]:
    terms = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "!=" in part:
            key, value = part.split("!=", 1)
            terms.append((key.strip(), value.strip(), False))
        else:
            key, _, value = part.partition("==" if "==" in part else "=")
            terms.append((key.strip(), value.strip(), True))
    for key, _, _ in terms:
        if key not in ("metadata.name", "metadata.namespace") and not (
                kind.kind == "Pod" and key in ("spec.nodeName", "status.phase")):
            raise APIError(400, "BadRequest",
                           f'"{key}" is not a known field selector: only "metadata.name", '
                           '"metadata.namespace"')
    return terms


class FakeTransport:
    """An in-memory apiserver (see the module docstring). Use one event loop."""

    def __init__(self, kinds: KindRegistry | None = None) -> None:
        self.kinds = kinds or KindRegistry.builtin()
        self._index = KindIndex(self.kinds)
        self._rv = itertools.count(1)
        self.resource_version = 0
        self._objects: dict[str, dict[tuple[str, str], Message]] = {}
        self._events: dict[str, list[tuple[int, str, Message]]] = {}
        self._floor: dict[str, int] = {}
        self._watches: list[_Watch] = []
        self._failures: list[tuple[str, str, BaseException]] = []
        self.actions: list[Action] = []
        self.closed = False

    # -- test hooks -------------------------------------------------------------

    def fail_next(self, verb: str, error: BaseException, resource: str = "") -> None:
        """The next ``verb`` call (on ``resource`` if given) raises ``error``."""
        self._failures.append((verb, resource, error))

    def disconnect_watches(self) -> None:
        """Break every open watch: their streams raise ``APIConnectionError``."""
        for watch in self._watches:
            watch.queue.put_nowait(APIConnectionError("connection reset by the fake"))

    def end_watches(self) -> None:
        """End every open watch cleanly, as a server timeout does."""
        for watch in self._watches:
            watch.queue.put_nowait(_END)

    def send_bookmark(self, kind: Kind | type[Message]) -> None:
        """A BOOKMARK at the current resourceVersion to every watch of ``kind``."""
        kind = kind if isinstance(kind, Kind) else self._index.for_message(kind)
        obj = kind.new()
        obj.metadata.resourceVersion = str(self.resource_version)  # type: ignore[attr-defined]
        for watch in self._watches:
            if watch.kind == kind and watch.options.allow_bookmarks:
                watch.queue.put_nowait(WatchEvent("BOOKMARK", obj))

    def compact(self, revision: int | None = None) -> None:
        """Forget events at or before ``revision`` (default: all); older watches get 410."""
        floor = self.resource_version if revision is None else revision
        for key, events in self._events.items():
            self._events[key] = [e for e in events if e[0] > floor]
            self._floor[key] = max(self._floor.get(key, 0), floor)

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def objects(self, kind: Kind | type[Message]) -> list[Message]:
        """Copies of every stored object of ``kind`` (for assertions)."""
        kind = kind if isinstance(kind, Kind) else self._index.for_message(kind)
        return [_copy(o) for o in self._objects.get(_key(kind), {}).values()]

    # -- internals ------------------------------------------------------------------

    async def _record(self, verb: str, kind: Kind, namespace: str = "", name: str = "",
                      subresource: str = "") -> None:
        # One trip through the event loop, as a network call would take: concurrent
        # callers interleave (two read-modify-writes can race, as they do for real).
        await asyncio.sleep(0)
        self.actions.append(Action(verb, kind.plural, namespace, name, subresource))
        for i, (fverb, resource, error) in enumerate(self._failures):
            if fverb == verb and resource in ("", kind.plural):
                del self._failures[i]
                raise error

    def _store(self, kind: Kind) -> dict[tuple[str, str], Message]:
        return self._objects.setdefault(_key(kind), {})

    def _not_found(self, kind: Kind, name: str) -> APIError:
        return APIError(404, "NotFound", f'{kind.resource} "{name}" not found',
                        {"name": name, "kind": kind.plural, "group": kind.group})

    def _next_rv(self) -> int:
        self.resource_version = next(self._rv)
        return self.resource_version

    def _emit(self, kind: Kind, etype: str, obj: Message) -> None:
        rv = int(obj.metadata.resourceVersion)  # type: ignore[attr-defined]
        self._events.setdefault(_key(kind), []).append((rv, etype, _copy(obj)))
        for watch in self._watches:
            if watch.kind == kind and self._matches(watch.kind, watch.namespace, obj,
                                                    watch.options.label_selector,
                                                    watch.options.field_selector):
                watch.queue.put_nowait(WatchEvent(etype, _copy(obj)))

    def _matches(self, kind: Kind, namespace: str, obj: Any, label_selector: str,
                 field_selector: str) -> bool:
        if namespace and obj.metadata.namespace != namespace:
            return False
        if label_selector:
            try:
                selector = LabelSelector.parse(label_selector)
            except SelectorError as exc:
                raise APIError(400, "BadRequest", str(exc)) from None
            if not selector.matches(dict(obj.metadata.labels)):
                return False
        if field_selector:
            for key, value, equal in _field_matcher(kind, field_selector):
                if (_field_value(kind, obj, key) == value) != equal:
                    return False
        return True

    # -- verbs ----------------------------------------------------------------------

    async def get(self, kind: Kind, namespace: str, name: str, *,
                  subresource: str = "") -> Message:
        await self._record("get", kind, namespace, name, subresource)
        obj = self._store(kind).get((namespace, name))
        if obj is None:
            raise self._not_found(kind, name)
        return _copy(obj)

    async def list(self, kind: Kind, namespace: str, options: ListOptions) -> ObjectList[Message]:
        await self._record("list", kind, namespace)
        items = sorted(
            (o for o in self._store(kind).values()
             if self._matches(kind, namespace, o, options.label_selector,
                              options.field_selector)),
            key=lambda o: (o.metadata.namespace, o.metadata.name))  # type: ignore[attr-defined]
        start = int(options.continue_token or 0)
        rv = str(self.resource_version)
        if options.limit and start + options.limit < len(items):
            page = items[start:start + options.limit]
            rest = len(items) - start - options.limit
            return ObjectList([_copy(o) for o in page], rv, str(start + options.limit), rest)
        return ObjectList([_copy(o) for o in items[start:]], rv)

    async def create(self, kind: Kind, namespace: str, obj: Message, *, name: str = "",
                     subresource: str = "", dry_run: bool = False) -> Message | None:
        await self._record("create", kind, namespace, name or obj.metadata.name,  # type: ignore[attr-defined]
                     subresource)
        if subresource == "binding":
            pod = self._store(kind).get((namespace, name))
            if pod is None:
                raise self._not_found(kind, name)
            if pod.spec.nodeName:  # type: ignore[attr-defined]
                raise APIError(409, "Conflict", f'pod {name} is already assigned to node '
                               f'"{pod.spec.nodeName}"')  # type: ignore[attr-defined]
            pod.spec.nodeName = obj.target.name  # type: ignore[attr-defined]
            pod.metadata.resourceVersion = str(self._next_rv())  # type: ignore[attr-defined]
            self._emit(kind, "MODIFIED", pod)
            return None
        if subresource:
            raise APIError(405, "MethodNotAllowed", f"the fake does not serve {subresource}")
        new = _copy(obj)
        meta = new.metadata  # type: ignore[attr-defined]
        if not meta.name and meta.generateName:
            meta.name = meta.generateName + uuid.uuid4().hex[:5]
        if not meta.name:
            raise APIError(422, "Invalid", f"{kind.kind} is invalid: metadata.name: Required "
                           "value: name or generateName is required")
        key = (namespace, meta.name)
        if key in self._store(kind):
            raise APIError(409, "AlreadyExists",
                           f'{kind.resource} "{meta.name}" already exists',
                           {"name": meta.name, "kind": kind.plural})
        if dry_run:
            return new
        meta.namespace = namespace
        meta.uid = str(uuid.uuid4())
        meta.resourceVersion = str(self._next_rv())
        meta.creationTimestamp.seconds = int(datetime.now(UTC).timestamp())
        meta.generation = 1
        self._store(kind)[key] = new
        self._emit(kind, "ADDED", new)
        return _copy(new)

    async def update(self, kind: Kind, namespace: str, name: str, obj: Message, *,
                     subresource: str = "", dry_run: bool = False) -> Message:
        await self._record("update", kind, namespace, name, subresource)
        current = self._store(kind).get((namespace, name))
        if current is None:
            raise self._not_found(kind, name)
        rv = obj.metadata.resourceVersion  # type: ignore[attr-defined]
        if rv and rv != current.metadata.resourceVersion:  # type: ignore[attr-defined]
            raise APIError(409, "Conflict", f'Operation cannot be fulfilled on {kind.resource} '
                           f'"{name}": the object has been modified; please apply your changes '
                           "to the latest version and try again")
        return self._replace(kind, current, obj, subresource, dry_run)

    def _replace(self, kind: Kind, current: Message, obj: Message, subresource: str,
                 dry_run: bool) -> Message:
        new = _copy(current)
        has_status = "status" in kind.subresources and hasattr(new, "status")
        if subresource == "status":
            new.status.CopyFrom(obj.status)  # type: ignore[attr-defined]
        else:
            new.CopyFrom(obj)
            if has_status:
                new.status.CopyFrom(current.status)  # type: ignore[attr-defined]
            meta, old = new.metadata, current.metadata  # type: ignore[attr-defined]
            meta.uid, meta.creationTimestamp.seconds = old.uid, old.creationTimestamp.seconds
            meta.namespace, meta.name = old.namespace, old.name
            meta.generation = old.generation
            if hasattr(new, "spec") and new.spec != current.spec:  # type: ignore[attr-defined]
                meta.generation = old.generation + 1
        if new == current:  # a no-op write keeps the resourceVersion, as Kubernetes does
            return _copy(current)
        if dry_run:
            return new
        new.metadata.resourceVersion = str(self._next_rv())  # type: ignore[attr-defined]
        self._store(kind)[(new.metadata.namespace, new.metadata.name)] = new  # type: ignore[attr-defined]
        self._emit(kind, "MODIFIED", new)
        return _copy(new)

    async def patch(self, kind: Kind, namespace: str, name: str, patch: bytes,
                    patch_type: PatchType, *, subresource: str = "",
                    dry_run: bool = False) -> Message:
        await self._record("patch", kind, namespace, name, subresource)
        current = self._store(kind).get((namespace, name))
        if current is None:
            raise self._not_found(kind, name)
        if patch_type == "json":
            raise APIError(415, "UnsupportedMediaType", "the fake serves merge patches only")
        try:
            doc = json.loads(patch)
        except ValueError as exc:
            raise APIError(400, "BadRequest", f"error decoding patch: {exc}") from None
        merged = _merge(object_to_dict(kind, current), doc)
        rv = (merged.get("metadata") or {}).get("resourceVersion")
        if rv and rv != current.metadata.resourceVersion:  # type: ignore[attr-defined]
            raise APIError(409, "Conflict", f'Operation cannot be fulfilled on {kind.resource} '
                           f'"{name}": the object has been modified')
        new = object_from_dict(kind, merged, strict=False)
        return self._replace(kind, current, new, subresource, dry_run)

    async def delete(self, kind: Kind, namespace: str, name: str,
                     options: DeleteOptions) -> Message | None:
        await self._record("delete", kind, namespace, name)
        store = self._store(kind)
        current = store.get((namespace, name))
        if current is None:
            raise self._not_found(kind, name)
        meta = current.metadata  # type: ignore[attr-defined]
        if options.precondition_uid and options.precondition_uid != meta.uid:
            raise APIError(409, "Conflict", "Precondition failed: UID in precondition: "
                           f"{options.precondition_uid}, UID in object meta: {meta.uid}")
        if options.precondition_resource_version and \
                options.precondition_resource_version != meta.resourceVersion:
            raise APIError(409, "Conflict", "Precondition failed: ResourceVersion in "
                           "precondition does not match")
        if options.dry_run:
            return _copy(current)
        del store[(namespace, name)]
        gone = _copy(current)
        gone.metadata.resourceVersion = str(self._next_rv())  # type: ignore[attr-defined]
        self._emit(kind, "DELETED", gone)
        return _copy(gone)

    async def watch(self, kind: Kind, namespace: str,
                    options: WatchOptions) -> AsyncGenerator[WatchEvent[Message], None]:
        await self._record("watch", kind, namespace)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if options.resource_version in ("", "0"):
            for obj in sorted(self._store(kind).values(),
                              key=lambda o: int(o.metadata.resourceVersion)):  # type: ignore[attr-defined]
                if self._matches(kind, namespace, obj, options.label_selector,
                                 options.field_selector):
                    queue.put_nowait(WatchEvent("ADDED", _copy(obj)))
        else:
            since = int(options.resource_version)
            floor = self._floor.get(_key(kind), 0)
            if since < floor:
                raise APIError(410, "Expired",
                               f"too old resource version: {since} ({floor})")
            for rv, etype, obj in self._events.get(_key(kind), []):
                if rv > since and self._matches(kind, namespace, obj, options.label_selector,
                                                options.field_selector):
                    queue.put_nowait(WatchEvent(etype, _copy(obj)))
        watch = _Watch(kind, namespace, options, queue)
        self._watches.append(watch)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._watches.remove(watch)

    async def close(self) -> None:
        self.closed = True


def _key(kind: Kind) -> str:
    return f"{kind.group}/{kind.plural}"


def _copy(obj: Message) -> Message:
    new = type(obj)()
    new.CopyFrom(obj)
    return new
