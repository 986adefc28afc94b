"""Direct writes for JSON watch streams served over HTTP/1.1 by uvicorn.

A watch event going through ASGI costs a task wake-up, a generator step and
uvicorn's ``send`` per watcher; with a thousand watchers that is most of a
fan-out. Once the response has started (headers written by uvicorn, chunked
transfer encoding), the rest of a watch stream is only HTTP chunks, so the
watch cache's sink writes them straight to the connection's transport, in the
tick the event is applied, and the frame bytes of one event are built once
for every watcher (``frame``).

``ChunkedWriter.for_send`` recognises uvicorn's httptools response cycle and
returns None for anything else (another server, HTTP/2, a test's ``send``):
those streams keep the ASGI path. The stream still ends through ``send`` (the
last chunk), so uvicorn's own state stays right.

Bound: a connection holding more than ``MAX_UNSENT`` bytes its client has not
read is a slow consumer: the write is refused and the watcher closed (its
client resumes from the last resourceVersion it saw, as with a full queue).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pilothouse.services.apiserver.watchcache import CacheEvent

MAX_UNSENT = 4 * 1024 * 1024


def json_line(event_type: str, obj_json: bytes) -> bytes:
    """One watch event as Kubernetes streams it: a JSON document and a newline."""
    return b'{"type":"' + event_type.encode() + b'","object":' + obj_json + b"}\n"


def chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


def frame(event: CacheEvent, shared: dict[Hashable, Any]) -> bytes:
    """The chunk carrying ``event`` as a JSON watch line, built once per dispatch."""
    key = ("json-chunk", event.type, id(event.obj))
    found: bytes | None = shared.get(key)
    if found is None:
        found = shared[key] = chunk(json_line(event.type, event.obj.json()))
    return found


class ChunkedWriter:
    """Writes whole chunks to the transport of a started, chunked uvicorn response."""

    def __init__(self, cycle: Any, max_unsent: int | None = None) -> None:
        self._cycle = cycle
        self._transport = cycle.transport
        self.max_unsent = MAX_UNSENT if max_unsent is None else max_unsent

    @classmethod
    def for_send(cls, send: Any, max_unsent: int | None = None) -> ChunkedWriter | None:
        """A writer for the response behind ``send`` (an ASGI send callable), or None
        when it is not a started, chunked, open uvicorn HTTP/1.1 response."""
        cycle = getattr(send, "__self__", None)
        if type(cycle).__name__ != "RequestResponseCycle" or \
                not type(cycle).__module__.startswith("uvicorn.protocols.http."):
            return None
        transport = getattr(cycle, "transport", None)
        if transport is None or not all(hasattr(transport, m) for m in (
                "write", "is_closing", "get_write_buffer_size")):
            return None
        if getattr(cycle, "chunked_encoding", None) is not True or \
                not getattr(cycle, "response_started", False) or \
                getattr(cycle, "response_complete", True) or getattr(cycle, "disconnected", True):
            return None
        return cls(cycle, max_unsent)

    def write(self, data: bytes) -> bool:
        """Write one framed chunk; False when the client is gone or too far behind."""
        transport = self._transport
        if self._cycle.disconnected or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > self.max_unsent:
            return False
        transport.write(data)
        return True
