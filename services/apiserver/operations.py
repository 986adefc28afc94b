"""Request logic shared by the REST and gRPC frontends.

Both frontends parse their own wire format, then call these to turn request
parameters into registry calls, so a selector, a patch, a scale change, a
binding or a watch means the same thing, and fails with the same ``Status``,
whichever way it arrives:

- selectors -> a watch-cache ``Matcher`` (and the ``spec.nodeName`` index key);
- JSON documents -> objects per ``fieldValidation`` (Strict / Warn / Ignore);
- patches (JSON, merge, strategic) -> a ``guaranteed_update`` mutation;
- the scale and binding subresources -> mutations of the parent object;
- watches: parameter checks, registering with the watch cache, and the event
  loop (timeouts, bookmarks, the initial-events-end bookmark) as an async
  generator each frontend formats for its wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from pilothouse.api.codec import DecodeError, unknown_fields
from pilothouse.api.kinds import SCALE_MESSAGE, Kind
from pilothouse.api.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    label_selector_from_api,
)
from pilothouse.api.serialization import object_from_dict, object_to_dict
from pilothouse.services.apiserver import errors
from pilothouse.services.apiserver.errors import StatusError
from pilothouse.services.apiserver.registry import ResourceStore, parse_resource_version
from pilothouse.services.apiserver.strategies.pods import bind
from pilothouse.services.apiserver.strategy import StrategyContext
from pilothouse.services.apiserver.watchcache import (
    TICK,
    CachedObject,
    CacheEvent,
    Matcher,
    TooOldResourceVersion,
    WatchCache,
    Watcher,
)

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)
# Subresources read and written as the whole parent object.
OBJECT_SUBRESOURCES = ("status", "finalize", "ephemeralcontainers", "resize", "approval")
BOOKMARK_INTERVAL = 60.0
DEFAULT_WATCH_TIMEOUT = 1800

Mutation = Callable[[Message], Awaitable[Message]]


def not_found_path() -> StatusError:
    """The 404 Kubernetes answers for a path (or resource) it does not serve."""
    return StatusError(404, "NotFound", "the server could not find the requested resource")


def require_verb(kind: Kind, verb: str) -> None:
    if verb not in kind.verbs:
        raise errors.method_not_supported(kind.plural, verb)


# -- selectors -------------------------------------------------------------------


def matcher(kind: Kind, label_selector: str, field_selector: str) -> Matcher | None:
    """A filter for the watch cache from selector strings (None: everything); 400 when bad."""
    try:
        labels = LabelSelector.parse(label_selector) if label_selector else None
        fields = (FieldSelector.parse(field_selector).for_resource(kind.resource)
                  if field_selector else None)
    except SelectorError as exc:
        raise errors.bad_request(str(exc)) from None
    if labels is not None and labels.empty:
        labels = None
    if fields is not None and fields.empty:
        fields = None
    if labels is None and fields is None:
        return None

    def matches(cached: CachedObject) -> bool:
        if labels is not None and not labels.matches(cached.labels):
            return False
        return fields is None or fields.matches(cached.fields)

    return matches


def watch_node_name(kind: Kind, field_selector: str) -> str | None:
    """The node a pod watch is restricted to (``spec.nodeName=X``), for the cache's index."""
    if kind.plural != "pods" or kind.group or not field_selector:
        return None
    try:
        return FieldSelector.parse(field_selector).for_resource("pods").requires_exact_match(
            "spec.nodeName")
    except SelectorError:
        return None


# -- bodies ----------------------------------------------------------------------


def field_validation_mode(value: str) -> str:
    mode = value or "Warn"
    if mode not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(f"fieldValidation must be one of Strict, Warn, Ignore; "
                                 f"got {mode!r}")
    return mode


def decode_document(kind: Kind, doc: Any, mode: str) -> tuple[Message, list[str]]:
    """An object of ``kind`` from its JSON document, per fieldValidation ``mode``;
    returns the object and the warnings (unknown fields, in Warn mode)."""
    mode = field_validation_mode(mode)
    try:
        obj = object_from_dict(kind, doc, strict=(mode == "Strict"))
    except DecodeError as exc:
        raise errors.bad_request(str(exc)) from None
    warnings: list[str] = []
    if mode == "Warn" and isinstance(doc, dict):
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
        warnings = [f'unknown field "{p}"' for p in unknown_fields(type(obj), body)]
    return obj, warnings


# -- patch -----------------------------------------------------------------------


def patch_mutation(kind: Kind, name: str, patch_type: str, body: bytes, *, mode: str,
                   warnings: list[str]) -> Mutation:
    """A ``guaranteed_update`` mutation applying a patch of media type ``patch_type``.

    The patch type and document are checked here, before anything is read
    (415 for types we do not serve, 400 for a malformed or empty document);
    the patch itself is applied to each read of the current object. Warnings
    of the last attempt are left in ``warnings``.
    """
    from pilothouse.services.apiserver import patch as patching

    mode = field_validation_mode(mode)
    if patch_type not in PATCH_TYPES:
        raise errors.unsupported_media_type(patch_type)
    if patch_type == APPLY_PATCH:
        raise errors.unsupported_media_type(
            f"{patch_type} (server-side apply is not served yet; use kubectl apply "
            "without --server-side)")
    if patch_type == STRATEGIC_PATCH and kind.message is None:
        raise errors.unsupported_media_type(patch_type)
    try:
        patch_doc = json.loads(body) if body.strip() else None
    except ValueError as exc:
        raise errors.bad_request(f"error decoding patch: {exc}") from None
    if patch_doc is None:
        raise errors.bad_request("the body of the patch is empty")

    async def mutate(current: Message) -> Message:
        doc = object_to_dict(kind, current)
        try:
            if patch_type == JSON_PATCH:
                patched = patching.apply_json_patch(doc, patch_doc)
            elif patch_type == MERGE_PATCH:
                patched = patching.apply_merge_patch(doc, patch_doc)
            else:
                assert kind.message is not None
                schema = patching.schema_for(kind.message.DESCRIPTOR)
                patched = patching.apply_strategic_merge_patch(doc, patch_doc, schema)
        except patching.PatchError as exc:
            raise errors.StatusError(exc.code, exc.reason, str(exc), kind=kind.kind,
                                     name=name, group=kind.group) from None
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch must produce an object")
        current_rv = current.metadata.resourceVersion  # type: ignore[attr-defined]
        new_rv = (patched.get("metadata") or {}).get("resourceVersion", current_rv)
        if new_rv != current_rv:
            raise errors.conflict(kind.plural, name, errors.OBJECT_MODIFIED, kind.group)
        try:
            new = object_from_dict(kind, patched, strict=(mode == "Strict"))
        except DecodeError as exc:
            raise errors.bad_request(str(exc)) from None
        if mode == "Warn":
            body_doc = {k: v for k, v in patched.items() if k not in ("apiVersion", "kind")}
            warnings[:] = [f'unknown field "{p}"' for p in unknown_fields(type(new), body_doc)]
        return new

    return mutate


# -- scale and binding -------------------------------------------------------------


def to_scale(obj: Any) -> Message:
    """The autoscaling/v1 Scale of a Deployment, ReplicaSet, StatefulSet or RC."""
    scale = SCALE_MESSAGE()
    scale.metadata.name = obj.metadata.name
    scale.metadata.namespace = obj.metadata.namespace
    scale.metadata.uid = obj.metadata.uid
    scale.metadata.resourceVersion = obj.metadata.resourceVersion
    scale.metadata.creationTimestamp.CopyFrom(obj.metadata.creationTimestamp)
    scale.spec.replicas = obj.spec.replicas if obj.spec.HasField("replicas") else 1
    scale.status.replicas = obj.status.replicas
    selector = getattr(obj.spec, "selector", None)
    if selector is not None:
        if hasattr(selector, "matchLabels"):
            scale.status.selector = str(label_selector_from_api(selector))
        else:  # ReplicationController: a plain map
            scale.status.selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    return scale


def set_replicas(kind: Kind, name: str, current: Any, replicas: Any,
                 resource_version: str | None) -> Message:
    """Apply a Scale's ``spec.replicas`` (and its resourceVersion precondition) to the parent."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise errors.invalid("Scale", name, [errors.Cause(
            "FieldValueInvalid", f"Invalid value: {replicas!r}: must be greater than "
            "or equal to 0", "spec.replicas")], "autoscaling")
    if resource_version and resource_version != current.metadata.resourceVersion:
        raise errors.conflict(kind.plural, name, errors.OBJECT_MODIFIED, kind.group)
    current.spec.replicas = replicas
    return current


def bind_mutation(ctx: StrategyContext, node: str, target_kind: str) -> Mutation:
    """The pods/binding mutation: set spec.nodeName once (see ``strategies.pods.bind``)."""

    async def mutate(pod: Any) -> Message:
        bind(pod, node, ctx, target_kind=target_kind)
        return pod

    return mutate


# -- watch -----------------------------------------------------------------------


@dataclass(frozen=True)
class Bookmark:
    """A BOOKMARK event: the watch has seen everything up to ``rv``."""

    rv: int
    initial_end: bool = False


@dataclass
class OpenWatch:
    watcher: Watcher
    cache: WatchCache
    start_rv: int
    initial: bool
    bookmarks: bool
    timeout: float


def open_watch(
    store: ResourceStore,
    *,
    namespace: str,
    name: str,
    matches: Matcher | None,
    node_name: str | None,
    resource_version: str,
    resource_version_match: str,
    send_initial_events: bool,
    allow_watch_bookmarks: bool,
    timeout_seconds: int | None,
    filter_key: Hashable | None = None,
) -> OpenWatch:
    """Check a watch's parameters and register its watcher with the cache.

    The caller owns the watcher: it must ``cache.remove_watcher`` it when the
    stream ends, however it ends. 400 for bad parameters, 410 Expired for a
    resourceVersion older than the cache keeps. ``filter_key``: equal for
    watches whose selectors (and name) are equal, so the cache decides a match
    once for all of them (None: not shared).
    """
    require_verb(store.kind, "watch")
    base = matches or (lambda _c: True)
    if name:  # watch of one object: a field selector on its name
        inner, wanted = base, name

        def base(cached: CachedObject) -> bool:
            return cached.name == wanted and inner(cached)

    rv = parse_resource_version(resource_version)
    if send_initial_events and rv not in (None, 0):
        raise errors.bad_request("sendInitialEvents is forbidden unless resourceVersion is "
                                 "unset or \"0\"")
    if send_initial_events and resource_version_match != "NotOlderThan":
        raise errors.bad_request("sendInitialEvents requires setting resourceVersionMatch "
                                 "to NotOlderThan")
    if timeout_seconds is not None and timeout_seconds < 0:
        raise errors.bad_request("timeoutSeconds must be a non-negative integer")
    cache = store.cache
    try:
        if rv is None or rv == 0 or send_initial_events:
            # "Get state and start at most recent" (unset) / "any" (0): initial ADDED
            # events for the current objects, then changes.
            watcher = cache.watch(namespace=namespace, matches=base, resource_version=None,
                                  node_name=node_name, initial_events=True,
                                  filter_key=filter_key)
        else:
            watcher = cache.watch(namespace=namespace, matches=base, resource_version=rv,
                                  node_name=node_name, filter_key=filter_key)
    except TooOldResourceVersion as exc:
        raise errors.gone(f"too old resource version: {exc.requested} ({exc.oldest})") \
            from None
    return OpenWatch(watcher, cache, cache.revision if rv is None or rv == 0 else rv,
                     send_initial_events, allow_watch_bookmarks,
                     float(timeout_seconds or DEFAULT_WATCH_TIMEOUT))


async def watch_events(w: OpenWatch, *,
                       bookmark_interval: float = BOOKMARK_INTERVAL,
                       ) -> AsyncGenerator[CacheEvent | Bookmark, None]:
    """The events of an open watch until its timeout or until the watcher is closed
    (slow consumer, cache relist, shutdown). Bookmarks, when asked for, come every
    ``bookmark_interval`` without events and once after the initial events."""
    watcher, cache = w.watcher, w.cache
    loop = asyncio.get_running_loop()
    deadline = loop.time() + w.timeout
    last_rv = w.start_rv
    pending_initial_end = w.initial
    if w.initial and watcher.queue.empty():
        pending_initial_end = False
        if w.bookmarks:
            yield Bookmark(cache.revision, initial_end=True)
    next_bookmark = loop.time() + bookmark_interval if w.bookmarks else deadline

    # No asyncio.wait_for per event (it makes a task and a timer each time, which
    # dominates a 1000-watcher fan-out): one timer per wake-up time drops a TICK
    # into the queue, and the loop awaits the queue directly.
    def tick() -> None:
        with contextlib.suppress(asyncio.QueueFull):
            watcher.queue.put_nowait(TICK)

    timer = loop.call_at(min(deadline, next_bookmark), tick)
    try:
        while True:
            event = await watcher.queue.get()
            if event is TICK:
                now = loop.time()
                if now >= deadline:
                    return
                if w.bookmarks and now >= next_bookmark:
                    yield Bookmark(max(last_rv, cache.revision))
                    next_bookmark = now + bookmark_interval
                timer.cancel()
                timer = loop.call_at(min(deadline, next_bookmark), tick)
                continue
            if event is None:
                return  # the watcher was closed (slow consumer or relist)
            assert isinstance(event, CacheEvent)
            last_rv = max(last_rv, event.rv)
            yield event
            if pending_initial_end and watcher.queue.empty():
                pending_initial_end = False
                if w.bookmarks:
                    yield Bookmark(cache.revision, initial_end=True)
    finally:
        timer.cancel()
