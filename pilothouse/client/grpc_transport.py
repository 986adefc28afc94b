"""``GrpcTransport``: pilothouse's gRPC API (``pilothouse.apiserver.v1.API``).

Objects travel as Kubernetes protobuf frames (``k8s\\0`` + runtime.Unknown),
encoded and decoded with ``pilothouse.api.serialization`` — no JSON on this
path, which is why components use it by default. A failed call carries the
Kubernetes Status in the trailing metadata ``status-bin``; it becomes the same
``APIError`` the REST transport raises. A call that never reached an
apiserver (UNAVAILABLE without a Status) is an ``APIConnectionError``.

The channel is made on first use, inside the running event loop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import grpc
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from pilothouse.api.codec import message_to_dict
from pilothouse.api.kinds import Kind, KindRegistry
from pilothouse.api.serialization import SerializationError, decode_protobuf, encode_protobuf
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
from pilothouse.gen.k8s.meta.v1 import meta_pb2
from pilothouse.gen.pilothouse.apiserver.v1 import apiserver_pb2 as pb
from pilothouse.gen.pilothouse.apiserver.v1 import apiserver_pb2_grpc as pb_grpc

__all__ = ["GrpcTransport"]

STATUS_METADATA_KEY = "status-bin"
MAX_MESSAGE = 64 * 1024 * 1024
_PATCH_TYPES = {
    "merge": pb.PATCH_TYPE_MERGE,
    "strategic": pb.PATCH_TYPE_STRATEGIC,
    "json": pb.PATCH_TYPE_JSON,
}
# gRPC code -> (HTTP code, reason) for failures that carry no Status.
_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "BadRequest"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "Unauthorized"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "Forbidden"),
    grpc.StatusCode.NOT_FOUND: (404, "NotFound"),
    grpc.StatusCode.UNIMPLEMENTED: (405, "MethodNotAllowed"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "AlreadyExists"),
    grpc.StatusCode.ABORTED: (409, "Conflict"),
    grpc.StatusCode.OUT_OF_RANGE: (410, "Expired"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "TooManyRequests"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "Timeout"),
}
# Codes that mean "no apiserver answered" when no Status came with them.
_CONNECTION_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                     grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN)


def _status_from_metadata(metadata: Any) -> meta_pb2.Status | None:
    for key, value in metadata or ():
        if key == STATUS_METADATA_KEY and isinstance(value, bytes):
            status = meta_pb2.Status()
            try:
                status.ParseFromString(value)
            except ProtobufDecodeError:
                return None
            return status
    return None


def _api_error(status: meta_pb2.Status) -> APIError:
    details = message_to_dict(status.details) if status.HasField("details") else {}
    return APIError(status.code or 500, status.reason, status.message, dict(details))


def _error(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    status = _status_from_metadata(exc.trailing_metadata())
    if status is not None:
        return _api_error(status)
    code = exc.code()
    if code in _CONNECTION_CODES:
        return APIConnectionError(f"{what}: {code.name}: {exc.details() or ''}".rstrip(": "))
    http, reason = _HTTP.get(code, (500, "InternalError"))
    return APIError(http, reason, exc.details() or f"{what}: {code.name}")


class GrpcTransport:
    """gRPC transport to ``target`` (``host:port``). ``timeout`` bounds each unary call."""

    def __init__(self, target: str, *, kinds: KindRegistry | None = None,
                 timeout: float = 30.0, channel: grpc.aio.Channel | None = None) -> None:
        if not target and channel is None:
            raise ValueError("GrpcTransport needs a target (host:port) or a channel")
        self.kinds = kinds or KindRegistry.builtin()
        self._index = KindIndex(self.kinds)
        self.target = target
        self.timeout = timeout
        self._channel = channel
        self._owns_channel = channel is None
        self._stub: pb_grpc.APIStub | None = None

    @property
    def stub(self) -> pb_grpc.APIStub:
        if self._stub is None:
            if self._channel is None:
                self._channel = grpc.aio.insecure_channel(self.target, options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE),
                    ("grpc.max_send_message_length", MAX_MESSAGE),
                ])
            self._stub = pb_grpc.APIStub(self._channel)
        return self._stub

    # -- plumbing ---------------------------------------------------------------------

    def _decode(self, kind: Kind, obj: pb.Object) -> Message:
        try:
            return decode_protobuf(kind, obj.raw)
        except SerializationError as exc:
            raise APIError(500, "InternalError",
                           f"cannot decode {kind.kind} from the server: {exc}") from None

    @staticmethod
    def _gvr(kind: Kind) -> dict[str, str]:
        return {"group": kind.group, "version": kind.version, "resource": kind.plural}

    async def _unary(self, method: str, request: Message) -> Any:
        call = getattr(self.stub, method)
        try:
            return await call(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, method) from None

    # -- verbs ------------------------------------------------------------------------

    async def get(self, kind: Kind, namespace: str, name: str, *,
                  subresource: str = "") -> Message:
        response = await self._unary("Get", pb.GetRequest(
            **self._gvr(kind), namespace=namespace, name=name, subresource=subresource))
        return self._decode(kind, response.object)

    async def list(self, kind: Kind, namespace: str, options: ListOptions) -> ObjectList[Message]:
        response = await self._unary("List", pb.ListRequest(
            **self._gvr(kind), namespace=namespace, options=pb.ListOptions(
                label_selector=options.label_selector, field_selector=options.field_selector,
                limit=options.limit, continue_token=options.continue_token,
                resource_version=options.resource_version,
                resource_version_match=options.resource_version_match)))
        remaining = (response.remaining_item_count
                     if response.HasField("remaining_item_count") else None)
        return ObjectList([self._decode(kind, o) for o in response.items],
                          response.resource_version, response.continue_token, remaining)

    async def create(self, kind: Kind, namespace: str, obj: Message, *, name: str = "",
                     subresource: str = "", dry_run: bool = False) -> Message | None:
        if subresource == "binding":
            target: Any = obj.target  # type: ignore[attr-defined]
            await self._unary("Bind", pb.BindRequest(
                namespace=namespace, name=name, target_name=target.name,
                target_kind=target.kind, dry_run=dry_run))
            return None
        if subresource:
            raise APIError(405, "MethodNotAllowed",
                           f"{kind.plural}/{subresource} is not served over gRPC; use REST")
        response = await self._unary("Create", pb.CreateRequest(
            **self._gvr(kind), namespace=namespace,
            object=pb.Object(raw=encode_protobuf(kind, obj)), dry_run=dry_run))
        return self._decode(kind, response.object)

    async def update(self, kind: Kind, namespace: str, name: str, obj: Message, *,
                     subresource: str = "", dry_run: bool = False) -> Message:
        response = await self._unary("Update", pb.UpdateRequest(
            **self._gvr(kind), namespace=namespace, name=name, subresource=subresource,
            object=pb.Object(raw=encode_protobuf(kind, obj)), dry_run=dry_run))
        return self._decode(kind, response.object)

    async def patch(self, kind: Kind, namespace: str, name: str, patch: bytes,
                    patch_type: PatchType, *, subresource: str = "",
                    dry_run: bool = False) -> Message:
        response = await self._unary("Patch", pb.PatchRequest(
            **self._gvr(kind), namespace=namespace, name=name, subresource=subresource,
            type=_PATCH_TYPES[patch_type], patch=patch, dry_run=dry_run))
        return self._decode(kind, response.object)

    async def delete(self, kind: Kind, namespace: str, name: str,
                     options: DeleteOptions) -> Message | None:
        opts = pb.DeleteOptions(propagation_policy=options.propagation_policy,
                                dry_run=options.dry_run)
        if options.grace_period_seconds is not None:
            opts.grace_period_seconds = options.grace_period_seconds
        if options.precondition_uid or options.precondition_resource_version:
            opts.preconditions.uid = options.precondition_uid
            opts.preconditions.resource_version = options.precondition_resource_version
        response = await self._unary("Delete", pb.DeleteRequest(
            **self._gvr(kind), namespace=namespace, name=name, options=opts))
        if response.HasField("object") and response.object.raw:
            return self._decode(kind, response.object)
        return None

    async def watch(self, kind: Kind, namespace: str,
                    options: WatchOptions) -> AsyncGenerator[WatchEvent[Message], None]:
        request = pb.WatchRequest(
            group=kind.group, version=kind.version, resource=kind.plural,
            namespace=namespace, label_selector=options.label_selector,
            field_selector=options.field_selector, resource_version=options.resource_version,
            allow_watch_bookmarks=options.allow_bookmarks,
            timeout_seconds=options.timeout_seconds or 0)
        call = self.stub.Watch(request)
        try:
            async for event in call:
                if event.type == "ERROR":
                    raise _api_error(event.status)
                if event.type not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                    raise APIConnectionError(
                        f"watch of {kind.plural}: unknown event type {event.type!r}")
                yield WatchEvent(event.type, self._decode(kind, event.object))
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, f"watch of {kind.plural}") from None
        finally:
            call.cancel()

    async def close(self) -> None:
        if self._owns_channel and self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._stub = None
