"""``Client``: typed verbs over any ``Transport``.

Objects are the generated protobuf messages; the kind is found from the
message class (``client.get(core_pb2.Pod, "web", namespace="default")``
returns a ``core_pb2.Pod``). Namespaces come from the argument, else from
``obj.metadata.namespace``; a namespaced kind without either is a
``ValueError``, a clear error instead of a silent "default".

``connect(url)`` picks the transport from the URL: ``http(s)://`` is REST,
``grpc://host:port`` is gRPC.
"""

from __future__ import annotations

import builtins
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, TypeVar, cast

from google.protobuf.message import Message

from pilothouse.api.kinds import Kind, KindRegistry
from pilothouse.client.transport import (
    DeleteOptions,
    KindIndex,
    ListOptions,
    ObjectList,
    PatchType,
    Transport,
    WatchEvent,
    WatchOptions,
)

__all__ = ["Client", "connect"]

M = TypeVar("M", bound=Message)


class Client:
    """Typed async client. Holds one transport; ``close()`` (or ``async with``) closes it."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.kinds: KindRegistry = transport.kinds
        self._index = KindIndex(self.kinds)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    # -- kinds and namespaces ---------------------------------------------------

    def kind_of(self, cls_or_obj: type[Message] | Message) -> Kind:
        """The served kind of a message class (or of an object's class)."""
        if isinstance(cls_or_obj, Message):
            return self._index.for_object(cls_or_obj)
        return self._index.for_message(cls_or_obj)

    @staticmethod
    def _namespace(kind: Kind, namespace: str, obj: Message | None = None) -> str:
        if not kind.namespaced:
            return ""
        ns = namespace or (obj.metadata.namespace if obj is not None else "")  # type: ignore[attr-defined]
        if not ns:
            raise ValueError(f"{kind.kind} is namespaced: give a namespace "
                             "(argument or metadata.namespace)")
        return str(ns)

    @staticmethod
    def _name(kind: Kind, obj: Message) -> str:
        name = obj.metadata.name  # type: ignore[attr-defined]
        if not name:
            raise ValueError(f"{kind.kind} has no metadata.name")
        return str(name)

    # -- verbs ------------------------------------------------------------------

    async def get(self, cls: type[M], name: str, *, namespace: str = "") -> M:
        kind = self.kind_of(cls)
        return cast(M, await self.transport.get(kind, self._namespace(kind, namespace), name))

    async def list(self, cls: type[M], *, namespace: str = "", label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_token: str = "",
                   resource_version: str = "",
                   resource_version_match: str = "") -> ObjectList[M]:
        """One page (all items when ``limit`` is 0). ``namespace=""`` lists all namespaces."""
        kind = self.kind_of(cls)
        ns = namespace if kind.namespaced else ""
        options = ListOptions(label_selector, field_selector, limit, continue_token,
                              resource_version, resource_version_match)
        return cast(ObjectList[M], await self.transport.list(kind, ns, options))

    async def list_all(self, cls: type[M], *, namespace: str = "", label_selector: str = "",
                       field_selector: str = "", page_size: int = 500) -> ObjectList[M]:
        """Every item, fetched ``page_size`` at a time; the first page's resourceVersion
        (the paged list is one consistent snapshot)."""
        first = await self.list(cls, namespace=namespace, label_selector=label_selector,
                                field_selector=field_selector, limit=page_size)
        items = builtins.list(first.items)
        token = first.continue_token
        while token:
            page = await self.list(cls, namespace=namespace, label_selector=label_selector,
                                   field_selector=field_selector, limit=page_size,
                                   continue_token=token)
            items.extend(page.items)
            token = page.continue_token
        return ObjectList(items, first.resource_version)

    async def create(self, obj: M, *, namespace: str = "", dry_run: bool = False) -> M:
        kind = self.kind_of(obj)
        created = await self.transport.create(kind, self._namespace(kind, namespace, obj), obj,
                                              dry_run=dry_run)
        assert created is not None
        return cast(M, created)

    async def update(self, obj: M, *, namespace: str = "", dry_run: bool = False) -> M:
        """PUT the whole object; conditional on ``metadata.resourceVersion`` when set."""
        kind = self.kind_of(obj)
        return cast(M, await self.transport.update(
            kind, self._namespace(kind, namespace, obj), self._name(kind, obj), obj,
            dry_run=dry_run))

    async def update_status(self, obj: M, *, namespace: str = "", dry_run: bool = False) -> M:
        """PUT to the ``status`` subresource (only ``status`` changes are kept)."""
        kind = self.kind_of(obj)
        return cast(M, await self.transport.update(
            kind, self._namespace(kind, namespace, obj), self._name(kind, obj), obj,
            subresource="status", dry_run=dry_run))

    async def finalize(self, namespace: M, *, dry_run: bool = False) -> M:
        """PUT a Namespace to its ``finalize`` subresource: only ``spec.finalizers``
        is taken from it (the namespace controller's last step)."""
        kind = self.kind_of(namespace)
        return cast(M, await self.transport.update(
            kind, "", self._name(kind, namespace), namespace, subresource="finalize",
            dry_run=dry_run))

    async def patch(self, cls: type[M], name: str,
                    patch: dict[str, Any] | builtins.list[Any] | bytes, *,
                    namespace: str = "", patch_type: PatchType = "merge",
                    subresource: str = "", dry_run: bool = False) -> M:
        """Patch with a merge (RFC 7386), strategic merge, or JSON (RFC 6902) patch."""
        if patch_type not in ("merge", "strategic", "json"):
            raise ValueError(f"patch_type must be merge, strategic or json, not {patch_type!r}")
        kind = self.kind_of(cls)
        body = patch if isinstance(patch, bytes) else json.dumps(patch).encode()
        return cast(M, await self.transport.patch(
            kind, self._namespace(kind, namespace), name, body, patch_type,
            subresource=subresource, dry_run=dry_run))

    async def delete(self, cls: type[M], name: str, *, namespace: str = "",
                     grace_period_seconds: int | None = None, propagation_policy: str = "",
                     precondition_uid: str = "", precondition_resource_version: str = "",
                     dry_run: bool = False) -> M | None:
        """Delete; returns the object's last state when the server sends it."""
        kind = self.kind_of(cls)
        options = DeleteOptions(grace_period_seconds, propagation_policy, precondition_uid,
                                precondition_resource_version, dry_run)
        return cast("M | None", await self.transport.delete(
            kind, self._namespace(kind, namespace), name, options))

    @contextlib.asynccontextmanager
    async def watch(self, cls: type[M], *, namespace: str = "", resource_version: str = "",
                    label_selector: str = "", field_selector: str = "",
                    allow_bookmarks: bool = True,
                    timeout_seconds: int | None = None,
                    ) -> AsyncIterator[AsyncIterator[WatchEvent[M]]]:
        """``async with client.watch(Pod, resource_version=rv) as events: async for ev in events``.

        Leaving the block closes the stream. The iterator ends when the server
        ends the watch; resume from the last event's ``resource_version``.
        """
        kind = self.kind_of(cls)
        ns = namespace if kind.namespaced else ""
        options = WatchOptions(label_selector, field_selector, resource_version,
                               allow_bookmarks, timeout_seconds)
        stream = cast(AsyncGenerator[WatchEvent[M], None],
                      self.transport.watch(kind, ns, options))
        try:
            yield stream
        finally:
            await stream.aclose()

    # -- subresources that are not the object ---------------------------------------------

    async def bind(self, namespace: str, pod_name: str, node_name: str, *,
                   pod_uid: str = "") -> None:
        """POST a Binding to ``pods/{pod_name}/binding`` (what the scheduler does)."""
        from pilothouse.gen.k8s.core.v1 import core_pb2

        binding = core_pb2.Binding()
        binding.metadata.name = pod_name
        binding.metadata.namespace = namespace
        if pod_uid:
            binding.metadata.uid = pod_uid
        binding.target.kind = "Node"
        binding.target.apiVersion = "v1"
        binding.target.name = node_name
        await self.transport.create(self.kind_of(core_pb2.Pod), namespace, binding,
                                    name=pod_name, subresource="binding")

    async def evict(self, namespace: str, pod_name: str, *,
                    grace_period_seconds: int | None = None) -> None:
        """POST an Eviction to ``pods/{pod_name}/eviction``."""
        from pilothouse.gen.k8s.core.v1 import core_pb2
        from pilothouse.gen.k8s.policy.v1 import policy_pb2

        eviction = policy_pb2.Eviction()
        eviction.metadata.name = pod_name
        eviction.metadata.namespace = namespace
        if grace_period_seconds is not None:
            eviction.deleteOptions.gracePeriodSeconds = grace_period_seconds
        await self.transport.create(self.kind_of(core_pb2.Pod), namespace, eviction,
                                    name=pod_name, subresource="eviction")


def connect(url: str, *, kinds: KindRegistry | None = None, timeout: float = 30.0) -> Client:
    """A client for ``url``: ``http://``/``https://`` (REST) or ``grpc://host:port``."""
    if url.startswith(("http://", "https://")):
        from pilothouse.client.rest import RestTransport

        return Client(RestTransport(url, kinds=kinds, timeout=timeout))
    if url.startswith("grpc://"):
        from pilothouse.client.grpc_transport import GrpcTransport

        return Client(GrpcTransport(url.removeprefix("grpc://"), kinds=kinds, timeout=timeout))
    raise ValueError(f"unsupported apiserver URL {url!r}: expected http(s)://host:port "
                     "or grpc://host:port")
