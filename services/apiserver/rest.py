"""The Kubernetes REST/JSON frontend, as a plain ASGI application.

Paths, verbs, query parameters, content negotiation and errors follow the
Kubernetes API conventions closely enough that kubectl and the official
clients cannot tell the difference:

    /api/v1[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]
    /apis/{group}/{version}[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]

Every failure is a meta/v1 ``Status`` with the right code and reason. Lists
are assembled from the cached JSON of each object (encoded once per object
version); watches stream one JSON event per line.

The app is served by uvicorn (HTTP/1.1, websockets) — see ``server.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import yaml
from google.protobuf.message import Message
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pilothouse.api.codec import DecodeError, unknown_fields
from pilothouse.api.kinds import SCALE_MESSAGE, Kind, KindRegistry
from pilothouse.api.selectors import FieldSelector, LabelSelector, SelectorError
from pilothouse.api.serialization import (
    PROTOBUF_CONTENT_TYPE,
    SerializationError,
    decode_protobuf,
    dumps,
    object_from_dict,
    object_to_dict,
)
from pilothouse.services.apiserver import discovery, errors, tables
from pilothouse.services.apiserver.errors import StatusError
from pilothouse.services.apiserver.metrics import APIServerMetrics
from pilothouse.services.apiserver.openapi import OpenAPIDocuments
from pilothouse.services.apiserver.registry import (
    DeleteOptions,
    Registry,
    ResourceStore,
    parse_resource_version,
)
from pilothouse.services.apiserver.strategies.pods import bind
from pilothouse.services.apiserver.watchcache import CachedObject, Matcher, TooOldResourceVersion

log = logging.getLogger("pilothouse.apiserver.rest")

MAX_BODY = 3 * 1024 * 1024
JSON = "application/json"
YAML = "application/yaml"
TABLE = "table"
BOOKMARK_INTERVAL = 60.0
DEFAULT_WATCH_TIMEOUT = 1800
NAMESPACE_SUBRESOURCES = ("status", "finalize")
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    receive: Receive

    async def body(self) -> bytes:
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            raise errors.too_large(MAX_BODY)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ConnectionResetError("client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise errors.too_large(MAX_BODY)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("true", "1")


@dataclass
class Target:
    """A parsed resource path."""

    kind: Kind
    namespace: str
    name: str
    subresource: str
    watch_path: bool  # the legacy /watch/ prefix


class Response:
    """What a handler returns: status, body and content type (or a stream)."""

    def __init__(self, status: int, body: bytes, content_type: str = JSON,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


class RestAPI:
    def __init__(
        self,
        registry: Registry,
        *,
        metrics: APIServerMetrics | None = None,
        server_address: str = "127.0.0.1:6443",
        is_ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.registry = registry
        self.kinds: KindRegistry = registry.kinds
        self.metrics = metrics or APIServerMetrics()
        self.server_address = server_address
        self.is_ready = is_ready
        self.openapi = OpenAPIDocuments()

    # -- ASGI ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                               keep_blank_values=True))
        request = Request(scope["method"], scope["path"], query, headers, receive)
        started = time.perf_counter()
        labels: dict[str, str] = {"verb": request.method, "group": "", "version": "",
                                  "resource": "", "subresource": "", "scope": "",
                                  "dry_run": ""}
        inflight = self.metrics.inflight.labels(
            "mutating" if request.method in ("POST", "PUT", "PATCH", "DELETE") else "readOnly")
        inflight.inc()
        code = 500
        try:
            try:
                result = await self.dispatch(request, labels, send)
            except StatusError as exc:
                result = self._status_response(exc, request)
            except ConnectionResetError:
                return
            except Exception as exc:  # a bug: the client still gets a Status
                log.exception("internal error serving %s %s", request.method, request.path)
                result = self._status_response(errors.internal(str(exc) or type(exc).__name__),
                                               request)
            if result is None:  # streamed (watch)
                code = 200
                return
            code = result.status
            await self._send(send, result)
        finally:
            inflight.dec()
            if labels["resource"]:
                elapsed = time.perf_counter() - started
                self.metrics.request_total.labels(
                    labels["verb"], labels["dry_run"], labels["group"], labels["version"],
                    labels["resource"], labels["subresource"], labels["scope"], "apiserver",
                    str(code)).inc()
                if labels["verb"] != "WATCH":
                    self.metrics.request_duration.labels(
                        labels["verb"], labels["dry_run"], labels["group"], labels["version"],
                        labels["resource"], labels["subresource"], labels["scope"],
                        "apiserver").observe(elapsed)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _send(self, send: Send, response: Response) -> None:
        headers = [(b"content-type", response.content_type.encode()),
                   (b"content-length", str(len(response.body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
        await send({"type": "http.response.start", "status": response.status,
                    "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    def _status_response(self, exc: StatusError, request: Request) -> Response:
        body = exc.to_status()
        headers = dict(exc.headers)
        if exc.retry_after_seconds:
            headers["Retry-After"] = str(exc.retry_after_seconds)
        if _wants_yaml(request.headers.get("accept", "")):
            return Response(exc.code, yaml.safe_dump(body, sort_keys=False).encode(), YAML,
                            headers)
        return Response(exc.code, dumps(body), JSON, headers)

    # -- routing ---------------------------------------------------------------

    async def dispatch(self, request: Request, labels: dict[str, str],
                       send: Send) -> Response | None:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/healthz/ping", "/livez/ping"):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if path == "/readyz":
            if self.is_ready():
                return Response(200, b"ok", "text/plain; charset=utf-8")
            return Response(500, b"[-]registry failed: not started\nreadyz check failed",
                            "text/plain; charset=utf-8")
        if path == "/metrics":
            return Response(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        if path == "/version":
            return Response(200, dumps(discovery.version_info()))
        if path.startswith("/openapi/"):
            return self._openapi(path, request)
        segments = [s for s in path.split("/") if s]
        if not segments or segments[0] not in ("api", "apis"):
            if path == "/":
                paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/metrics",
                         "/openapi/v2", "/openapi/v3", "/readyz", "/version"]
                return Response(200, dumps({"paths": paths}))
            raise _not_found_path()
        if segments[0] == "api":
            if len(segments) == 1:
                return self._discovery(request, legacy=True)
            group, version, rest = "", segments[1], segments[2:]
        else:
            if len(segments) == 1:
                return self._discovery(request, legacy=False)
            if len(segments) == 2:
                doc = discovery.api_group(self.kinds, segments[1])
                if doc is None:
                    raise _not_found_path()
                return Response(200, dumps(doc))
            group, version, rest = segments[1], segments[2], segments[3:]
        if not rest:
            if not self.kinds.in_group_version(group, version):
                raise _not_found_path()
            if request.method != "GET":
                raise errors.method_not_supported("", request.method)
            return Response(200, dumps(discovery.resource_list(self.kinds, group, version)))
        target = self._target(group, version, rest)
        labels.update(group=group, version=version, resource=target.kind.plural,
                      subresource=target.subresource,
                      scope=("resource" if target.name else
                             "namespace" if target.namespace else "cluster"),
                      dry_run="All" if request.query.get("dryRun") else "")
        return await self._resource(request, target, labels, send)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        watch_path = False
        if rest and rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        namespace = ""
        # /api/v1/namespaces/{name}/status is the namespace's own subresource.
        if len(rest) >= 3 and rest[0] == "namespaces" and (
                group or rest[2] not in NAMESPACE_SUBRESOURCES):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise _not_found_path()
        kind = self.kinds.by_resource(group, version, rest[0])
        if kind is None:
            raise _not_found_path()
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if namespace and not kind.namespaced:
            raise _not_found_path()
        if sub and sub not in kind.subresources:
            raise _not_found_path()
        return Target(kind, namespace, name, sub, watch_path)

    def _discovery(self, request: Request, *, legacy: bool) -> Response:
        accept = request.headers.get("accept", "")
        if "as=APIGroupDiscoveryList" in accept and "v=v2;" in accept.replace(" ", "") + ";":
            doc = discovery.aggregated(self.kinds, legacy=legacy)
            return Response(200, dumps(doc), discovery.AGGREGATED_CONTENT_TYPE)
        if legacy:
            return Response(200, dumps(discovery.api_versions(self.server_address)))
        return Response(200, dumps(discovery.api_group_list(self.kinds)))

    def _openapi(self, path: str, request: Request) -> Response:
        accept = request.headers.get("accept", "")
        kinds = list(self.kinds)
        if path == "/openapi/v2":
            # kubectl asks for v2 only as protobuf (and fails on JSON): say no, it
            # then uses v3. JSON clients get the document.
            if accept and "json" not in accept and "*/*" not in accept:
                raise errors.not_acceptable(accept)
            return Response(200, self.openapi.v2(kinds), JSON)
        if path == "/openapi/v3":
            return Response(200, self.openapi.v3_index(kinds), JSON)
        found = self.openapi.v3_group(kinds, path.removeprefix("/openapi/v3/"))
        if found is None:
            raise _not_found_path()
        body, digest = found
        return Response(200, body, JSON, {"Etag": f'"{digest}"',
                                          "Cache-Control": "public, immutable"})

    # -- resources -------------------------------------------------------------

    async def _resource(self, request: Request, t: Target, labels: dict[str, str],
                        send: Send) -> Response | None:
        store = self.registry.store(t.kind)
        method = request.method
        if t.watch_path or (not t.name and method == "GET" and request.flag("watch")):
            labels["verb"] = "WATCH"
            await self._watch(request, t, store, send)
            return None
        if t.watch_path:
            raise _not_found_path()
        if t.subresource:
            return await self._subresource(request, t, store, labels)
        if not t.name:
            if method == "GET":
                labels["verb"] = "LIST"
                self._require_verb(t.kind, "list")
                return await self._list(request, t, store)
            if method == "POST":
                self._require_verb(t.kind, "create")
                if t.kind.namespaced and not t.namespace:
                    raise errors.method_not_supported(t.kind.plural, "create")
                return await self._create(request, t, store)
            if method == "DELETE":
                labels["verb"] = "DELETECOLLECTION"
                self._require_verb(t.kind, "deletecollection")
                return await self._delete_collection(request, t, store)
            raise errors.method_not_supported(t.kind.plural, method)
        if t.kind.namespaced and not t.namespace:
            raise _not_found_path()
        if method == "GET":
            self._require_verb(t.kind, "get")
            obj = await store.get(t.namespace, t.name,
                                  resource_version=request.query.get("resourceVersion", ""))
            return self._object_response(request, t.kind, obj, 200)
        if method == "PUT":
            self._require_verb(t.kind, "update")
            return await self._update(request, t, store)
        if method == "PATCH":
            self._require_verb(t.kind, "patch")
            return await self._patch(request, t, store)
        if method == "DELETE":
            self._require_verb(t.kind, "delete")
            return await self._delete(request, t, store)
        raise errors.method_not_supported(t.kind.plural, method)

    def _require_verb(self, kind: Kind, verb: str) -> None:
        if verb not in kind.verbs:
            raise errors.method_not_supported(kind.plural, verb)

    # -- decoding bodies --------------------------------------------------------

    async def _read_object(self, request: Request, kind: Kind) -> tuple[Message, list[str]]:
        """The request body as an object of ``kind``: JSON, YAML or Kubernetes protobuf."""
        body = await request.body()
        content_type = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
        if content_type == PROTOBUF_CONTENT_TYPE and kind.message is not None:
            try:
                return decode_protobuf(kind, body), []
            except SerializationError as exc:
                raise errors.bad_request(f"error decoding protobuf body: {exc}") from None
        return self._decode_object(request, kind, parse_body(body, content_type))

    def _decode_object(self, request: Request, kind: Kind, doc: Any) -> tuple[Message, list[str]]:
        """Decode per fieldValidation (Strict / Warn (default) / Ignore)."""
        mode = request.query.get("fieldValidation", "Warn") or "Warn"
        if mode not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(f"fieldValidation must be one of Strict, Warn, Ignore; "
                                     f"got {mode!r}")
        try:
            obj = object_from_dict(kind, doc, strict=(mode == "Strict"))
        except DecodeError as exc:
            raise errors.bad_request(str(exc)) from None
        warnings: list[str] = []
        if mode == "Warn" and isinstance(doc, dict):
            body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
            warnings = [f'unknown field "{p}"' for p in unknown_fields(type(obj), body)]
        return obj, warnings

    # -- verbs -------------------------------------------------------------------

    def _object_response(self, request: Request, kind: Kind, obj: Message, status: int,
                         warnings: list[str] | None = None) -> Response:
        doc = object_to_dict(kind, obj)
        headers = _warning_headers(warnings)
        fmt = negotiate(request.headers.get("accept", ""))
        if fmt == TABLE:
            table = self._table(kind, [doc], request)
            return Response(status, dumps(table), JSON, headers)
        if fmt == YAML:
            return Response(status, yaml.safe_dump(doc, sort_keys=False).encode(), YAML, headers)
        return Response(status, dumps(doc), JSON, headers)

    async def _create(self, request: Request, t: Target, store: ResourceStore) -> Response:
        obj, warnings = await self._read_object(request, t.kind)
        created = await store.create(t.namespace, obj, dry_run=bool(request.query.get("dryRun")))
        return self._object_response(request, t.kind, created, 201, warnings)

    async def _update(self, request: Request, t: Target, store: ResourceStore,
                      subresource: str = "") -> Response:
        obj, warnings = await self._read_object(request, t.kind)
        updated, created = await store.update(t.namespace, t.name, obj, subresource=subresource,
                                              dry_run=bool(request.query.get("dryRun")))
        return self._object_response(request, t.kind, updated, 201 if created else 200, warnings)

    async def _patch(self, request: Request, t: Target, store: ResourceStore,
                     subresource: str = "") -> Response:
        from pilothouse.services.apiserver import patch as patching

        body = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in PATCH_TYPES:
            raise errors.unsupported_media_type(content_type)
        if content_type == "application/apply-patch+yaml":
            raise errors.unsupported_media_type(
                f"{content_type} (server-side apply is not served yet; use kubectl apply "
                "without --server-side)")
        if content_type == "application/strategic-merge-patch+json" and t.kind.message is None:
            raise errors.unsupported_media_type(content_type)
        try:
            patch_doc = json.loads(body) if body.strip() else None
        except ValueError as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from None
        if patch_doc is None:
            raise errors.bad_request("the body of the patch is empty")
        warnings: list[str] = []
        mode = request.query.get("fieldValidation", "Warn") or "Warn"

        async def mutate(current: Message) -> Message:
            doc = object_to_dict(t.kind, current)
            try:
                if content_type == "application/json-patch+json":
                    patched = patching.apply_json_patch(doc, patch_doc)
                elif content_type == "application/merge-patch+json":
                    patched = patching.apply_merge_patch(doc, patch_doc)
                else:
                    assert t.kind.message is not None
                    schema = patching.schema_for(t.kind.message.DESCRIPTOR)
                    patched = patching.apply_strategic_merge_patch(doc, patch_doc, schema)
            except patching.PatchError as exc:
                raise errors.StatusError(exc.code, exc.reason, str(exc), kind=t.kind.kind,
                                         name=t.name, group=t.kind.group) from None
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch must produce an object")
            current_rv = current.metadata.resourceVersion  # type: ignore[attr-defined]
            new_rv = (patched.get("metadata") or {}).get("resourceVersion", current_rv)
            if new_rv != current_rv:
                raise errors.conflict(t.kind.plural, t.name, errors.OBJECT_MODIFIED,
                                      t.kind.group)
            try:
                new = object_from_dict(t.kind, patched, strict=(mode == "Strict"))
            except DecodeError as exc:
                raise errors.bad_request(str(exc)) from None
            if mode == "Warn":
                body_doc = {k: v for k, v in patched.items() if k not in ("apiVersion", "kind")}
                warnings[:] = [f'unknown field "{p}"' for p in
                               unknown_fields(type(new), body_doc)]
            return new

        updated, _ = await store.guaranteed_update(
            t.namespace, t.name, mutate, subresource=subresource,
            dry_run=bool(request.query.get("dryRun")))
        return self._object_response(request, t.kind, updated, 200, warnings)

    async def _delete(self, request: Request, t: Target, store: ResourceStore) -> Response:
        body = await request.body()
        options_doc = None
        if body.strip():
            options_doc = parse_body(body, request.headers.get("content-type", JSON)
                                     .split(";")[0].strip().lower())
            if not isinstance(options_doc, dict):
                raise errors.bad_request("DeleteOptions must be an object")
        options = DeleteOptions.from_dict(options_doc, request.query)
        obj, deleted = await store.delete(t.namespace, t.name, options)
        # Kubernetes answers 200 with the object both when it is gone and when its
        # deletion is pending (grace period, finalizers).
        del deleted
        return self._object_response(request, t.kind, obj, 200)

    async def _delete_collection(self, request: Request, t: Target,
                                 store: ResourceStore) -> Response:
        body = await request.body()
        options_doc = None
        if body.strip():
            options_doc = parse_body(body, JSON)
        options = DeleteOptions.from_dict(options_doc if isinstance(options_doc, dict) else None,
                                          request.query)
        matches = self._matcher(request, t)
        deleted = await store.delete_collection(t.namespace, matches, options)
        rv = await self.registry.storage.current_revision()
        body_bytes = b"".join([
            b'{"kind":', json.dumps(t.kind.list_kind).encode(), b',"apiVersion":',
            json.dumps(t.kind.api_version).encode(), b',"metadata":{"resourceVersion":"',
            str(rv).encode(), b'"},"items":[',
            b",".join(dumps(object_to_dict(t.kind, o)) for o in deleted), b"]}",
        ])
        return Response(200, body_bytes)

    # -- list and watch --------------------------------------------------------------

    def _matcher(self, request: Request, t: Target) -> Matcher | None:
        label_text = request.query.get("labelSelector", "")
        field_text = request.query.get("fieldSelector", "")
        try:
            labels = LabelSelector.parse(label_text) if label_text else None
            fields = (FieldSelector.parse(field_text).for_resource(t.kind.resource)
                      if field_text else None)
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from None
        if labels is None and fields is None:
            return None
        if labels is not None and labels.empty:
            labels = None
        if fields is not None and fields.empty:
            fields = None

        def matches(cached: CachedObject) -> bool:
            if labels is not None and not labels.matches(cached.labels):
                return False
            return fields is None or fields.matches(cached.fields)

        return matches

    def _node_name(self, request: Request, t: Target) -> str | None:
        if t.kind.plural != "pods" or t.kind.group:
            return None
        text = request.query.get("fieldSelector", "")
        if not text:
            return None
        try:
            return FieldSelector.parse(text).for_resource("pods").requires_exact_match(
                "spec.nodeName")
        except SelectorError:
            return None

    async def _list(self, request: Request, t: Target, store: ResourceStore) -> Response:
        matches = self._matcher(request, t)
        limit_text = request.query.get("limit", "")
        try:
            limit = int(limit_text) if limit_text else 0
        except ValueError:
            raise errors.bad_request(f"limit must be an integer, got {limit_text!r}") from None
        result = await store.list(
            t.namespace, matches=matches, limit=max(limit, 0),
            continue_token=request.query.get("continue", ""),
            resource_version=request.query.get("resourceVersion", ""),
            resource_version_match=request.query.get("resourceVersionMatch", ""))
        fmt = negotiate(request.headers.get("accept", ""))
        meta: dict[str, Any] = {"resourceVersion": str(result.resource_version)}
        if result.continue_token:
            meta["continue"] = result.continue_token
            if result.remaining is not None:
                meta["remainingItemCount"] = result.remaining
        if fmt == TABLE:
            table = self._table(t.kind, [c.document() for c in result.items], request)
            table["metadata"] = meta
            return Response(200, dumps(table))
        head = {"kind": t.kind.list_kind, "apiVersion": t.kind.api_version, "metadata": meta}
        if fmt == YAML:
            doc = dict(head, items=[c.document() for c in result.items])
            return Response(200, yaml.safe_dump(doc, sort_keys=False).encode(), YAML)
        prefix = dumps(head)[:-1] + b',"items":['
        return Response(200, prefix + b",".join(c.json() for c in result.items) + b"]}")

    def _table(self, kind: Kind, docs: list[dict[str, Any]], request: Request) -> dict[str, Any]:
        include = _accept_param(request.headers.get("accept", ""), "includeObject") or \
            request.query.get("includeObject", "Metadata")
        try:
            table: dict[str, Any] = tables.table_for(kind, docs, include_object=include,
                                                     wide=True, now=self.registry.now())
        except tables.TableError as exc:
            raise errors.bad_request(str(exc)) from None
        return table

    async def _watch(self, request: Request, t: Target, store: ResourceStore,
                     send: Send) -> None:
        self._require_verb(t.kind, "watch")
        matches = self._matcher(request, t) or (lambda _c: True)
        node_name = self._node_name(request, t)
        if t.name:  # watch of one object: a field selector on its name
            inner, wanted = matches, t.name

            def matches(cached: CachedObject) -> bool:
                return cached.name == wanted and inner(cached)

        rv_text = request.query.get("resourceVersion", "")
        rv = parse_resource_version(rv_text)
        initial = request.flag("sendInitialEvents")
        if initial and rv not in (None, 0):
            raise errors.bad_request("sendInitialEvents is forbidden unless resourceVersion is "
                                     "unset or \"0\"")
        if initial and request.query.get("resourceVersionMatch") != "NotOlderThan":
            raise errors.bad_request("sendInitialEvents requires setting resourceVersionMatch "
                                     "to NotOlderThan")
        bookmarks = request.flag("allowWatchBookmarks")
        try:
            timeout = int(request.query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        except ValueError:
            raise errors.bad_request("timeoutSeconds must be an integer") from None
        cache = store.cache
        try:
            if rv is None or rv == 0 or initial:
                # "Get state and start at most recent" (unset) / "any" (0): initial ADDED
                # events for the current objects, then changes.
                watcher = cache.watch(namespace=t.namespace, matches=matches,
                                      resource_version=None, node_name=node_name,
                                      initial_events=True)
            else:
                watcher = cache.watch(namespace=t.namespace, matches=matches,
                                      resource_version=rv, node_name=node_name)
        except TooOldResourceVersion as exc:
            raise errors.gone(f"too old resource version: {exc.requested} ({exc.oldest})") \
                from None
        fmt = negotiate(request.headers.get("accept", ""))
        gauge = self.metrics.registered_watchers.labels(t.kind.group, t.kind.version, t.kind.kind)
        longrunning = self.metrics.longrunning.labels("WATCH", t.kind.group, t.kind.version,
                                                      t.kind.plural, "", "cluster", "apiserver")
        gauge.inc()
        longrunning.inc()
        disconnected = asyncio.Event()

        async def wait_disconnect() -> None:
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return

        disconnect_task = asyncio.create_task(wait_disconnect())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", JSON.encode()), (b"cache-control", b"no-cache, private")]})
            deadline = time.monotonic() + timeout
            last_rv = cache.revision if rv is None or rv == 0 else rv
            first_table = True
            pending_initial_end = initial
            if initial and watcher.queue.empty():
                pending_initial_end = False
                if bookmarks:
                    await self._send_bookmark(send, t.kind, cache.revision, initial_end=True)
            next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
            while not disconnected.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                wait = min(remaining, max(next_bookmark - time.monotonic(), 0.01))
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        await self._send_bookmark(send, t.kind, max(last_rv, cache.revision))
                        next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
                    continue
                if event is None:
                    break  # the watcher was closed (slow consumer or relist)
                last_rv = max(last_rv, event.rv)
                if fmt == TABLE:
                    table = self._table(t.kind, [event.obj.document()], request)
                    if not first_table:
                        table.pop("columnDefinitions", None)
                        table["columnDefinitions"] = None
                    first_table = False
                    line = dumps({"type": event.type, "object": table}) + b"\n"
                else:
                    line = b'{"type":"' + event.type.encode() + b'","object":' + \
                        event.obj.json() + b"}\n"
                await send({"type": "http.response.body", "body": line, "more_body": True})
                if pending_initial_end and watcher.queue.empty():
                    pending_initial_end = False
                    if bookmarks:
                        await self._send_bookmark(send, t.kind, cache.revision, initial_end=True)
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            cache.remove_watcher(watcher)
            disconnect_task.cancel()
            gauge.dec()
            longrunning.dec()
        return None

    async def _send_bookmark(self, send: Send, kind: Kind, rv: int, *,
                             initial_end: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": meta}
        line = dumps({"type": "BOOKMARK", "object": obj}) + b"\n"
        await send({"type": "http.response.body", "body": line, "more_body": True})

    # -- subresources ------------------------------------------------------------------

    async def _subresource(self, request: Request, t: Target, store: ResourceStore,
                           labels: dict[str, str]) -> Response:
        sub, method = t.subresource, request.method
        if t.kind.namespaced and not t.namespace:
            raise _not_found_path()
        if sub in ("status", "finalize", "ephemeralcontainers", "resize", "approval"):
            if method == "GET":
                obj = await store.get(t.namespace, t.name)
                return self._object_response(request, t.kind, obj, 200)
            if method == "PUT":
                return await self._update(request, t, store,
                                          subresource="status" if sub == "status" else sub)
            if method == "PATCH":
                return await self._patch(request, t, store,
                                         subresource="status" if sub == "status" else sub)
            raise errors.method_not_supported(f"{t.kind.plural}/{sub}", method)
        if sub == "scale":
            return await self._scale(request, t, store)
        if sub == "binding" and method == "POST":
            return await self._binding(request, t, store)
        if sub == "eviction" and method == "POST":
            obj, _ = await store.delete(t.namespace, t.name, DeleteOptions())
            status = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                      "status": "Success", "code": 201}
            return Response(201, dumps(status))
        raise errors.StatusError(
            503, "ServiceUnavailable",
            f"{t.kind.plural}/{sub} needs a kubelet to proxy to, and no kubelet serves it yet",
            kind=t.kind.plural, name=t.name)

    async def _scale(self, request: Request, t: Target, store: ResourceStore) -> Response:
        def to_scale(obj: Any) -> dict[str, Any]:
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
                from pilothouse.api.selectors import label_selector_from_api

                if hasattr(selector, "matchLabels"):
                    scale.status.selector = str(label_selector_from_api(selector))
                else:
                    scale.status.selector = ",".join(f"{k}={v}" for k, v in
                                                     sorted(selector.items()))
            doc: dict[str, Any] = {"kind": "Scale", "apiVersion": "autoscaling/v1"}
            from pilothouse.api.codec import message_to_dict

            doc.update(message_to_dict(scale))
            return doc

        if request.method == "GET":
            obj = await store.get(t.namespace, t.name)
            return Response(200, dumps(to_scale(obj)))
        if request.method not in ("PUT", "PATCH"):
            raise errors.method_not_supported(f"{t.kind.plural}/scale", request.method)
        body = await request.body()
        content_type = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
        if request.method == "PUT":
            scale_doc = parse_body(body, content_type)
        else:
            scale_doc = None
        patch_doc = json.loads(body) if request.method == "PATCH" and body.strip() else None

        async def mutate(current: Any) -> Message:
            nonlocal scale_doc
            if patch_doc is not None:
                from pilothouse.services.apiserver import patch as patching

                base = to_scale(current)
                if content_type == "application/json-patch+json":
                    scale_doc = patching.apply_json_patch(base, patch_doc)
                else:
                    scale_doc = patching.apply_merge_patch(base, patch_doc)
            if not isinstance(scale_doc, dict):
                raise errors.bad_request("Scale must be an object")
            replicas = (scale_doc.get("spec") or {}).get("replicas", 0)
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid("Scale", t.name, [errors.Cause(
                    "FieldValueInvalid", f"Invalid value: {replicas!r}: must be greater than "
                    "or equal to 0", "spec.replicas")], "autoscaling")
            rv = (scale_doc.get("metadata") or {}).get("resourceVersion")
            if rv and rv != current.metadata.resourceVersion:
                raise errors.conflict(t.kind.plural, t.name, errors.OBJECT_MODIFIED,
                                      t.kind.group)
            current.spec.replicas = replicas
            return current

        updated, _ = await store.guaranteed_update(t.namespace, t.name, mutate)
        return Response(200, dumps(to_scale(updated)))

    async def _binding(self, request: Request, t: Target, store: ResourceStore) -> Response:
        binding_kind = self.kinds.by_resource("", "v1", "bindings")
        assert binding_kind is not None
        binding, _ = await self._read_object(request, binding_kind)
        node = binding.target.name  # type: ignore[attr-defined]

        target_kind = binding.target.kind  # type: ignore[attr-defined]

        async def mutate(pod: Any) -> Message:
            bind(pod, node, self.registry.ctx, target_kind=target_kind)
            return pod  # type: ignore[no-any-return]

        await store.guaranteed_update(t.namespace, t.name, mutate, subresource="binding")
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                  "code": 201}
        return Response(201, dumps(status))


# -- helpers -------------------------------------------------------------------------


def _not_found_path() -> StatusError:
    return errors.StatusError(404, "NotFound", "the server could not find the requested resource")


def _warning_headers(warnings: list[str] | None) -> dict[str, str]:
    if not warnings:
        return {}
    value = ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in warnings[:20])
    return {"Warning": value}


def parse_body(body: bytes, content_type: str) -> Any:
    """A request body as JSON-ready data; 415 for content types we cannot read."""
    if content_type in ("", JSON, "*/*", "application/merge-patch+json",
                        "application/json-patch+json", "application/strategic-merge-patch+json"):
        try:
            return json.loads(body)
        except ValueError as exc:
            raise errors.bad_request(f"error decoding request body: {exc}") from None
    if content_type in (YAML, "application/x-yaml", "text/yaml", "application/apply-patch+yaml"):
        try:
            return yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error decoding YAML: {exc}") from None
    raise errors.unsupported_media_type(content_type)


def _media_types(accept: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        params = {}
        for p in pieces[1:]:
            key, _, value = p.partition("=")
            params[key.strip()] = value.strip()
        out.append((pieces[0].lower(), params))
    return out


def _accept_param(accept: str, name: str) -> str:
    for media, params in _media_types(accept):
        if media == JSON and params.get("as") == "Table" and name in params:
            return params[name]
    return ""


def negotiate(accept: str) -> str:
    """JSON, YAML or TABLE for an Accept header (406 when none is acceptable)."""
    if not accept:
        return JSON
    for media, params in _media_types(accept):
        if media == JSON:
            if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" \
                    and params.get("v") in ("v1", "v1beta1"):
                return TABLE
            if "as" in params:
                continue  # some other conversion we do not offer (e.g. PartialObjectMetadata)
            return JSON
        if media in (YAML, "application/x-yaml", "text/yaml"):
            return YAML
        if media in ("*/*", "application/*"):
            return JSON
        if media == PROTOBUF_CONTENT_TYPE:
            continue  # answered in JSON, which every client that asks for protobuf accepts
    raise errors.not_acceptable(accept)


def _wants_yaml(accept: str) -> bool:
    try:
        return negotiate(accept) == YAML
    except StatusError:
        return False


def utc_now() -> datetime:
    return datetime.now(UTC)
