"""The apiserver's gRPC frontend: ``pilothouse.apiserver.v1.API``.

The same verbs as the REST frontend, generic over kinds (a request names
group, version, resource, namespace and name as a REST path does), calling
the same registry and the same shared request logic (``operations``), so
semantics and errors are the REST API's. The servicer is thin: resolve the
kind, check the scope, call the registry, encode; a ``StatusError`` becomes a
gRPC status code with the Kubernetes ``Status`` attached (``status_code``,
trailing metadata ``status-bin``).

Objects travel as their Kubernetes protobuf frame (``k8s\\0`` + runtime.Unknown),
the bytes storage holds (plus the resourceVersion); lists and watches reuse
each cached object version's encoding (``CachedObject.protobuf``), so N
watchers of one change cost one encoding.

The server beside the servicer also answers gRPC health checking (SERVING
while the apiserver is ready) and reflection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pilothouse.api.kinds import SCALE_MESSAGE, Kind
from pilothouse.api.serialization import (
    PROTOBUF_MAGIC,
    SerializationError,
    decode_protobuf,
    encode_value,
)
from pilothouse.gen.k8s.meta.v1 import meta_pb2
from pilothouse.gen.pilothouse.apiserver.v1 import apiserver_pb2 as pb
from pilothouse.gen.pilothouse.apiserver.v1 import apiserver_pb2_grpc as pb_grpc
from pilothouse.services.apiserver import errors, operations
from pilothouse.services.apiserver.errors import StatusError
from pilothouse.services.apiserver.metrics import APIServerMetrics
from pilothouse.services.apiserver.operations import Bookmark
from pilothouse.services.apiserver.registry import DeleteOptions, Registry, ResourceStore
from pilothouse.services.apiserver.rest import MAX_BODY, parse_body

log = logging.getLogger("pilothouse.apiserver.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["API"].full_name
STATUS_METADATA_KEY = "status-bin"
# Lists of many objects can be large; requests are bounded by MAX_BODY (413) instead.
MAX_MESSAGE = 64 * 1024 * 1024
SCALE_KIND = Kind("autoscaling", "v1", "Scale", "scales", True, SCALE_MESSAGE)
PATCH_TYPES = {
    pb.PATCH_TYPE_JSON: operations.JSON_PATCH,
    pb.PATCH_TYPE_MERGE: operations.MERGE_PATCH,
    pb.PATCH_TYPE_STRATEGIC: operations.STRATEGIC_PATCH,
    pb.PATCH_TYPE_APPLY: operations.APPLY_PATCH,
}
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    406: grpc.StatusCode.INVALID_ARGUMENT,
    410: grpc.StatusCode.OUT_OF_RANGE,  # Expired/Gone: the client must re-list
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
R = TypeVar("R")


def status_code(exc: StatusError) -> grpc.StatusCode:
    """The gRPC code of a Kubernetes Status (409 splits: AlreadyExists vs Conflict)."""
    if exc.code == 409:
        return (grpc.StatusCode.ALREADY_EXISTS if exc.reason == "AlreadyExists"
                else grpc.StatusCode.ABORTED)
    return _CODES.get(exc.code, grpc.StatusCode.INTERNAL)


def status_message(exc: StatusError) -> meta_pb2.Status:
    """The meta/v1 Status of an error, as the REST API would answer it."""
    doc = exc.to_status()
    status = meta_pb2.Status(status=doc["status"], message=doc["message"], code=doc["code"])
    status.metadata.SetInParent()
    if "reason" in doc:
        status.reason = doc["reason"]
    details = doc.get("details")
    if details:
        d = status.details
        for key in ("name", "group", "kind", "retryAfterSeconds"):
            if key in details:
                setattr(d, key, details[key])
        for cause in details.get("causes", []):
            d.causes.add(reason=cause["reason"], message=cause["message"],
                         field=cause.get("field", ""))
    return status


def _object(kind: Kind, obj: Any) -> pb.Object:
    return pb.Object(raw=encode_value(kind, obj))


@dataclass
class _Labels:
    """apiserver_request_* labels of one call (as REST records them)."""

    verb: str
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    scope: str = ""
    dry_run: str = ""


class APIServicer(pb_grpc.APIServicer):
    """``pilothouse.apiserver.v1.API`` over a ``Registry`` (see the module docstring)."""

    def __init__(self, registry: Registry, *, metrics: APIServerMetrics) -> None:
        self.registry = registry
        self.kinds = registry.kinds
        self.metrics = metrics

    # -- plumbing ------------------------------------------------------------------

    def _kind(self, group: str, version: str, resource: str) -> Kind:
        kind = self.kinds.by_resource(group, version, resource)
        if kind is None:
            raise operations.not_found_path()
        return kind

    @staticmethod
    def _object_namespace(kind: Kind, namespace: str, *, collection: bool = False) -> str:
        """Check the namespace against the kind's scope ('' on collections: all)."""
        if kind.namespaced:
            if not namespace and not collection:
                raise errors.bad_request(f"namespace is required: {kind.resource} are "
                                         "namespaced")
        elif namespace:
            raise errors.bad_request(f"{kind.resource} are cluster-scoped: namespace must be "
                                     f"empty, got {namespace!r}")
        return namespace

    @staticmethod
    def _subresource(kind: Kind, sub: str) -> str:
        if sub and (sub not in kind.subresources or sub not in operations.OBJECT_SUBRESOURCES):
            raise operations.not_found_path()
        return sub

    @staticmethod
    def _name(name: str) -> str:
        if not name:
            raise errors.bad_request("name is required")
        return name

    def _decode(self, kind: Kind, obj: pb.Object, mode: str) -> tuple[Message, list[str]]:
        """A request's object: a Kubernetes protobuf frame or a JSON document."""
        raw = obj.raw
        if len(raw) > MAX_BODY:
            raise errors.too_large(MAX_BODY)
        if not raw:
            raise errors.bad_request("object is required")
        if raw.startswith(PROTOBUF_MAGIC) and kind.message is not None:
            operations.field_validation_mode(mode)
            try:
                return decode_protobuf(kind, raw), []
            except SerializationError as exc:
                raise errors.bad_request(f"error decoding protobuf object: {exc}") from None
        return operations.decode_document(kind, parse_body(raw, "application/json"), mode)

    async def _call(self, context: Context, labels: _Labels,
                    handler: Callable[[], Awaitable[R]]) -> R:
        """Run one unary call: metrics, and a StatusError (or a bug) as a gRPC status."""
        started = time.perf_counter()
        mutating = labels.verb not in ("GET", "LIST")
        inflight = self.metrics.inflight.labels("mutating" if mutating else "readOnly")
        inflight.inc()
        code = 500
        try:
            result = await handler()
            code = 201 if labels.verb == "POST" else 200
            return result
        except StatusError as exc:
            code = exc.code
            await self._abort(context, exc)
        except Exception as exc:  # a bug: the client still gets a Status
            log.exception("internal error serving %s %s", labels.verb, labels.resource)
            await self._abort(context, errors.internal(str(exc) or type(exc).__name__))
        finally:
            inflight.dec()
            self._record(labels, code, time.perf_counter() - started)
        raise AssertionError("unreachable: abort raises")

    def _record(self, labels: _Labels, code: int, elapsed: float | None) -> None:
        if not labels.resource:
            return  # an unknown resource: REST records nothing either
        common = (labels.verb, labels.dry_run, labels.group, labels.version, labels.resource,
                  labels.subresource, labels.scope)
        self.metrics.request_total.labels(*common, "apiserver", str(code)).inc()
        if elapsed is not None:
            self.metrics.request_duration.labels(*common, "apiserver").observe(elapsed)

    @staticmethod
    async def _abort(context: Context, exc: StatusError) -> None:
        await context.abort(
            status_code(exc), exc.message,
            trailing_metadata=((STATUS_METADATA_KEY, status_message(exc).SerializeToString()),))

    def _target(self, labels: _Labels, request: Any, *, subresource: str = "",
                dry_run: bool = False) -> tuple[Kind, ResourceStore]:
        kind = self._kind(request.group, request.version, request.resource)
        name = getattr(request, "name", "")
        labels.group, labels.version, labels.resource = kind.group, kind.version, kind.plural
        labels.subresource = subresource
        labels.scope = "resource" if name else "namespace" if request.namespace else "cluster"
        labels.dry_run = "All" if dry_run else ""
        return kind, self.registry.store(kind)

    # -- reads ---------------------------------------------------------------------

    async def Get(self, request: pb.GetRequest, context: Context) -> pb.ObjectResponse:
        labels = _Labels("GET")

        async def handle() -> pb.ObjectResponse:
            kind, store = self._target(labels, request, subresource=request.subresource)
            operations.require_verb(kind, "get")
            self._subresource(kind, request.subresource)
            namespace = self._object_namespace(kind, request.namespace)
            obj = await store.get(namespace, self._name(request.name),
                                  resource_version=request.resource_version)
            return pb.ObjectResponse(object=_object(kind, obj))

        return await self._call(context, labels, handle)

    async def List(self, request: pb.ListRequest, context: Context) -> pb.ListResponse:
        labels = _Labels("LIST")

        async def handle() -> pb.ListResponse:
            kind, store = self._target(labels, request)
            operations.require_verb(kind, "list")
            namespace = self._object_namespace(kind, request.namespace, collection=True)
            opts = request.options
            result = await store.list(
                namespace,
                matches=operations.matcher(kind, opts.label_selector, opts.field_selector),
                limit=opts.limit, continue_token=opts.continue_token,
                resource_version=opts.resource_version,
                resource_version_match=opts.resource_version_match)
            response = pb.ListResponse(
                items=[pb.Object(raw=c.protobuf()) for c in result.items],
                resource_version=str(result.resource_version),
                continue_token=result.continue_token)
            if result.continue_token and result.remaining is not None:
                response.remaining_item_count = result.remaining
            return response

        return await self._call(context, labels, handle)

    # -- writes --------------------------------------------------------------------

    async def Create(self, request: pb.CreateRequest, context: Context) -> pb.ObjectResponse:
        labels = _Labels("POST")

        async def handle() -> pb.ObjectResponse:
            kind, store = self._target(labels, request, dry_run=request.dry_run)
            operations.require_verb(kind, "create")
            obj, warnings = self._decode(kind, request.object, request.field_validation)
            namespace = request.namespace
            if kind.namespaced and not namespace:
                namespace = obj.metadata.namespace  # type: ignore[attr-defined]
            namespace = self._object_namespace(kind, namespace)
            created = await store.create(namespace, obj, dry_run=request.dry_run)
            return pb.ObjectResponse(object=_object(kind, created), warnings=warnings)

        return await self._call(context, labels, handle)

    async def Update(self, request: pb.UpdateRequest, context: Context) -> pb.ObjectResponse:
        labels = _Labels("PUT")

        async def handle() -> pb.ObjectResponse:
            kind, store = self._target(labels, request, subresource=request.subresource,
                                       dry_run=request.dry_run)
            operations.require_verb(kind, "update")
            sub = self._subresource(kind, request.subresource)
            obj, warnings = self._decode(kind, request.object, request.field_validation)
            meta: Any = obj.metadata  # type: ignore[attr-defined]
            namespace = request.namespace or (meta.namespace if kind.namespaced else "")
            namespace = self._object_namespace(kind, namespace)
            name = self._name(request.name or meta.name)
            updated, created = await store.update(namespace, name, obj, subresource=sub,
                                                  dry_run=request.dry_run)
            return pb.ObjectResponse(object=_object(kind, updated), warnings=warnings,
                                     created=created)

        return await self._call(context, labels, handle)

    async def Patch(self, request: pb.PatchRequest, context: Context) -> pb.ObjectResponse:
        labels = _Labels("PATCH")

        async def handle() -> pb.ObjectResponse:
            kind, store = self._target(labels, request, subresource=request.subresource,
                                       dry_run=request.dry_run)
            operations.require_verb(kind, "patch")
            sub = self._subresource(kind, request.subresource)
            namespace = self._object_namespace(kind, request.namespace)
            name = self._name(request.name)
            patch_type = PATCH_TYPES.get(request.type)
            if patch_type is None:
                raise errors.bad_request("patch type is required: JSON, MERGE or STRATEGIC")
            if len(request.patch) > MAX_BODY:
                raise errors.too_large(MAX_BODY)
            warnings: list[str] = []
            mutate = operations.patch_mutation(kind, name, patch_type, request.patch,
                                               mode=request.field_validation,
                                               warnings=warnings)
            updated, _ = await store.guaranteed_update(namespace, name, mutate, subresource=sub,
                                                       dry_run=request.dry_run)
            return pb.ObjectResponse(object=_object(kind, updated), warnings=warnings)

        return await self._call(context, labels, handle)

    @staticmethod
    def _delete_options(opts: pb.DeleteOptions) -> DeleteOptions:
        doc: dict[str, Any] = {"propagationPolicy": opts.propagation_policy,
                               "preconditions": {"uid": opts.preconditions.uid,
                                                 "resourceVersion":
                                                     opts.preconditions.resource_version}}
        if opts.HasField("grace_period_seconds"):
            doc["gracePeriodSeconds"] = opts.grace_period_seconds
        if opts.dry_run:
            doc["dryRun"] = ["All"]
        return DeleteOptions.from_dict(doc, {})

    async def Delete(self, request: pb.DeleteRequest, context: Context) -> pb.DeleteResponse:
        labels = _Labels("DELETE")

        async def handle() -> pb.DeleteResponse:
            kind, store = self._target(labels, request, dry_run=request.options.dry_run)
            operations.require_verb(kind, "delete")
            namespace = self._object_namespace(kind, request.namespace)
            obj, deleted = await store.delete(namespace, self._name(request.name),
                                              self._delete_options(request.options))
            return pb.DeleteResponse(object=_object(kind, obj), deleted=deleted)

        return await self._call(context, labels, handle)

    async def DeleteCollection(self, request: pb.DeleteCollectionRequest,
                               context: Context) -> pb.ListResponse:
        labels = _Labels("DELETECOLLECTION")

        async def handle() -> pb.ListResponse:
            kind, store = self._target(labels, request, dry_run=request.options.dry_run)
            operations.require_verb(kind, "deletecollection")
            namespace = self._object_namespace(kind, request.namespace, collection=True)
            lo = request.list_options
            deleted = await store.delete_collection(
                namespace, operations.matcher(kind, lo.label_selector, lo.field_selector),
                self._delete_options(request.options))
            rv = await self.registry.storage.current_revision()
            return pb.ListResponse(items=[_object(kind, o) for o in deleted],
                                   resource_version=str(rv))

        return await self._call(context, labels, handle)

    # -- subresources ----------------------------------------------------------------

    async def Bind(self, request: pb.BindRequest, context: Context) -> pb.ObjectResponse:
        labels = _Labels("POST")

        async def handle() -> pb.ObjectResponse:
            kind = self._kind("", "v1", "pods")
            labels.version, labels.resource, labels.subresource = "v1", "pods", "binding"
            labels.scope, labels.dry_run = "resource", "All" if request.dry_run else ""
            store = self.registry.store(kind)
            namespace = self._object_namespace(kind, request.namespace)
            mutate = operations.bind_mutation(self.registry.ctx, request.target_name,
                                              request.target_kind)
            pod, _ = await store.guaranteed_update(namespace, self._name(request.name), mutate,
                                                   subresource="binding",
                                                   dry_run=request.dry_run)
            return pb.ObjectResponse(object=_object(kind, pod))

        return await self._call(context, labels, handle)

    def _scale_target(self, labels: _Labels, request: Any) -> tuple[Kind, ResourceStore, str]:
        kind, store = self._target(labels, request, subresource="scale")
        if "scale" not in kind.subresources:
            raise operations.not_found_path()
        return kind, store, self._object_namespace(kind, request.namespace)

    async def GetScale(self, request: pb.GetScaleRequest,
                       context: Context) -> pb.ObjectResponse:
        labels = _Labels("GET")

        async def handle() -> pb.ObjectResponse:
            _, store, namespace = self._scale_target(labels, request)
            obj = await store.get(namespace, self._name(request.name))
            return pb.ObjectResponse(object=_object(SCALE_KIND, operations.to_scale(obj)))

        return await self._call(context, labels, handle)

    async def UpdateScale(self, request: pb.UpdateScaleRequest,
                          context: Context) -> pb.ObjectResponse:
        labels = _Labels("PUT")

        async def handle() -> pb.ObjectResponse:
            kind, store, namespace = self._scale_target(labels, request)
            name = self._name(request.name)

            async def mutate(current: Any) -> Message:
                return operations.set_replicas(kind, name, current, request.replicas,
                                               request.resource_version)

            updated, _ = await store.guaranteed_update(namespace, name, mutate)
            return pb.ObjectResponse(object=_object(SCALE_KIND, operations.to_scale(updated)))

        return await self._call(context, labels, handle)

    # -- watch -----------------------------------------------------------------------

    async def Watch(self, request: pb.WatchRequest,
                    context: Context) -> AsyncIterator[pb.WatchEvent]:
        labels = _Labels("WATCH")
        try:
            kind, store = self._target(labels, request)
            namespace = self._object_namespace(kind, request.namespace, collection=True)
            watch = operations.open_watch(
                store, namespace=namespace, name=request.name,
                matches=operations.matcher(kind, request.label_selector,
                                           request.field_selector),
                node_name=operations.watch_node_name(kind, request.field_selector),
                resource_version=request.resource_version,
                resource_version_match=request.resource_version_match,
                send_initial_events=request.send_initial_events,
                allow_watch_bookmarks=request.allow_watch_bookmarks,
                timeout_seconds=request.timeout_seconds)
        except StatusError as exc:
            self._record(labels, exc.code, None)
            await self._abort(context, exc)
            return
        gauge = self.metrics.registered_watchers.labels(kind.group, kind.version, kind.kind)
        longrunning = self.metrics.longrunning.labels("WATCH", kind.group, kind.version,
                                                      kind.plural, "", "cluster", "apiserver")
        gauge.inc()
        longrunning.inc()
        try:
            # Ends on the watch's timeout or a closed watcher; a client that cancels
            # cancels this generator, and the finally below unregisters the watcher.
            async for item in operations.watch_events(watch):
                if isinstance(item, Bookmark):
                    yield self._bookmark(kind, item)
                else:
                    yield pb.WatchEvent(type=item.type, object=pb.Object(raw=item.obj.protobuf()),
                                        resource_version=str(item.rv))
        finally:
            watch.cache.remove_watcher(watch.watcher)
            gauge.dec()
            longrunning.dec()
            self._record(labels, 200, None)

    @staticmethod
    def _bookmark(kind: Kind, bookmark: Bookmark) -> pb.WatchEvent:
        annotations = {"k8s.io/initial-events-end": "true"} if bookmark.initial_end else {}
        obj: Any
        if kind.message is not None:
            obj = kind.new()
            obj.metadata.resourceVersion = str(bookmark.rv)
            obj.metadata.annotations.update(annotations)
        else:
            meta: dict[str, Any] = {"resourceVersion": str(bookmark.rv)}
            if annotations:
                meta["annotations"] = annotations
            obj = {"metadata": meta}
        return pb.WatchEvent(type="BOOKMARK", object=_object(kind, obj),
                             resource_version=str(bookmark.rv))


class GRPCServer:
    """The gRPC server of an apiserver: the API service, health and reflection."""

    def __init__(self, registry: Registry, *, metrics: APIServerMetrics) -> None:
        self.server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ])
        pb_grpc.add_APIServicer_to_server(APIServicer(registry, metrics=metrics), self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port. Health is
        NOT_SERVING until ``set_serving``."""
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise OSError(f"gRPC: cannot listen on {host}:{port}")
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        return self.port

    async def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting calls; running ones (watches) get ``grace`` seconds, then end."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
