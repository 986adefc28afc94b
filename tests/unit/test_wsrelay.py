"""pilothouse.wsrelay: subprotocol pass-through on both sides, the relay's copy and close
handling, upgrade refusals — with real websockets servers and a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus, NegotiationError

from pilothouse import wsrelay
from tests.support import wait_for

SPDY = "SPDY/3.1+portforward.k8s.io"
V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"


@pytest.mark.parametrize("answers,offered,expected", [
    ([], [V5], None),
    ([V5], [V5, V4], V5),
    ([SPDY], [SPDY], SPDY),
    (["  v4.channel.k8s.io "], [V5, V4], V4),
], ids=["none", "one-offered", "not-a-token", "spaces"])
def test_chosen_subprotocol(answers: list[str], offered: list[str],
                            expected: str | None) -> None:
    headers = Headers([("Sec-WebSocket-Protocol", a) for a in answers])
    assert wsrelay.chosen_subprotocol(headers, offered) == expected


@pytest.mark.parametrize("answers", [["x.k8s.io"], [V5, V4], [f"{V5}, {V4}"]],
                         ids=["not-offered", "two-headers", "two-in-one"])
def test_chosen_subprotocol_refuses(answers: list[str]) -> None:
    headers = Headers([("Sec-WebSocket-Protocol", a) for a in answers])
    with pytest.raises(NegotiationError, match="not offered"):
        wsrelay.chosen_subprotocol(headers, [V5, V4])


@pytest.mark.parametrize("upstream,client", [(None, 1000), (1005, 1000), (1000, 1000),
                                             (1006, 1011), (1011, 1011), (4000, 4000)],
                         ids=["none", "no-status", "normal", "abnormal", "error", "app"])
def test_client_close_code(upstream: int | None, client: int) -> None:
    assert wsrelay.client_close_code(upstream) == client


class FakeClient:
    """The ASGI side of a WebSocket: what the app sent, and a queue of what it receives."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


class TakesAnyOffer(ServerConnection):
    """A server answering with the first subprotocol offered, token or not."""

    def __init__(self, protocol: Any, *args: Any, **kwargs: Any) -> None:
        def first(headers: Any) -> Any:
            return headers.get("Sec-WebSocket-Protocol", "").split(",")[0].strip() or None

        protocol.process_subprotocol = first
        super().__init__(protocol, *args, **kwargs)


async def test_dial_offers_a_subprotocol_that_is_not_a_token() -> None:
    offers: list[str | None] = []

    async def upstream(ws: ServerConnection) -> None:
        assert ws.request is not None
        offers.append(ws.request.headers.get("Sec-WebSocket-Protocol"))
        await ws.close()

    async with serve(upstream, "127.0.0.1", 0, create_connection=TakesAnyOffer) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await wsrelay.dial(f"ws://127.0.0.1:{port}/", [SPDY, V4], open_timeout=10)
        assert conn.subprotocol == SPDY
        await conn.close()
    assert offers == [f"{SPDY}, {V4}"]


async def test_relay_translates_and_drops_what_the_client_sends() -> None:
    received: list[bytes | str] = []

    async def upstream(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(message)
            if message == b"\x00end":
                await ws.close(4000, "done here")

    def translate(message: bytes | str) -> bytes | str | None:
        if message == b"\xff\x00":
            return None  # dropped
        return message.upper() if isinstance(message, str) else message

    async with serve(upstream, "127.0.0.1", 0, create_connection=TakesAnyOffer) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await wsrelay.dial(f"ws://127.0.0.1:{port}/", [V4], open_timeout=10)
        client = FakeClient()
        for message in ({"type": "websocket.receive", "text": "abc"},
                        {"type": "websocket.receive", "bytes": b"\xff\x00"},
                        {"type": "websocket.receive", "bytes": b"\x00end"}):
            await client.incoming.put(message)
        await asyncio.wait_for(wsrelay.relay(client.receive, client.send, conn,
                                             subprotocol=V5, translate=translate), 10)
    assert received == ["ABC", b"\x00end"]
    assert client.sent == [{"type": "websocket.accept", "subprotocol": V5},
                           {"type": "websocket.close", "code": 4000, "reason": "done here"}]


async def test_relay_reports_an_abnormal_upstream_end_as_1011() -> None:
    async def upstream(ws: ServerConnection) -> None:
        await ws.send(b"\x01partial")
        ws.transport.abort()  # no close frame

    async with serve(upstream, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await wsrelay.dial(f"ws://127.0.0.1:{port}/", [], open_timeout=10)
        client = FakeClient()
        await asyncio.wait_for(wsrelay.relay(client.receive, client.send, conn), 10)
    assert client.sent[1:] == [{"type": "websocket.send", "bytes": b"\x01partial"},
                               {"type": "websocket.close", "code": 1011, "reason": ""}]


async def test_relay_closes_upstream_when_the_client_leaves() -> None:
    closed = asyncio.Event()

    async def upstream(ws: ServerConnection) -> None:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        closed.set()

    async with serve(upstream, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await wsrelay.dial(f"ws://127.0.0.1:{port}/", [], open_timeout=10)
        client = FakeClient()
        task = asyncio.create_task(wsrelay.relay(client.receive, client.send, conn))
        await client.incoming.put({"type": "websocket.disconnect", "code": 1001})
        await asyncio.wait_for(task, 10)
        await wait_for(closed.is_set, 10, "the upstream's side closed")


# -- the server side: uvicorn with PassThroughWebSocketProtocol -----------------------------

async def asgi_app(scope: dict[str, Any], receive: wsrelay.Receive,
                   send: wsrelay.Send) -> None:
    """Accepts with the first subprotocol offered, or refuses ``/deny`` with a body."""
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    if scope["path"] == "/deny":
        await wsrelay.deny(scope, send, 403, b"refused\n", content_type="text/plain",
                           reason="refused")
        return
    offered = list(scope.get("subprotocols") or [])
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
    message = await receive()
    await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
    await send({"type": "websocket.close", "code": 1000})


@pytest.fixture
async def uvicorn_port() -> AsyncIterator[int]:
    config = uvicorn.Config(asgi_app, host="127.0.0.1", port=0, lifespan="off",
                            ws=wsrelay.PassThroughWebSocketProtocol, log_level="warning",
                            ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, 10, "uvicorn started")
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_uvicorn_passes_a_subprotocol_that_is_not_a_token(uvicorn_port: int) -> None:
    conn = await wsrelay.dial(f"ws://127.0.0.1:{uvicorn_port}/pf", [SPDY], open_timeout=10)
    assert conn.subprotocol == SPDY
    await conn.send(b"echo")
    assert await asyncio.wait_for(conn.recv(), 10) == b"echo"
    await conn.close()


async def test_deny_refuses_the_upgrade_with_an_http_answer(uvicorn_port: int) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await wsrelay.dial(f"ws://127.0.0.1:{uvicorn_port}/deny", [V5], open_timeout=10)
    response = caught.value.response
    assert (response.status_code, response.body) == (403, b"refused\n")
    assert response.headers["Content-Type"] == "text/plain"


async def test_deny_without_the_extension_closes_with_1008() -> None:
    client = FakeClient()
    await wsrelay.deny({"type": "websocket", "extensions": {}}, client.send, 404,
                       b"x", content_type="text/plain", reason="é" * 100)
    assert client.sent[0]["type"] == "websocket.close"
    assert client.sent[0]["code"] == 1008
    assert len(client.sent[0]["reason"].encode()) <= 123
