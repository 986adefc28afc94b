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
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import yaml
from google.protobuf.message import DecodeError, Message
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pilothouse.api.codec import message_to_dict
from pilothouse.api.kinds import Kind, KindRegistry
from pilothouse.api.serialization import (
    PROTOBUF_CONTENT_TYPE,
    SerializationError,
    decode_protobuf,
    decode_protobuf_envelope,
    dumps,
    object_to_dict,
)
from pilothouse.gen.k8s.meta.v1 import meta_pb2
from pilothouse.services.apiserver import (
    discovery,
    errors,
    operations,
    proxy,
    streaming,
    tables,
    watchstream,
)
from pilothouse.services.apiserver.errors import StatusError
from pilothouse.services.apiserver.metrics import APIServerMetrics
from pilothouse.services.apiserver.openapi import OpenAPIDocuments
from pilothouse.services.apiserver.operations import (
    DEFAULT_WATCH_TIMEOUT,
    OBJECT_SUBRESOURCES,
    Bookmark,
)
from pilothouse.services.apiserver.registry import DeleteOptions, Registry, ResourceStore
from pilothouse.services.apiserver.watchcache import CacheEvent, Matcher

log = logging.getLogger("pilothouse.apiserver.rest")

MAX_BODY = 3 * 1024 * 1024
JSON = "application/json"
YAML = "application/yaml"
TABLE = "table"
NAMESPACE_SUBRESOURCES = ("status", "finalize")

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
    raw_query: bytes = b""  # for parameters given more than once (pods/exec command=)

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
        self.streaming = streaming.StreamingProxy(registry, metrics=self.metrics)

    # -- ASGI ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "websocket":  # pods/exec, attach, portforward (streaming.py)
            await self.streaming.websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                               keep_blank_values=True))
        request = Request(scope["method"], scope["path"], query, headers, receive,
                          scope.get("query_string", b""))
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
            # Object counts come from the watch caches, which hold every object.
            for store in self.registry.stores.values():
                self.metrics.storage_objects.labels(store.kind.resource).set(
                    len(store.cache.objects))
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
        if t.subresource == "log" and t.kind.plural == "pods" and not t.kind.group:
            labels["verb"] = "CONNECT"
            if method != "GET":
                raise errors.method_not_supported("pods/log", method)
            await self._pod_log(request, t, store, send)
            return None
        if t.subresource in streaming.SUBRESOURCES and t.kind.plural == "pods" and \
                not t.kind.group and t.namespace:
            labels["verb"] = "CONNECT"  # not an upgrade: checked, then refused (streaming.py)
            if method not in ("GET", "POST"):
                raise errors.method_not_supported(f"pods/{t.subresource}", method)
            raise await self.streaming.http(t.namespace, t.name, t.subresource,
                                            request.raw_query)
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
        operations.require_verb(kind, verb)

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
        return operations.decode_document(kind, doc, request.query.get("fieldValidation", ""))

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
        body = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        warnings: list[str] = []
        mutate = operations.patch_mutation(t.kind, t.name, content_type, body,
                                           mode=request.query.get("fieldValidation", ""),
                                           warnings=warnings)
        updated, _ = await store.guaranteed_update(
            t.namespace, t.name, mutate, subresource=subresource,
            dry_run=bool(request.query.get("dryRun")))
        return self._object_response(request, t.kind, updated, 200, warnings)

    async def _delete(self, request: Request, t: Target, store: ResourceStore) -> Response:
        options = DeleteOptions.from_dict(await _delete_options_doc(request), request.query)
        obj, deleted = await store.delete(t.namespace, t.name, options)
        # Kubernetes answers 200 with the object both when it is gone and when its
        # deletion is pending (grace period, finalizers).
        del deleted
        return self._object_response(request, t.kind, obj, 200)

    async def _delete_collection(self, request: Request, t: Target,
                                 store: ResourceStore) -> Response:
        options = DeleteOptions.from_dict(await _delete_options_doc(request), request.query)
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
        return operations.matcher(t.kind, request.query.get("labelSelector", ""),
                                  request.query.get("fieldSelector", ""))

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
        try:
            timeout = int(request.query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        except ValueError:
            raise errors.bad_request("timeoutSeconds must be an integer") from None
        watch = operations.open_watch(
            store, namespace=t.namespace, name=t.name, matches=self._matcher(request, t),
            node_name=operations.watch_node_name(t.kind, request.query.get("fieldSelector", "")),
            resource_version=request.query.get("resourceVersion", ""),
            resource_version_match=request.query.get("resourceVersionMatch", ""),
            send_initial_events=request.flag("sendInitialEvents"),
            allow_watch_bookmarks=request.flag("allowWatchBookmarks"),
            timeout_seconds=timeout,
            filter_key=(request.query.get("labelSelector", ""),
                        request.query.get("fieldSelector", ""), t.name))
        fmt = negotiate(request.headers.get("accept", ""))
        gauge = self.metrics.registered_watchers.labels(t.kind.group, t.kind.version, t.kind.kind)
        longrunning = self.metrics.longrunning.labels("WATCH", t.kind.group, t.kind.version,
                                                      t.kind.plural, "", "cluster", "apiserver")
        gauge.inc()
        longrunning.inc()

        async def wait_disconnect() -> None:
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    return

        async def pump() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", JSON.encode()), (b"cache-control", b"no-cache, private")]})
            writer = watchstream.ChunkedWriter.for_send(send) if fmt == JSON else None
            if writer is not None:
                await self._pump_direct(watch, t.kind, writer)
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            first_table = True
            events = operations.watch_events(watch)
            async with contextlib.aclosing(events):
                async for item in events:
                    if isinstance(item, Bookmark):
                        await self._send_bookmark(send, t.kind, item.rv,
                                                  initial_end=item.initial_end)
                        continue
                    if fmt == TABLE:
                        table = self._table(t.kind, [item.obj.document()], request)
                        if not first_table:
                            table.pop("columnDefinitions", None)
                            table["columnDefinitions"] = None
                        first_table = False
                        line = dumps({"type": item.type, "object": table}) + b"\n"
                    else:
                        line = b'{"type":"' + item.type.encode() + b'","object":' + \
                            item.obj.json() + b"}\n"
                    await send({"type": "http.response.body", "body": line, "more_body": True})
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        # The stream ends with the watch (timeout, closed watcher) or as soon as the
        # client goes away, whichever comes first.
        disconnect_task = asyncio.create_task(wait_disconnect())
        pump_task = asyncio.create_task(pump())
        try:
            await asyncio.wait({disconnect_task, pump_task},
                               return_when=asyncio.FIRST_COMPLETED)
            if pump_task.done():
                pump_task.result()
        finally:
            for task in (pump_task, disconnect_task):
                task.cancel()
            await asyncio.gather(pump_task, disconnect_task, return_exceptions=True)
            watch.cache.remove_watcher(watch.watcher)
            gauge.dec()
            longrunning.dec()

    @staticmethod
    async def _pump_direct(watch: operations.OpenWatch, kind: Kind,
                           writer: watchstream.ChunkedWriter) -> None:
        """A JSON watch over uvicorn HTTP/1.1: live events are written by the watch
        cache's sink as they happen; this writes what comes through the queue
        (initial events, bookmarks) and returns when the watch ends."""

        def sink(event: CacheEvent, shared: dict[Hashable, Any]) -> bool:
            return writer.write(watchstream.frame(event, shared))

        watch.watcher.sink = sink
        events = operations.watch_events(watch)
        async with contextlib.aclosing(events):
            async for item in events:
                if isinstance(item, Bookmark):
                    data = watchstream.chunk(_bookmark_line(kind, item.rv,
                                                            initial_end=item.initial_end))
                else:
                    data = watchstream.frame(item, {})
                if not writer.write(data):
                    return

    async def _send_bookmark(self, send: Send, kind: Kind, rv: int, *,
                             initial_end: bool = False) -> None:
        line = _bookmark_line(kind, rv, initial_end=initial_end)
        await send({"type": "http.response.body", "body": line, "more_body": True})

    # -- subresources ------------------------------------------------------------------

    async def _subresource(self, request: Request, t: Target, store: ResourceStore,
                           labels: dict[str, str]) -> Response:
        sub, method = t.subresource, request.method
        if t.kind.namespaced and not t.namespace:
            raise _not_found_path()
        if sub in OBJECT_SUBRESOURCES:
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

    async def _pod_log(self, request: Request, t: Target, store: ResourceStore,
                       send: Send) -> None:
        """pods/log, streamed from the kubelet of the pod's node (proxy.py)."""
        for number in ("tailLines", "sinceSeconds", "limitBytes"):
            value = request.query.get(number)
            if value is not None and not value.lstrip("-").isdigit():
                raise errors.bad_request(f"{number} must be an integer, got {value!r}")
        pod: Any = await store.get(t.namespace, t.name)
        container = proxy.log_container(pod, request.query.get("container", ""))
        if not pod.spec.nodeName:
            raise errors.bad_request(
                f'container "{container}" in pod "{t.name}" is waiting to start: '
                "the pod is not scheduled to a node yet")
        nodes = self.registry.store_for("", "nodes")
        node = await nodes.get("", pod.spec.nodeName)
        url = proxy.log_url(proxy.kubelet_endpoint(node), t.namespace, t.name, container,
                            request.query)
        chunks = proxy.stream(url)
        status, content_type, _ = await anext(chunks)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type.encode())]})
        try:
            async for _, _, chunk in chunks:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
        except StatusError:
            pass  # the kubelet went away mid-stream: end the response
        finally:
            await chunks.aclose()
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _scale(self, request: Request, t: Target, store: ResourceStore) -> Response:
        def to_scale(obj: Any) -> dict[str, Any]:
            doc: dict[str, Any] = {"kind": "Scale", "apiVersion": "autoscaling/v1"}
            doc.update(message_to_dict(operations.to_scale(obj)))
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
            rv = (scale_doc.get("metadata") or {}).get("resourceVersion")
            return operations.set_replicas(t.kind, t.name, current, replicas, rv)

        updated, _ = await store.guaranteed_update(t.namespace, t.name, mutate)
        return Response(200, dumps(to_scale(updated)))

    async def _binding(self, request: Request, t: Target, store: ResourceStore) -> Response:
        binding_kind = self.kinds.by_resource("", "v1", "bindings")
        assert binding_kind is not None
        binding, _ = await self._read_object(request, binding_kind)
        mutate = operations.bind_mutation(self.registry.ctx,
                                          binding.target.name,  # type: ignore[attr-defined]
                                          binding.target.kind)  # type: ignore[attr-defined]
        await store.guaranteed_update(t.namespace, t.name, mutate, subresource="binding")
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                  "code": 201}
        return Response(201, dumps(status))


# -- helpers -------------------------------------------------------------------------


def _bookmark_line(kind: Kind, rv: int, *, initial_end: bool = False) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj = {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": meta}
    return dumps({"type": "BOOKMARK", "object": obj}) + b"\n"


_not_found_path = operations.not_found_path


def _warning_headers(warnings: list[str] | None) -> dict[str, str]:
    if not warnings:
        return {}
    value = ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in warnings[:20])
    return {"Warning": value}


async def _delete_options_doc(request: Request) -> dict[str, Any] | None:
    """The DeleteOptions body of a DELETE as a JSON document (None without a body).

    Go clients built for protobuf (Helm's typed client) send DeleteOptions in
    Kubernetes' protobuf envelope, as they do every other body.
    """
    body = await request.body()
    if not body.strip():
        return None
    content_type = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
    if content_type == PROTOBUF_CONTENT_TYPE:
        try:
            envelope = decode_protobuf_envelope(body)
            message = meta_pb2.DeleteOptions.FromString(envelope.raw)
        except (SerializationError, DecodeError) as exc:
            raise errors.bad_request(f"error decoding DeleteOptions: {exc}") from None
        if envelope.typeMeta.kind not in ("", "DeleteOptions"):
            raise errors.bad_request(
                f"expected DeleteOptions, got {envelope.typeMeta.kind!r}")
        return message_to_dict(message)
    doc = parse_body(body, content_type)
    if not isinstance(doc, dict):
        raise errors.bad_request("DeleteOptions must be an object")
    return doc


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
