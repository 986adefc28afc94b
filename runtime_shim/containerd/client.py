"""A small asyncio client for containerd's gRPC API (the "containerd client over gRPC").

Every call carries the namespace in the ``containerd-namespace`` metadata
header, as containerd's own Go client does; calls made while importing also
carry a lease (``containerd-lease``) so the garbage collector leaves
half-written content and snapshots alone until the image references them.
"""

from __future__ import annotations

import contextlib
import datetime
import secrets
from collections.abc import AsyncIterator, Iterable

import grpc

from pilothouse.gen.containerd.services.containers.v1 import containers_pb2_grpc
from pilothouse.gen.containerd.services.content.v1 import content_pb2 as content
from pilothouse.gen.containerd.services.content.v1 import content_pb2_grpc
from pilothouse.gen.containerd.services.diff.v1 import diff_pb2_grpc
from pilothouse.gen.containerd.services.events.v1 import events_pb2_grpc
from pilothouse.gen.containerd.services.images.v1 import images_pb2_grpc
from pilothouse.gen.containerd.services.leases.v1 import leases_pb2 as leases
from pilothouse.gen.containerd.services.leases.v1 import leases_pb2_grpc
from pilothouse.gen.containerd.services.namespaces.v1 import namespace_pb2 as namespaces
from pilothouse.gen.containerd.services.namespaces.v1 import namespace_pb2_grpc
from pilothouse.gen.containerd.services.snapshots.v1 import snapshots_pb2_grpc
from pilothouse.gen.containerd.services.tasks.v1 import tasks_pb2_grpc
from pilothouse.gen.containerd.services.version.v1 import version_pb2_grpc

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
CHUNK = 1 << 20


def address_of(address: str) -> str:
    """``unix:///run/containerd/containerd.sock`` or a bare path → a gRPC target."""
    path = address.removeprefix("unix://")
    if not path.startswith("/"):
        raise ValueError(f"containerd address must be unix:///ABSOLUTE/PATH, got {address!r}")
    return f"unix://{path}"


class Client:
    def __init__(self, address: str, namespace: str) -> None:
        self.address = address_of(address)
        self.namespace = namespace
        self.channel = grpc.aio.insecure_channel(self.address, options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 16 << 20)])
        ch = self.channel
        self.version = version_pb2_grpc.VersionStub(ch)
        self.namespaces = namespace_pb2_grpc.NamespacesStub(ch)
        self.containers = containers_pb2_grpc.ContainersStub(ch)
        self.content = content_pb2_grpc.ContentStub(ch)
        self.images = images_pb2_grpc.ImagesStub(ch)
        self.snapshots = snapshots_pb2_grpc.SnapshotsStub(ch)
        self.diff = diff_pb2_grpc.DiffStub(ch)
        self.leases = leases_pb2_grpc.LeasesStub(ch)
        self.tasks = tasks_pb2_grpc.TasksStub(ch)
        self.events = events_pb2_grpc.EventsStub(ch)

    @staticmethod
    def check_address(address: str) -> str:
        return address_of(address)

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return ((NAMESPACE_HEADER, self.namespace),)

    async def close(self) -> None:
        await self.channel.close()

    async def ensure_namespace(self) -> None:
        try:
            await self.namespaces.Create(namespaces.CreateNamespaceRequest(
                namespace=namespaces.Namespace(name=self.namespace)), metadata=self.md)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise

    @contextlib.asynccontextmanager
    async def lease(self, hours: int = 1) -> AsyncIterator[tuple[tuple[str, str], ...]]:
        """A temporary lease; yields the metadata that puts calls under it."""
        expire = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=hours))
        lease_id = f"pilothouse-{secrets.token_hex(8)}"
        await self.leases.Create(leases.CreateRequest(id=lease_id, labels={
            "containerd.io/gc.expire": expire.strftime("%Y-%m-%dT%H:%M:%SZ")}),
            metadata=self.md)
        try:
            yield (*self.md, (LEASE_HEADER, lease_id))
        finally:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.leases.Delete(leases.DeleteRequest(id=lease_id), metadata=self.md)

    async def has_blob(self, digest: str) -> bool:
        try:
            await self.content.Info(content.InfoRequest(digest=digest), metadata=self.md)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def read_blob(self, digest: str) -> bytes:
        data = bytearray()
        async for chunk in self.content.Read(content.ReadContentRequest(digest=digest),
                                             metadata=self.md):
            data += chunk.data
        return bytes(data)

    async def write_blob(self, digest: str, chunks: Iterable[bytes], size: int,
                         labels: dict[str, str], md: tuple[tuple[str, str], ...]) -> None:
        """Stream a blob into the content store and commit it as ``digest``."""
        ref = f"pilothouse-{digest}-{secrets.token_hex(4)}"

        async def requests() -> AsyncIterator[content.WriteContentRequest]:
            offset = 0
            for data in chunks:
                yield content.WriteContentRequest(action=content.WRITE, ref=ref, offset=offset,
                                                  total=size, expected=digest, data=data)
                offset += len(data)
            yield content.WriteContentRequest(action=content.COMMIT, ref=ref, offset=offset,
                                              total=size, expected=digest, labels=labels)

        try:
            async for _ in self.content.Write(requests(), metadata=md):
                pass
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            if labels:
                await self.label_blob(digest, labels)

    async def label_blob(self, digest: str, labels: dict[str, str]) -> None:
        from google.protobuf.field_mask_pb2 import FieldMask

        await self.content.Update(content.UpdateRequest(
            info=content.Info(digest=digest, labels=labels),
            update_mask=FieldMask(paths=[f"labels.{k}" for k in labels])), metadata=self.md)
