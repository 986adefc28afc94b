"""pods/exec|attach|portforward: query translation, Status mapping, and the WebSocket relay's
close handling (a real websockets server on loopback as the kubelet)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from pilothouse.services.apiserver import streaming
from pilothouse.services.apiserver.errors import StatusError
from tests.support import wait_for


@pytest.mark.parametrize("sub,query,expected", [
    ("exec", [("command", "sh"), ("command", "-c"), ("command", "echo a b"),
              ("container", "c"), ("stdin", "true"), ("stdout", "true"), ("tty", "true")],
     [("command", "sh"), ("command", "-c"), ("command", "echo a b"), ("input", "1"),
      ("output", "1"), ("tty", "1")]),
    ("exec", [("command", "ls"), ("stdout", "1"), ("stderr", "false"), ("tty", "0")],
     [("command", "ls"), ("output", "1")]),
    ("attach", [("command", "ignored"), ("stdout", "True"), ("stderr", "t")],
     [("output", "1"), ("error", "1")]),
    ("portforward", [("ports", "80"), ("ports", "443,8080")],
     [("port", "80"), ("port", "443"), ("port", "8080")]),
    ("portforward", [], []),
], ids=["exec-all", "exec-go-bools", "attach-no-command", "portforward-ports",
        "portforward-spdy-no-ports"])
def test_kubelet_query(sub: str, query: list[tuple[str, str]],
                       expected: list[tuple[str, str]]) -> None:
    assert streaming.kubelet_query(sub, query) == expected


@pytest.mark.parametrize("ports", ["x", "0", "70000", "80,", "-1"])
def test_bad_ports_are_400(ports: str) -> None:
    with pytest.raises(StatusError) as caught:
        streaming.kubelet_query("portforward", [("ports", ports)])
    assert caught.value.code == 400


@pytest.mark.parametrize("path,expected", [
    ("/api/v1/namespaces/ns/pods/p/exec", ("ns", "p", "exec")),
    ("/api/v1/namespaces/ns/pods/p/portforward", ("ns", "p", "portforward")),
    ("/api/v1/namespaces/ns/pods/p/log", None),
    ("/api/v1/namespaces/ns/services/p/exec", None),
    ("/apis/apps/v1/namespaces/ns/pods/p/exec", None),
    ("/api/v1/pods/p/exec", None),
])
def test_parse_path(path: str, expected: tuple[str, str, str] | None) -> None:
    assert streaming.parse_path(path) == expected


@pytest.mark.parametrize("code,body,expected", [
    (404, b'pod "p" in namespace "n" not found on node x\n',
     (404, "NotFound", 'pod "p" in namespace "n" not found on node x')),
    (400, b'container "c" in pod "p" is not running\n',
     (400, "BadRequest", 'container "c" in pod "p" is not running')),
    (501, b"attach with a terminal is not supported\n",
     (501, "", "attach with a terminal is not supported")),
    (403, b'{"kind":"Status","code":403,"reason":"Forbidden","message":"no"}',
     (403, "Forbidden", "no")),
    (200, b"hello", (500, "InternalError",
                     "Internal error occurred: the kubelet answered 200 instead of an "
                     "upgrade: hello")),
], ids=["not-found", "bad-request", "other-code", "a-status", "not-an-error"])
def test_status_from_kubelet(code: int, body: bytes, expected: tuple[int, str, str]) -> None:
    err = streaming.status_from_kubelet(code, body)
    assert (err.code, err.reason, err.message) == expected


class FakeClient:
    """The ASGI side of a WebSocket: what the app sent, and a queue of what it receives."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


async def test_relay_passes_messages_and_the_upstreams_close() -> None:
    async def kubelet(ws: ServerConnection) -> None:
        await ws.send(b"\x01out")
        await ws.send("text")
        await ws.close(1000)

    async with serve(kubelet, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        upstream = await streaming._dial(f"ws://127.0.0.1:{port}/", ["v5.channel.k8s.io"])
        client = FakeClient()
        await asyncio.wait_for(streaming.relay(client.receive, client.send, upstream), 10)
    assert client.sent == [
        {"type": "websocket.accept", "subprotocol": None},
        {"type": "websocket.send", "bytes": b"\x01out"},
        {"type": "websocket.send", "text": "text"},
        {"type": "websocket.close", "code": 1000, "reason": ""},
    ]


class TakesAnyOffer(ServerConnection):
    """A server that answers with the first subprotocol offered, token or not (as the
    runtime shim does for SPDY/3.1+portforward.k8s.io)."""

    def __init__(self, protocol: Any, *args: Any, **kwargs: Any) -> None:
        def first(headers: Any) -> Any:
            return headers.get("Sec-WebSocket-Protocol", "").split(",")[0].strip() or None

        protocol.process_subprotocol = first
        super().__init__(protocol, *args, **kwargs)


async def test_relay_closes_upstream_when_the_client_leaves() -> None:
    received: list[bytes | str] = []
    closed = asyncio.Event()

    async def kubelet(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(message)
        closed.set()

    async with serve(kubelet, "127.0.0.1", 0, create_connection=TakesAnyOffer) as server:
        port = server.sockets[0].getsockname()[1]
        upstream = await streaming._dial(f"ws://127.0.0.1:{port}/",
                                         ["SPDY/3.1+portforward.k8s.io"])
        client = FakeClient()
        task = asyncio.create_task(streaming.relay(client.receive, client.send, upstream))
        await client.incoming.put({"type": "websocket.receive", "bytes": b"\x00in"})
        await client.incoming.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(task, 10)
        await wait_for(closed.is_set, 10, "the kubelet's side closed")
    assert received == [b"\x00in"]
    assert client.sent[0] == {"type": "websocket.accept",
                              "subprotocol": "SPDY/3.1+portforward.k8s.io"}


async def test_dial_refusal_and_absence_are_statuses() -> None:
    async with serve(lambda ws: ws.close(), "127.0.0.1", 0,
                     process_request=lambda conn, req: conn.respond(404, "no such pod\n")
                     ) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(StatusError) as caught:
            await streaming._dial(f"ws://127.0.0.1:{port}/", [])
    assert (caught.value.code, caught.value.message) == (404, "no such pod")
    with pytest.raises(StatusError) as caught:
        await streaming._dial(f"ws://127.0.0.1:{port}/", [])
    assert caught.value.code == 503
