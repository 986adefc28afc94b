"""WebSocket pass-through: an ASGI WebSocket relayed to an upstream WebSocket server.

The apiserver (pods/exec|attach|portforward -> kubelet) and the kubelet
(/exec|/attach|/portForward -> the runtime's streaming server) are both such a
relay: they dial the next hop offering the client's subprotocols, accept the
client with the one the next hop chose, and copy messages both ways unchanged.

Kubernetes' ``SPDY/3.1+portforward.k8s.io`` is not an HTTP token (the "/"), and
the websockets library checks subprotocols as tokens on both sides of a
handshake: :func:`offering` (client side) and :class:`PassThroughWebSocketProtocol`
(uvicorn's server side) keep the library's framing and leave the offer and the
choice to the caller.

Each component keeps its own error mapping (the apiserver answers a ``Status``,
the kubelet plain text): :func:`dial` raises the websockets library's own
exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.typing import Subprotocol

log = logging.getLogger("pilothouse.wsrelay")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
# rewrites (or drops, with None) one message of the client's on its way upstream
Translate = Callable[[bytes | str], bytes | str | None]


def chosen_subprotocol(headers: Headers, offered: list[str]) -> Subprotocol | None:
    """The server's ``Sec-WebSocket-Protocol`` answer, if it is one of ``offered``.

    None when the server chose none; NegotiationError when it chose several, or
    one that was not offered."""
    values = [v.strip() for header in headers.get_all("Sec-WebSocket-Protocol")
              for v in header.split(",") if v.strip()]
    if not values:
        return None
    if len(values) > 1 or values[0] not in offered:
        raise NegotiationError(f"the server chose {', '.join(values)}, which was not offered")
    return Subprotocol(values[0])


def offering(subprotocols: list[str]) -> type[ClientConnection]:
    """A client connection class that offers ``subprotocols`` exactly as given."""
    offered = [Subprotocol(p) for p in subprotocols]

    def chosen(headers: Headers) -> Subprotocol | None:
        return chosen_subprotocol(headers, list(offered))

    class Offering(ClientConnection):
        def __init__(self, protocol: ClientProtocol, **kwargs: Any) -> None:
            protocol.available_subprotocols = offered or None
            protocol.process_subprotocol = chosen  # type: ignore[method-assign]
            super().__init__(protocol, **kwargs)

    return Offering


async def dial(url: str, subprotocols: list[str], *, open_timeout: float) -> ClientConnection:
    """Open ``url`` (ws:// or wss://) offering ``subprotocols`` as given.

    No compression, no message size limit, no pings, no HTTP proxy: a relay
    passes on what it gets. The websockets library's exceptions (InvalidStatus,
    InvalidHandshake, OSError, TimeoutError) reach the caller."""
    return await connect(url, create_connection=offering(subprotocols), compression=None,
                         max_size=None, proxy=None, open_timeout=open_timeout,
                         ping_interval=None)


class PassThroughWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, with the subprotocol left to the ASGI app.

    uvicorn lists the offered subprotocols in the scope itself and writes the
    app's choice (``websocket.accept``) into the answer; only the library's
    token check of the offer is skipped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.process_subprotocol = _no_subprotocol  # type: ignore[method-assign]

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and \
                not message.get("more_body", False):
            # a refused upgrade is a complete answer (uvicorn would log it as unfinished)
            self.handshake_complete = True


def _no_subprotocol(headers: Headers) -> Subprotocol | None:
    return None


def client_close_code(upstream_code: int | None) -> int:
    """The close code the client gets for the upstream's: its own, 1000 for a close
    without a code, 1011 for an abnormal end (no close frame)."""
    if upstream_code in (None, 1005):
        return 1000
    if upstream_code == 1006:
        return 1011
    return upstream_code


async def relay(receive: Receive, send: Send, upstream: ClientConnection, *,
                subprotocol: str | None = None, translate: Translate | None = None) -> None:
    """Accept the ASGI WebSocket with ``upstream``'s subprotocol and copy messages both ways.

    Whichever side closes first, the other is closed too; the upstream's close
    code and reason reach the client (:func:`client_close_code`). ``subprotocol``
    overrides the one the client is told, ``translate`` rewrites (or drops, with
    None) what the client sends. Returns when both sides are closed.
    """
    await send({"type": "websocket.accept",
                "subprotocol": subprotocol or upstream.subprotocol})

    async def from_client() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            data = message.get("bytes")
            received: bytes | str = data if data is not None else message.get("text") or ""
            out = translate(received) if translate is not None else received
            if out is None:
                continue
            try:
                await upstream.send(out)
            except ConnectionClosed:
                return

    async def from_upstream() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in upstream:
                if isinstance(data, bytes):
                    await send({"type": "websocket.send", "bytes": data})
                else:
                    await send({"type": "websocket.send", "text": data})

    to_up = asyncio.create_task(from_client())
    to_client = asyncio.create_task(from_upstream())
    try:
        await asyncio.wait({to_up, to_client}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_up, to_client):
            task.cancel()
        results = await asyncio.gather(to_up, to_client, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, OSError):
                log.warning("streaming relay ended with %r", result)
        await upstream.close()
        with contextlib.suppress(Exception):  # the client may be gone already
            await send({"type": "websocket.close",
                        "code": client_close_code(upstream.close_code),
                        "reason": upstream.close_reason or ""})


async def deny(scope: dict[str, Any], send: Send, status: int, body: bytes, *,
               content_type: str, reason: str) -> None:
    """Refuse a WebSocket upgrade with an HTTP answer (ASGI's denial extension).

    A server without the extension gets a close (1008) with ``reason`` instead,
    cut to the 123 bytes a close frame can carry."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        text = reason.encode()[:123].decode(errors="ignore")
        await send({"type": "websocket.close", "code": 1008, "reason": text})
        return
    await send({"type": "websocket.http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "websocket.http.response.body", "body": body})
