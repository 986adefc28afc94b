"""The registry: Kubernetes object semantics over an etcd-shaped store.

One ``ResourceStore`` per kind gives create/get/list/update/delete/watch with
what makes an apiserver more than a key-value store:

- metadata owned by the server: uid, creationTimestamp, resourceVersion (the
  storage revision, never stored inside the value), generation (bumped when
  the spec changes), generateName;
- optimistic concurrency: an update naming a resourceVersion that is not the
  current one is a 409 Conflict; one that names none is retried on conflict
  (Kubernetes' GuaranteedUpdate);
- deletion: preconditions, grace periods (pods), finalizers and
  deletionTimestamp, propagation policies (foregroundDeletion / orphan
  finalizers for the garbage collector); an object leaves storage when its
  last finalizer is removed;
- namespaces: objects in a missing or terminating namespace are refused;
- the per-kind ``Strategy`` (defaulting, validation, status split) and the
  admission chain (mutating, then validating) run on every write;
- lists and watches served from the ``WatchCache`` where Kubernetes serves
  them from its cache; consistent and paged lists read storage.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import json
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from google.protobuf.message import Message

from pilothouse.api.codec import clear_go_zero_values
from pilothouse.api.kinds import Kind, KindRegistry
from pilothouse.api.serialization import Object, decode_value, encode_value
from pilothouse.services.apiserver import errors
from pilothouse.services.apiserver.errors import Cause, StatusError
from pilothouse.services.apiserver.strategy import Strategy, StrategyContext, strategy_for
from pilothouse.services.apiserver.validation import validate_object_meta
from pilothouse.services.apiserver.watchcache import CachedObject, Matcher, WatchCache
from pilothouse.storage.interface import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Storage,
)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_CONFLICT_RETRIES = 20
# How long a consistent list waits for the watch cache to catch up with the
# latest write before it reads storage instead (Kubernetes waits 3 s too).
CONSISTENT_LIST_WAIT = 3.0
# Subresources whose handlers make the change themselves with their own checks
# (pods/binding sets spec.nodeName, which a pod update may not change).
SERVER_SUBRESOURCES = ("binding",)


class AdmissionPlugin(Protocol):
    """One step of the admission chain; raise StatusError to refuse."""

    name: str

    async def admit(self, op: str, kind: Kind, obj: Object, old: Object | None,
                    subresource: str) -> None:
        """Mutating admission: may change ``obj`` in place (op: CREATE/UPDATE/DELETE)."""
        ...

    async def validate(self, op: str, kind: Kind, obj: Object, old: Object | None,
                       subresource: str) -> None:
        """Validating admission: may only refuse."""
        ...


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str = ""  # Background / Foreground / Orphan
    precondition_uid: str = ""
    precondition_rv: str = ""
    dry_run: bool = False

    @classmethod
    def from_dict(cls, body: dict[str, Any] | None, query: dict[str, str]) -> DeleteOptions:
        body = body or {}
        grace: Any = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        policy = body.get("propagationPolicy") or query.get("propagationPolicy") or ""
        orphan = body.get("orphanDependents", query.get("orphanDependents"))
        if not policy and orphan is not None:
            policy = "Orphan" if str(orphan).lower() == "true" else "Background"
        if policy not in ("", "Background", "Foreground", "Orphan"):
            raise errors.bad_request(f"unknown propagationPolicy {policy!r}: must be one of "
                                     "Background, Foreground, Orphan")
        pre = body.get("preconditions") or {}
        dry = body.get("dryRun") or query.get("dryRun") or []
        try:
            grace_value = int(grace) if grace is not None else None
        except (TypeError, ValueError):
            raise errors.bad_request(f"gracePeriodSeconds must be an integer, got {grace!r}") \
                from None
        if grace_value is not None and grace_value < 0:
            grace_value = 0
        return cls(grace_period_seconds=grace_value, propagation_policy=policy,
                   precondition_uid=pre.get("uid") or "",
                   precondition_rv=pre.get("resourceVersion") or "",
                   dry_run=bool(dry))


@dataclass
class ListResult:
    items: list[CachedObject]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


@dataclass
class Registry:
    """All resource stores of one apiserver, over one storage."""

    storage: Storage
    kinds: KindRegistry
    admission: list[AdmissionPlugin] = field(default_factory=list)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    allocators: dict[str, Any] = field(default_factory=dict)
    stores: dict[tuple[str, str], ResourceStore] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ctx = StrategyContext(now=self.now, allocators=self.allocators)
        self._by_resource: dict[tuple[str, str], ResourceStore] = {}
        # Per storage prefix: the revision of the newest acknowledged write, and how
        # many writes are under way (sent to storage, not yet answered). Every write
        # of every store goes through ResourceStore._noted, which keeps both.
        self._written: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}

    def note_write(self, prefix: str, revision: int) -> None:
        """Record an acknowledged write under ``prefix``."""
        if revision > self._written.get(prefix, 0):
            self._written[prefix] = revision

    def written(self, prefix: str) -> int:
        """The revision of the newest acknowledged write under ``prefix`` (0: none)."""
        return self._written.get(prefix, 0)

    def in_flight(self, prefix: str) -> int:
        """Writes under ``prefix`` sent to storage and not yet answered."""
        return self._in_flight.get(prefix, 0)

    async def start(self) -> None:
        """Start a watch cache for every kind (concurrently) and the system namespaces."""
        for kind in self.kinds:
            self.store(kind)
        await asyncio.gather(*(s.cache.start() for s in self.stores.values()))
        await self.ensure_namespaces()

    async def stop(self) -> None:
        await asyncio.gather(*(s.cache.stop() for s in self.stores.values()))

    def store(self, kind: Kind) -> ResourceStore:
        key = (kind.storage_resource, kind.version)
        store = self.stores.get(key)
        if store is None:
            store = ResourceStore(self, kind, strategy_for(kind))
            self.stores[key] = store
        return store

    def store_for(self, group: str, plural: str) -> ResourceStore:
        found = self._by_resource.get((group, plural))
        if found is not None:
            return found
        for kind in self.kinds:
            if kind.group == group and kind.plural == plural:
                store = self.store(kind)
                self._by_resource[(group, plural)] = store
                return store
        raise KeyError(f"{plural}.{group}")

    async def ensure_namespaces(self) -> None:
        ns_store = self.store_for("", "namespaces")
        for name in SYSTEM_NAMESPACES:
            if ns_store.cache.get(ns_store.kind.storage_key("", name)) is None:
                ns = ns_store.kind.new()
                ns.metadata.name = name  # type: ignore[attr-defined]
                try:
                    await ns_store.create("", ns)
                except StatusError as exc:
                    if exc.reason != "AlreadyExists":
                        raise

    async def check_namespace(self, namespace: str) -> None:
        """Refuse writes into a namespace that does not exist or is terminating."""
        ns_store = self.store_for("", "namespaces")
        key = ns_store.kind.storage_key("", namespace)
        cached = ns_store.cache.get(key)
        if cached is None:
            kv = await self.storage.get(key)
            if kv is None:
                raise errors.not_found("namespaces", namespace)
            obj: Any = decode_value(ns_store.kind, kv.value)
        else:
            obj = cached.obj
        if obj.metadata.HasField("deletionTimestamp") or obj.status.phase == "Terminating":
            raise errors.forbidden(
                "", "", f"unable to create new content in namespace {namespace} because it is "
                        "being terminated")


def _meta(obj: Object) -> Any:
    if isinstance(obj, Message):
        return obj.metadata  # type: ignore[attr-defined]
    raise TypeError("custom resources are not served yet")


def _copy(obj: Message) -> Message:
    out = type(obj)()
    out.CopyFrom(obj)
    return out


class _UidSource:
    """Random version-4 UUIDs from a buffer refilled 256 at a time.

    ``uuid.uuid4()`` reads the OS's random source once per call, a system call
    that lets go of the GIL; with the storage threads busy, getting it back cost
    a create up to the switch interval. Same randomness, one read per 256 uids.
    """

    BATCH = 256

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0
        # A forked child must not hand out the parent's remaining uids.
        os.register_at_fork(after_in_child=self._discard)

    def _discard(self) -> None:
        self._buffer = b""
        self._offset = 0

    def __call__(self) -> str:
        if self._offset >= len(self._buffer):
            self._buffer = os.urandom(16 * self.BATCH)
            self._offset = 0
        raw = self._buffer[self._offset:self._offset + 16]
        self._offset += 16
        return str(uuid.UUID(bytes=raw, version=4))


new_uid = _UidSource()


def encode_continue(rv: int, key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        pad = "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(token + pad))
        rv, start = int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise errors.bad_request("continue key is not valid: incorrect encoded start "
                                 "resourceVersion (version meta.k8s.io/v1)") from None
    if rv <= 0:
        raise errors.bad_request("continue key is not valid: incorrect encoded start "
                                 "resourceVersion (version meta.k8s.io/v1)")
    return rv, start


def parse_resource_version(value: str | None) -> int | None:
    """'' / None -> None; digits -> int; anything else is a 400."""
    if value is None or value == "":
        return None
    try:
        rv = int(value)
    except ValueError:
        raise errors.bad_request(f"invalid resource version: {value!r}") from None
    if rv < 0:
        raise errors.bad_request(f"invalid resource version: {value!r}")
    return rv


class ResourceStore:
    """Create/get/list/update/delete/watch of one kind (see the module docstring)."""

    def __init__(self, registry: Registry, kind: Kind, strategy: Strategy) -> None:
        self.registry = registry
        self.kind = kind
        self.strategy = strategy
        self.storage = registry.storage
        self.cache = WatchCache(kind, registry.storage, self._fields)

    def _fields(self, obj: Object) -> dict[str, str]:
        if isinstance(obj, Message):
            return self.strategy.field_set(obj)
        meta = obj.get("metadata") or {}
        return {"metadata.name": meta.get("name", ""),
                "metadata.namespace": meta.get("namespace", "")}

    @property
    def resource(self) -> str:
        return self.kind.plural

    def key(self, namespace: str, name: str) -> str:
        return self.kind.storage_key(namespace, name)

    def _decode(self, kv: KeyValue) -> Message:
        obj = decode_value(self.kind, kv.value)
        if not isinstance(obj, Message):
            raise TypeError("custom resources are not served yet")
        obj.metadata.resourceVersion = str(kv.mod_revision)  # type: ignore[attr-defined]
        return obj

    def _encode(self, obj: Message) -> bytes:
        meta = _meta(obj)
        rv = meta.resourceVersion
        meta.ClearField("resourceVersion")
        try:
            return encode_value(self.kind, obj)
        finally:
            if rv:
                meta.resourceVersion = rv

    async def _noted(self, write: Awaitable[KeyValue]) -> KeyValue:
        """A storage write, counted in flight until answered and recorded with the
        registry once acknowledged (for consistent lists from the cache)."""
        prefix, in_flight = self.cache.prefix, self.registry._in_flight
        in_flight[prefix] = in_flight.get(prefix, 0) + 1
        try:
            kv = await write
        finally:
            in_flight[prefix] -= 1
        self.registry.note_write(prefix, kv.mod_revision)
        return kv

    def _invalid(self, name: str, causes: list[Cause]) -> StatusError:
        return errors.invalid(self.kind.kind, name, causes, self.kind.group)

    # -- admission -----------------------------------------------------------

    async def _admit(self, op: str, obj: Message, old: Message | None, sub: str) -> None:
        for plugin in self.registry.admission:
            await plugin.admit(op, self.kind, obj, old, sub)
        for plugin in self.registry.admission:
            await plugin.validate(op, self.kind, obj, old, sub)

    # -- reads ---------------------------------------------------------------

    async def get(self, namespace: str, name: str, *, resource_version: str = "") -> Message:
        rv = parse_resource_version(resource_version)
        key = self.key(namespace, name)
        if rv == 0:
            cached = self.cache.get(key)
            if cached is None:
                raise errors.not_found(self.resource, name, self.kind.group)
            return _copy(cached.obj)  # type: ignore[arg-type]
        kv = await self.storage.get(key)
        if kv is None:
            raise errors.not_found(self.resource, name, self.kind.group)
        return self._decode(kv)

    async def list(
        self,
        namespace: str,
        *,
        matches: Matcher | None = None,
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
        resource_version_match: str = "",
    ) -> ListResult:
        """List with Kubernetes' resourceVersion semantics.

        - RV "0" (any): from the watch cache, unpaged (as Kubernetes does).
        - RV unset: a consistent read: from the watch cache once it holds every
          acknowledged write (unpaged), otherwise storage at its current revision.
        - RV N with match NotOlderThan (default): the cache when it has reached N.
        - RV N with match Exact, or a continue token: storage at that revision.
        """
        rv = parse_resource_version(resource_version)
        if resource_version_match not in ("", "NotOlderThan", "Exact"):
            raise errors.bad_request(f"invalid resourceVersionMatch: {resource_version_match!r}")
        if resource_version_match and rv is None:
            raise errors.bad_request("resourceVersionMatch is forbidden unless resourceVersion "
                                     "is provided")
        if resource_version_match == "Exact" and rv == 0:
            raise errors.bad_request("resourceVersionMatch \"exact\" is forbidden for "
                                     "resourceVersion \"0\"")
        if continue_token and rv not in (None,):
            raise errors.bad_request("specifying resource version is not allowed when using "
                                     "continue")
        if limit < 0:
            raise errors.bad_request("limit must be a non-negative integer")
        if not continue_token and (
            rv == 0 or (rv is not None and resource_version_match != "Exact"
                        and self.cache.revision >= rv)
        ):
            items = self.cache.list(namespace, matches)
            return ListResult(items, max(self.cache.revision, rv or 0))
        if rv is None and not continue_token and not limit:
            found = await self._consistent_list_from_cache(namespace, matches)
            if found is not None:
                return found
        start_after = ""
        read_rv = 0
        if continue_token:
            read_rv, start_after = decode_continue(continue_token)
        elif rv is not None:
            read_rv = rv
        prefix = self.kind.storage_prefix(namespace or None)
        try:
            return await self._list_storage(prefix, matches, limit, read_rv, start_after)
        except CompactedError:
            raise errors.gone(
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter, or use the "
                "continue token in this response to retrieve the remainder of the results. "
                "Continuing with the provided token results in an inconsistent list - objects "
                "that were created, modified, or deleted between the time the first chunk was "
                "returned and now may show up in the list."
                if continue_token else f"too old resource version: {read_rv}") from None
        except FutureRevisionError:
            raise errors.timeout(f"Too large resource version: {read_rv}, current: "
                                 f"{await self.storage.current_revision()}") from None

    async def _consistent_list_from_cache(self, namespace: str,
                                          matches: Matcher | None) -> ListResult | None:
        """A consistent list served from the cache, as Kubernetes' ConsistentListFromCache
        does (None: read storage instead).

        The apiserver is its store's only writer and every write goes through
        ``_noted``, so once the cache has applied the newest acknowledged write under
        its prefix, it holds every write a client could have seen answered. Its
        resourceVersion: storage's current revision when no write under the prefix
        is under way (the state at that revision is the cache's: nothing under the
        prefix changed since the cache's own revision); otherwise the cache's own
        revision, whose state the cache holds exactly, so a watch from it misses
        nothing.
        """
        prefix = self.cache.prefix
        if not await self.cache.wait_for_revision(self.registry.written(prefix),
                                                  CONSISTENT_LIST_WAIT):
            return None
        current = await self.storage.current_revision()
        # From here on nothing awaits: the checks and the items are one snapshot.
        if self.registry.in_flight(prefix) == 0 and \
                self.cache.revision >= self.registry.written(prefix):
            revision = max(self.cache.revision, current)
        elif self.cache.revision > 0:
            revision = self.cache.revision
        else:
            return None  # "0" would mean "any": storage answers with a real revision
        return ListResult(self.cache.list(namespace, matches), revision)

    async def _list_storage(self, prefix: str, matches: Matcher | None, limit: int, rv: int,
                            start_after: str) -> ListResult:
        items: builtins.list[CachedObject] = []
        revision = rv
        while True:
            want = limit - len(items) if limit else 0
            page = await self.storage.range(prefix, start_after=start_after,
                                            limit=max(want, 100) if limit else 0,
                                            revision=revision)
            revision = page.revision
            last_key = start_after
            for kv in page.kvs:
                last_key = kv.key
                obj = self._decode(kv)
                cached = CachedObject(self.kind, kv.key, obj, kv.mod_revision, self._fields(obj))
                if matches is None or matches(cached):
                    items.append(cached)
                    if limit and len(items) >= limit:
                        break
            more_in_page = bool(page.kvs) and last_key != page.kvs[-1].key
            if limit and len(items) >= limit:
                if more_in_page or page.more:
                    remaining = page.count - sum(1 for kv in page.kvs if kv.key <= last_key)
                    return ListResult(items, revision, encode_continue(revision, last_key),
                                      max(remaining, 0))
                return ListResult(items, revision)
            if not page.more or not page.kvs:
                return ListResult(items, revision)
            start_after = last_key

    # -- create --------------------------------------------------------------

    async def create(self, namespace: str, obj: Message, *, dry_run: bool = False) -> Message:
        meta = _meta(obj)
        if self.kind.namespaced:
            if meta.namespace and meta.namespace != namespace:
                raise errors.bad_request("the namespace of the provided object does not match "
                                         "the namespace sent on the request")
            meta.namespace = namespace
            await self.registry.check_namespace(namespace)
        else:
            meta.ClearField("namespace")
        if not meta.name and not meta.generateName:
            raise self._invalid("", [Cause("FieldValueRequired",
                                           "name or generateName is required", "metadata.name")])
        generated = not meta.name
        for attempt in range(8):
            if generated:
                meta.name = meta.generateName + "".join(
                    random.choices(GENERATE_ALPHABET, k=5))
            try:
                return await self._create_once(namespace, obj, dry_run=dry_run)
            except StatusError as exc:
                if not (generated and exc.reason == "AlreadyExists" and attempt < 7):
                    raise
        raise AssertionError("unreachable")

    async def _create_once(self, namespace: str, obj: Message, *, dry_run: bool) -> Message:
        meta = _meta(obj)
        for name in ("resourceVersion", "selfLink", "deletionTimestamp",
                     "deletionGracePeriodSeconds"):
            meta.ClearField(name)
        meta.uid = new_uid()
        now = self.registry.now()
        meta.creationTimestamp.seconds = int(now.timestamp())
        meta.creationTimestamp.nanos = 0
        if any(fd.name == "spec" for fd in obj.DESCRIPTOR.fields):
            meta.generation = 1
        ctx = self.registry.ctx
        clear_go_zero_values(obj)  # zero = unset, as Go's defaulting sees it
        self.strategy.prepare_for_create(obj, ctx)
        stored = False
        try:
            self.strategy.default(obj, ctx)
            await self._admit("CREATE", obj, None, "")
            causes = self._validate_meta(obj) + self.strategy.validate(obj, ctx)
            if causes:
                raise self._invalid(meta.name, causes)
            if dry_run:
                return obj
            try:
                kv = await self._noted(self.storage.create(self.key(namespace, meta.name),
                                                           self._encode(obj)))
            except KeyExistsError:
                raise errors.already_exists(self.resource, meta.name,
                                            self.kind.group) from None
            stored = True
        finally:
            if not stored:
                self.strategy.abort_create(obj, ctx)  # e.g. give back a cluster IP
        meta.resourceVersion = str(kv.mod_revision)
        return obj

    def _validate_meta(self, obj: Message) -> builtins.list[Cause]:
        return validate_object_meta(_meta(obj), self.kind.namespaced,
                                    name_validator=self.strategy.name_validator)

    # -- update --------------------------------------------------------------

    async def update(
        self,
        namespace: str,
        name: str,
        obj: Message,
        *,
        subresource: str = "",
        dry_run: bool = False,
    ) -> tuple[Message, bool]:
        """Replace an object; returns (object, created)."""
        meta = _meta(obj)
        if meta.name and meta.name != name:
            raise errors.bad_request(f"the name of the object ({meta.name}) does not match the "
                                     f"name on the URL ({name})")
        if self.kind.namespaced and meta.namespace and meta.namespace != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the "
                                     "namespace sent on the request")
        expected = meta.resourceVersion
        parse_resource_version(expected)

        async def mutate(current: Message) -> Message:
            del current
            return _copy(obj)

        return await self.guaranteed_update(namespace, name, mutate, expected_rv=expected,
                                            subresource=subresource, dry_run=dry_run,
                                            create_if_missing=obj)

    async def guaranteed_update(
        self,
        namespace: str,
        name: str,
        mutate: Callable[[Message], Awaitable[Message]],
        *,
        expected_rv: str = "",
        subresource: str = "",
        dry_run: bool = False,
        create_if_missing: Message | None = None,
    ) -> tuple[Message, bool]:
        """Read-modify-write until it applies without a conflict (Kubernetes'
        GuaranteedUpdate). ``mutate`` gets a private copy of the current object and
        returns the desired one. With ``expected_rv`` a conflict is final (409)."""
        key = self.key(namespace, name)
        for _ in range(MAX_CONFLICT_RETRIES):
            kv = await self.storage.get(key)
            if kv is None:
                if create_if_missing is not None and self.strategy.allow_create_on_update \
                        and not subresource:
                    created = await self.create(namespace, _copy(create_if_missing),
                                                dry_run=dry_run)
                    return created, True
                raise errors.not_found(self.resource, name, self.kind.group)
            old = self._decode(kv)
            if expected_rv and expected_rv != str(kv.mod_revision):
                raise errors.conflict(self.resource, name, errors.OBJECT_MODIFIED,
                                      self.kind.group)
            new = await mutate(_copy(old))
            result = await self._write_update(kv, old, new, subresource=subresource,
                                              dry_run=dry_run)
            if result is not None:
                return result, False
            if expected_rv:
                raise errors.conflict(self.resource, name, errors.OBJECT_MODIFIED,
                                      self.kind.group)
        raise errors.conflict(self.resource, name, "too many concurrent updates",
                              self.kind.group)

    async def _write_update(self, kv: KeyValue, old: Message, new: Message, *,
                            subresource: str, dry_run: bool) -> Message | None:
        """Apply one update attempt; None means a storage conflict (retry)."""
        meta, old_meta = _meta(new), _meta(old)
        name = old_meta.name
        if meta.uid and meta.uid != old_meta.uid:
            raise errors.conflict(self.resource, name,
                                  f"Precondition failed: UID in precondition: {meta.uid}, UID "
                                  f"in object meta: {old_meta.uid}", self.kind.group)
        # Fields only the server sets come from the stored object.
        meta.name = old_meta.name
        meta.uid = old_meta.uid
        meta.creationTimestamp.CopyFrom(old_meta.creationTimestamp)
        if self.kind.namespaced:
            meta.namespace = old_meta.namespace
        else:
            meta.ClearField("namespace")
        meta.ClearField("selfLink")
        if old_meta.HasField("deletionTimestamp"):
            meta.deletionTimestamp.CopyFrom(old_meta.deletionTimestamp)
        else:
            meta.ClearField("deletionTimestamp")
        for f in ("deletionGracePeriodSeconds", "generation"):
            if old_meta.HasField(f):
                setattr(meta, f, getattr(old_meta, f))
            else:
                meta.ClearField(f)
        ctx = self.registry.ctx
        clear_go_zero_values(new)  # zero = unset, as Go's defaulting sees it
        if subresource == "status":
            self.strategy.prepare_for_status_update(new, old, ctx)
        elif subresource == "finalize":
            self.strategy.prepare_for_finalize(new, old, ctx)
        elif subresource not in SERVER_SUBRESOURCES:
            self.strategy.prepare_for_update(new, old, ctx)
        stored = False
        try:
            result = await self._store_update(kv, old, new, subresource=subresource,
                                              dry_run=dry_run)
            stored = result is not None and not dry_run
            return result
        finally:
            if stored:
                self.strategy.after_update(new, old, ctx)
            else:
                self.strategy.abort_update(new, old, ctx)

    async def _store_update(self, kv: KeyValue, old: Message, new: Message, *,
                            subresource: str, dry_run: bool) -> Message | None:
        meta, old_meta = _meta(new), _meta(old)
        name = old_meta.name
        ctx = self.registry.ctx
        self.strategy.default(new, ctx)
        await self._admit("UPDATE", new, old, subresource)
        causes = self._validate_meta(new)
        if subresource not in SERVER_SUBRESOURCES:
            causes += self.strategy.validate_update(new, old, ctx)
        if causes:
            raise self._invalid(name, causes)
        if old_meta.HasField("deletionTimestamp"):
            new_finalizers = set(meta.finalizers)
            added = new_finalizers - set(old_meta.finalizers)
            if added:
                raise self._invalid(name, [Cause(
                    "FieldValueForbidden",
                    "no new finalizers can be added if the object is being deleted, found new "
                    f"finalizers {sorted(added)!r}", "metadata.finalizers")])
        if subresource != "status" and self.strategy.spec_changed(new, old):
            meta.generation = (old_meta.generation or 0) + 1 if old_meta.HasField(
                "generation") else 1
        meta.resourceVersion = str(kv.mod_revision)
        if dry_run:
            return new
        # Finalizers all gone from an object being deleted: it leaves storage now.
        if old_meta.HasField("deletionTimestamp") and not meta.finalizers and (
            not meta.deletionGracePeriodSeconds
        ) and not self._spec_finalizers(new):
            try:
                gone = await self._noted(
                    self.storage.delete(kv.key, expected_revision=kv.mod_revision))
            except ConflictError:
                return None
            except KeyNotFoundError:
                raise errors.not_found(self.resource, name, self.kind.group) from None
            self.strategy.on_delete(new, ctx)
            meta.resourceVersion = str(gone.mod_revision)
            return new
        value = self._encode(new)
        if value == kv.value:
            return new  # nothing changed: no write, resourceVersion stays
        try:
            updated = await self._noted(
                self.storage.update(kv.key, value, expected_revision=kv.mod_revision))
        except ConflictError:
            return None
        except KeyNotFoundError:
            raise errors.not_found(self.resource, name, self.kind.group) from None
        meta.resourceVersion = str(updated.mod_revision)
        return new

    # -- delete --------------------------------------------------------------

    async def delete(self, namespace: str, name: str, options: DeleteOptions) -> tuple[
            Message, bool]:
        """Delete (or begin deleting) an object; returns (object, deleted_now)."""
        key = self.key(namespace, name)
        ctx = self.registry.ctx
        for _ in range(MAX_CONFLICT_RETRIES):
            kv = await self.storage.get(key)
            if kv is None:
                raise errors.not_found(self.resource, name, self.kind.group)
            obj = self._decode(kv)
            meta = _meta(obj)
            if options.precondition_uid and options.precondition_uid != meta.uid:
                raise errors.conflict(
                    self.resource, name,
                    f"Precondition failed: UID in precondition: {options.precondition_uid}, "
                    f"UID in object meta: {meta.uid}", self.kind.group)
            if options.precondition_rv and options.precondition_rv != str(kv.mod_revision):
                raise errors.conflict(
                    self.resource, name,
                    f"Precondition failed: ResourceVersion in precondition: "
                    f"{options.precondition_rv}, ResourceVersion in object meta: "
                    f"{kv.mod_revision}", self.kind.group)
            await self._admit("DELETE", obj, obj, "")
            grace = self.strategy.graceful_delete_seconds(obj, options.grace_period_seconds)
            finalizers = list(meta.finalizers)
            policy = options.propagation_policy
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            spec_finalizers = self._spec_finalizers(obj)
            if finalizers or grace > 0 or spec_finalizers:
                changed = False
                if list(meta.finalizers) != finalizers and not meta.HasField("deletionTimestamp"):
                    del meta.finalizers[:]
                    meta.finalizers.extend(finalizers)
                    changed = True
                now = self.registry.now()
                terminating = meta.HasField("deletionTimestamp")
                if not terminating or grace < meta.deletionGracePeriodSeconds:
                    meta.deletionTimestamp.seconds = int((now + timedelta(seconds=grace))
                                                         .timestamp())
                    meta.deletionGracePeriodSeconds = grace
                    changed = True
                self._on_begin_delete(obj)
                if grace == 0 and not meta.finalizers and not spec_finalizers:
                    pass  # falls through to the real delete below
                else:
                    if not changed or options.dry_run:
                        return obj, False
                    try:
                        updated = await self._noted(self.storage.update(
                            key, self._encode(obj), expected_revision=kv.mod_revision))
                    except ConflictError:
                        continue
                    meta.resourceVersion = str(updated.mod_revision)
                    return obj, False
            if options.dry_run:
                return obj, True
            try:
                gone = await self._noted(
                    self.storage.delete(key, expected_revision=kv.mod_revision))
            except ConflictError:
                continue
            except KeyNotFoundError:
                raise errors.not_found(self.resource, name, self.kind.group) from None
            self.strategy.on_delete(obj, ctx)
            meta.resourceVersion = str(gone.mod_revision)
            return obj, True
        raise errors.conflict(self.resource, name, "too many concurrent updates", self.kind.group)

    def _spec_finalizers(self, obj: Message) -> builtins.list[str]:
        if self.kind.plural == "namespaces" and not self.kind.group:
            return list(obj.spec.finalizers)  # type: ignore[attr-defined]
        return []

    def _on_begin_delete(self, obj: Message) -> None:
        if self.kind.plural == "namespaces" and not self.kind.group:
            obj.status.phase = "Terminating"  # type: ignore[attr-defined]

    async def delete_collection(self, namespace: str, matches: Matcher | None,
                                options: DeleteOptions) -> builtins.list[Message]:
        listed = await self.list(namespace, matches=matches)
        out: builtins.list[Message] = []
        for cached in listed.items:
            try:
                obj, _ = await self.delete(cached.namespace, cached.name, options)
            except StatusError as exc:
                if exc.code == 404:
                    continue
                raise
            out.append(obj)
        return out
