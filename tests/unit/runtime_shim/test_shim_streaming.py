"""The streaming server's framing and tokens, without a network."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim.streaming import V1, V4, V5, Channels, StreamingServer


class _WS:
    def __init__(self, subprotocol: str) -> None:
        self.subprotocol = subprotocol
        self.sent: list[Any] = []

    async def send(self, message: Any) -> None:
        self.sent.append(message)


def test_v4_status_documents() -> None:
    conn = Channels(_WS(V4))  # type: ignore[arg-type]
    assert json.loads(conn.status(0)) == {"metadata": {}, "status": "Success"}
    failed = json.loads(conn.status(3))
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    broken = json.loads(conn.status(None, "no such container"))
    assert (broken["status"], broken["message"], broken["code"]) == (
        "Failure", "no such container", 500)
    assert Channels(_WS(V5)).status(0) == conn.status(0)  # type: ignore[arg-type]


def test_v1_error_channel_is_a_plain_message() -> None:
    conn = Channels(_WS(V1))  # type: ignore[arg-type]
    assert conn.status(None, "boom") == b"boom"


async def test_binary_and_base64_framing() -> None:
    ws = _WS("v4.base64.channel.k8s.io")
    conn = Channels(ws)  # type: ignore[arg-type]
    await conn.send(1, b"hi\n")
    assert ws.sent == ["1" + base64.b64encode(b"hi\n").decode()]
    assert Channels.decode("0" + base64.b64encode(b"in").decode(), True) == (0, b"in")
    ws = _WS(V5)
    conn = Channels(ws)  # type: ignore[arg-type]
    await conn.send(2, b"err")
    assert ws.sent == [b"\x02err"]
    assert Channels.decode(b"\x00data", False) == (0, b"data")
    assert Channels.decode(b"", False) == (-1, b"")


def test_urls_are_one_time_tokens_per_kind() -> None:
    server = StreamingServer(backend=None, address="127.0.0.1:10350")  # type: ignore[arg-type]
    a = server.register("exec", cri.ExecRequest(container_id="c"))
    b = server.register("exec", cri.ExecRequest(container_id="c"))
    assert a.startswith("http://127.0.0.1:10350/exec/") and a != b
    assert server.register("portforward", cri.PortForwardRequest()).startswith(
        "http://127.0.0.1:10350/portforward/")


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:x", ":80"])
def test_bad_streaming_address(address: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        StreamingServer(backend=None, address=address)  # type: ignore[arg-type]
