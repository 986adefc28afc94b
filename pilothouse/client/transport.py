"""The narrow boundary between the typed client and a wire protocol.

A ``Transport`` moves generated protobuf messages to and from the apiserver
for one ``Kind`` at a time; it knows paths, encodings and error mapping, and
nothing about informers or retries. Two real transports implement it
(``rest.RestTransport`` over Kubernetes REST/JSON, ``grpc.GrpcTransport``
over pilothouse's gRPC API) and one in-memory fake (``fake.FakeTransport``)
that tests use.

Options and results are plain dataclasses so every transport shares them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

from google.protobuf.message import Message

from pilothouse.api.kinds import EVICTION_MESSAGE, SCALE_MESSAGE, Kind, KindRegistry

__all__ = [
    "ADDED",
    "BOOKMARK",
    "DELETED",
    "MODIFIED",
    "DeleteOptions",
    "KindIndex",
    "ListOptions",
    "ObjectList",
    "PatchType",
    "Transport",
    "WatchEvent",
    "WatchOptions",
]

M = TypeVar("M", bound=Message)

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
BOOKMARK = "BOOKMARK"

PatchType = Literal["merge", "strategic", "json"]
PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}


@dataclass(frozen=True, slots=True)
class ListOptions:
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass(frozen=True, slots=True)
class WatchOptions:
    label_selector: str = ""
    field_selector: str = ""
    # Empty: "start at the current state" (initial ADDED events first); otherwise
    # only changes after this resourceVersion.
    resource_version: str = ""
    allow_bookmarks: bool = True
    timeout_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str = ""  # "", Orphan, Background, Foreground
    precondition_uid: str = ""
    precondition_resource_version: str = ""
    dry_run: bool = False


@dataclass(slots=True)
class ObjectList(Generic[M]):
    """One page of a list: the items and the list's resourceVersion."""

    items: list[M]
    resource_version: str
    continue_token: str = ""
    remaining_item_count: int | None = None


@dataclass(frozen=True, slots=True)
class WatchEvent(Generic[M]):
    """One change: ADDED, MODIFIED, DELETED, or BOOKMARK (only metadata.resourceVersion set).

    ``ERROR`` events never surface: transports raise them as ``APIError``.
    """

    type: str
    object: M = field(repr=False)

    @property
    def resource_version(self) -> str:
        return str(self.object.metadata.resourceVersion)  # type: ignore[attr-defined]


class Transport(Protocol):
    """One wire protocol to the apiserver. Every method raises ``APIError`` when the
    server refuses and ``APIConnectionError`` when it cannot be reached.

    ``namespace`` is "" for cluster-scoped kinds and for all-namespace lists
    and watches. Objects passed in are not modified.
    """

    kinds: KindRegistry

    async def get(self, kind: Kind, namespace: str, name: str, *,
                  subresource: str = "") -> Message:
        """The object (or its subresource view, e.g. ``status``) as the server has it."""
        ...

    async def list(self, kind: Kind, namespace: str, options: ListOptions) -> ObjectList[Message]:
        """One page of objects, with the list's resourceVersion and continue token."""
        ...

    async def create(self, kind: Kind, namespace: str, obj: Message, *, name: str = "",
                     subresource: str = "", dry_run: bool = False) -> Message | None:
        """Create ``obj``; the created object comes back.

        With ``subresource`` (``binding``, ``eviction``), POSTs ``obj`` (any kind) to
        ``kind``'s object ``name``'s subresource; the server answers a Status, and
        this returns None.
        """
        ...

    async def update(self, kind: Kind, namespace: str, name: str, obj: Message, *,
                     subresource: str = "", dry_run: bool = False) -> Message:
        """Replace the object (PUT); ``obj.metadata.resourceVersion`` makes it conditional."""
        ...

    async def patch(self, kind: Kind, namespace: str, name: str, patch: bytes,
                    patch_type: PatchType, *, subresource: str = "",
                    dry_run: bool = False) -> Message:
        """Apply a JSON-encoded patch of ``patch_type``; the patched object comes back."""
        ...

    async def delete(self, kind: Kind, namespace: str, name: str,
                     options: DeleteOptions) -> Message | None:
        """Delete; the last state of the object (deleted, or pending finalizers/grace)."""
        ...

    def watch(self, kind: Kind, namespace: str,
              options: WatchOptions) -> AsyncGenerator[WatchEvent[Message], None]:
        """Stream changes until the server ends the watch (then the generator returns).

        Raises ``APIError`` (410 Gone when ``resource_version`` is too old) and
        ``APIConnectionError``. Close it (``aclose``) to stop early.
        """
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...


# Messages that only travel as subresource bodies (never stored, not in the registry).
_SUBRESOURCE_BODIES: tuple[Kind, ...] = (
    Kind("policy", "v1", "Eviction", "evictions", True, EVICTION_MESSAGE, verbs=("create",)),
    Kind("autoscaling", "v1", "Scale", "scales", True, SCALE_MESSAGE, verbs=("get", "update")),
)


class KindIndex:
    """Kinds by their message class (built-in kinds, and subresource bodies)."""

    def __init__(self, registry: KindRegistry) -> None:
        self.registry = registry
        self._by_message: dict[type[Message], Kind] = {
            k.message: k for k in _SUBRESOURCE_BODIES if k.message is not None}
        for kind in registry:
            if kind.message is not None:
                self._by_message.setdefault(kind.message, kind)

    def for_message(self, cls: type[Message]) -> Kind:
        kind = self._by_message.get(cls)
        if kind is None:
            for k in self.registry:  # kinds registered after construction
                if k.message is cls:
                    self._by_message[cls] = k
                    return k
            raise TypeError(f"{cls.__module__}.{cls.__name__} is not a served kind")
        return kind

    def for_object(self, obj: Message) -> Kind:
        return self.for_message(type(obj))
