"""Exec, Attach and PortForward through the shim's streaming server, with a WebSocket client.

Run against our backends and containerd's own CRI plugin (whose streaming server is
the kubelet's library): the same framing, status documents and port prefixes.
SPDY-over-WebSocket port forwarding (kubectl 1.32's) runs against our backends —
containerd 1.6's streaming server predates it — with our SPDY client over a
wsproto WebSocket (the websockets library refuses the subprotocol's "/"), and
with the real kubectl through a stand-in apiserver."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest
import wsproto
import wsproto.events as wse
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim import spdy
from pilothouse.runtime_shim.streaming import connect_in_netns
from tests.support import wait_for

from .conftest import Shim

pytestmark = pytest.mark.slow
V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"


@pytest.fixture(params=["process", "containerd", "containerd_cri"])
def streaming_shim(request: pytest.FixtureRequest) -> Shim:
    fixture: Shim = request.getfixturevalue(f"{request.param}_shim")
    return fixture


def ws_url(url: str) -> str:
    assert url.startswith("http://"), url
    return "ws://" + url.removeprefix("http://")


async def collect(ws: ClientConnection) -> dict[int, bytes]:
    """Every channel's data until the server closes the connection."""
    out: dict[int, bytes] = {}
    try:
        async for message in ws:
            assert isinstance(message, bytes)
            out[message[0]] = out.get(message[0], b"") + message[1:]
    except ConnectionClosed:
        pass
    return out


async def test_exec_streams_stdout_stderr_and_the_exit_status(streaming_shim: Shim) -> None:
    shim = streaming_shim
    sb = await shim.run_sandbox("wsexec")
    cid = await shim.run(sb, "c", ["sleep", "1000"])
    resp = await shim.runtime.Exec(cri.ExecRequest(
        container_id=cid, cmd=["sh", "-c", "echo out; echo err >&2; hostname; exit 3"],
        stdout=True, stderr=True))
    async with connect(ws_url(resp.url), subprotocols=[V4]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == V4
        got = await collect(ws)
    assert got[1] == b"out\nwsexec\n"
    assert got[2] == b"err\n"
    status = json.loads(got[3])
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    # a URL is good once
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(resp.url), subprotocols=[V4]):  # type: ignore[list-item]
            pass
    assert info.value.response.status_code == 404


async def test_exec_stdin(streaming_shim: Shim) -> None:
    shim = streaming_shim
    sb = await shim.run_sandbox("wsstdin")
    cid = await shim.run(sb, "c", ["sleep", "1000"])
    resp = await shim.runtime.Exec(cri.ExecRequest(
        container_id=cid, cmd=["sh", "-c", "read line; echo $line | tr a-z A-Z; echo done"],
        stdin=True, stdout=True, stderr=True))
    async with connect(ws_url(resp.url), subprotocols=[V4]) as ws:  # type: ignore[list-item]
        await ws.send(b"\x00hello ")
        await ws.send(b"\x00world\n")
        got = await collect(ws)
    assert got[1] == b"HELLO WORLD\ndone\n"
    assert json.loads(got[3])["status"] == "Success"


async def test_exec_v5_close_signal_ends_stdin(streaming_shim: Shim) -> None:
    shim = streaming_shim
    sb = await shim.run_sandbox("wsclose")
    cid = await shim.run(sb, "c", ["sleep", "1000"])
    resp = await shim.runtime.Exec(cri.ExecRequest(
        container_id=cid, cmd=["sh", "-c", "tr a-z A-Z; echo done"], stdin=True, stdout=True))
    if shim.reference:  # containerd 1.6 predates v5.channel.k8s.io
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(resp.url), subprotocols=[V5]):  # type: ignore[list-item]
                pass
        assert info.value.response.status_code == 403
        return
    async with connect(ws_url(resp.url), subprotocols=[V5]) as ws:  # type: ignore[list-item]
        await ws.send(b"\x00abc\n")
        await ws.send(bytes([255, 0]))  # v5: stdin is closed
        got = await collect(ws)
    assert got[1] == b"ABC\ndone\n"
    assert json.loads(got[3])["status"] == "Success"


async def test_exec_with_a_terminal_follows_resize(streaming_shim: Shim) -> None:
    shim = streaming_shim
    sb = await shim.run_sandbox("wstty")
    cid = await shim.run(sb, "c", ["sleep", "1000"])
    resp = await shim.runtime.Exec(cri.ExecRequest(
        container_id=cid, cmd=["sh", "-c", "read x; stty size; [ -t 0 ] && echo isatty"],
        tty=True, stdin=True, stdout=True))
    async with connect(ws_url(resp.url), subprotocols=[V4]) as ws:  # type: ignore[list-item]
        await ws.send(b"\x04" + json.dumps({"Width": 101, "Height": 33}).encode())
        await ws.send(b"\x00go\n")
        got = await collect(ws)
    assert b"isatty" in got[1]
    if not shim.reference:
        # containerd 1.6's CRI applies a resize that arrives before the exec'd
        # process has its terminal asynchronously and may drop it (seen in ~1 of 3
        # runs): only our backends are held to the size.
        assert b"33 101" in got[1]
    assert 2 not in got  # a terminal has one output stream
    assert json.loads(got[3])["status"] == "Success"


async def test_attach_streams_what_the_container_writes(streaming_shim: Shim) -> None:
    shim = streaming_shim
    signal_dir = shim.log_dir / "attach-signal"
    signal_dir.mkdir(parents=True)
    sb = await shim.run_sandbox("wsattach")
    cid = await shim.run(sb, "c", ["sh", "-c", "echo before; while [ ! -e /signal/go ]; do "
                                   "sleep 0.05; done; echo after; echo oops >&2"],
                         mounts=[cri.Mount(container_path="/signal", host_path=str(signal_dir))])
    log_path = Path((await shim.status(cid)).log_path)

    async def logged() -> bool:
        return log_path.exists() and b"before" in log_path.read_bytes()

    await wait_for(logged)
    resp = await shim.runtime.Attach(cri.AttachRequest(container_id=cid, stdout=True,
                                                       stderr=True))
    async with connect(ws_url(resp.url), subprotocols=[V4]) as ws:  # type: ignore[list-item]
        (signal_dir / "go").touch()
        got = await collect(ws)
    assert got[1] == b"after\n"  # from the moment of attaching, not the log's beginning
    assert got[2] == b"oops\n"
    assert json.loads(got[3])["status"] == "Success"


async def test_attach_writes_to_the_containers_stdin(process_shim: Shim) -> None:
    shim = process_shim
    sb = await shim.run_sandbox("wsattachin")
    sid, sconfig = sb
    config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="c"), image=cri.ImageSpec(image="busybox"),
        command=["sh", "-c", "while read line; do echo got:$line; done"], stdin=True,
        log_path="c.log")
    config.linux.security_context.namespace_options.pid = cri.CONTAINER
    cid = (await shim.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, config=config, sandbox_config=sconfig))).container_id
    await shim.runtime.StartContainer(cri.StartContainerRequest(container_id=cid))
    resp = await shim.runtime.Attach(cri.AttachRequest(container_id=cid, stdin=True,
                                                       stdout=True))
    async with connect(ws_url(resp.url), subprotocols=[V5]) as ws:  # type: ignore[list-item]
        got = b""
        for word in (b"one", b"two"):
            await ws.send(b"\x00" + word + b"\n")
            while b"got:" + word not in got:
                message = await asyncio.wait_for(ws.recv(), 20)
                assert isinstance(message, bytes) and message[0] == 1, message
                got += message[1:]
    assert got == b"got:one\ngot:two\n"
    # detaching leaves the container running, its stdin open for the next attach
    assert (await shim.status(cid)).state == cri.CONTAINER_RUNNING
    no_stdin = await shim.run(sb, "plain", ["sleep", "1000"])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await shim.runtime.Attach(cri.AttachRequest(container_id=no_stdin, stdin=True,
                                                    stdout=True))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_exec_with_a_terminal_keeps_output_after_stdin_ends(our_shim: Shim) -> None:
    """The end of a terminal's input is ^D, not a closed terminal: what the command
    writes after reading to the end still arrives, and it exits 0."""
    shim = our_shim
    sb = await shim.run_sandbox("wsttyeof")
    cid = await shim.run(sb, "c", ["sleep", "1000"])
    resp = await shim.runtime.Exec(cri.ExecRequest(
        container_id=cid, cmd=["sh", "-c", "cat >/dev/null; sleep 0.2; echo after-eof"],
        tty=True, stdin=True, stdout=True))
    async with connect(ws_url(resp.url), subprotocols=[V5]) as ws:  # type: ignore[list-item]
        await ws.send(b"\x00abc\n")
        await ws.send(bytes([255, 0]))  # v5: stdin is closed
        got = await asyncio.wait_for(collect(ws), 30)
    assert b"after-eof" in got[1]
    assert json.loads(got[3])["status"] == "Success"


def terminal_config(name: str, command: list[str], *, tty: bool) -> cri.ContainerConfig:
    config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name), image=cri.ImageSpec(image="busybox"),
        command=command, stdin=True, tty=tty, log_path=f"{name}.log")
    config.linux.security_context.namespace_options.pid = cri.CONTAINER
    return config


@pytest.fixture(params=["containerd", "containerd_cri"])
def containerd_shims(request: pytest.FixtureRequest) -> Shim:
    fixture: Shim = request.getfixturevalue(f"{request.param}_shim")
    return fixture


async def test_attach_to_a_terminal_writes_to_its_stdin(containerd_shims: Shim) -> None:
    """Attach with stdin to a container with a terminal (``kubectl run -it``, then
    ``kubectl attach -it``): keystrokes in, output out; a detach (the client's stdin
    ends) leaves the container running with its stdin open for the next attach.
    Our containerd backend against containerd's own CRI."""
    shim = containerd_shims
    sb = await shim.run_sandbox("wsattachtty")
    sid, sconfig = sb
    config = terminal_config("c", ["sh", "-c", "while read line; do echo got:$line; "
                                   "stty size; done"], tty=True)
    cid = (await shim.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, config=config, sandbox_config=sconfig))).container_id
    await shim.runtime.StartContainer(cri.StartContainerRequest(container_id=cid))
    subprotocol = V4 if shim.reference else V5
    for word, (width, height) in ((b"one", (90, 30)), (b"two", (101, 33))):
        resp = await shim.runtime.Attach(cri.AttachRequest(container_id=cid, stdin=True,
                                                           stdout=True, tty=True))
        async with connect(ws_url(resp.url),
                           subprotocols=[subprotocol]) as ws:  # type: ignore[list-item]
            await ws.send(b"\x04" + json.dumps({"Width": width, "Height": height}).encode())
            await ws.send(b"\x00" + word + b"\n")
            # containerd's CRI may apply a resize late (see the exec resize test): only
            # our backend is held to the size
            wanted = b"got:" + word if shim.reference else f"{height} {width}".encode()
            got = b""
            while wanted not in got:
                message = await asyncio.wait_for(ws.recv(), 20)
                assert isinstance(message, bytes) and message[0] == 1, message
                got += message[1:]
            assert b"got:" + word in got
        assert (await shim.status(cid)).state == cri.CONTAINER_RUNNING
        if not shim.reference and word == b"one":
            await shim.restart()  # the next attach finds the container's stdin again
    if shim.reference:
        return
    # without a terminal, containerd's runc shim gives a container whose output goes to
    # a binary:// log writer no stdin: refused with the reason
    plain = terminal_config("plain", ["sleep", "1000"], tty=False)
    plain_id = (await shim.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, config=plain, sandbox_config=sconfig))).container_id
    await shim.runtime.StartContainer(cri.StartContainerRequest(container_id=plain_id))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await shim.runtime.Attach(cri.AttachRequest(container_id=plain_id, stdin=True,
                                                    stdout=True))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "tty: true" in (info.value.details() or "")
    no_stdin = await shim.run(sb, "nostdin", ["sleep", "1000"])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await shim.runtime.Attach(cri.AttachRequest(container_id=no_stdin, stdin=True,
                                                    stdout=True))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_terminal_container_without_a_log_runs(containerd_shims: Shim) -> None:
    """A terminal needs an output in containerd's shim even when the CRI config asks for
    no log (log_path empty): the container runs, and execs in it work."""
    shim = containerd_shims
    sid, sconfig = await shim.run_sandbox("wsttynolog")
    config = terminal_config("c", ["sleep", "1000"], tty=True)
    config.log_path = ""
    cid = (await shim.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, config=config, sandbox_config=sconfig))).container_id
    await shim.runtime.StartContainer(cri.StartContainerRequest(container_id=cid))
    assert (await shim.status(cid)).state == cri.CONTAINER_RUNNING
    assert (await shim.exec(cid, "echo", "here")).stdout == b"here\n"


async def test_port_forward_reaches_a_port_inside_the_pod(streaming_shim: Shim) -> None:
    shim = streaming_shim
    sb = await shim.run_sandbox("wsfwd")
    await shim.run(sb, "server", ["sh", "-c", "while true; do echo pong | nc -l -p 8080; "
                                  "done"])
    answers: list[bytes] = []

    async def forwarded() -> bool:
        resp = await shim.runtime.PortForward(cri.PortForwardRequest(pod_sandbox_id=sb[0],
                                                                     port=[8080]))
        async with connect(ws_url(resp.url) + "?port=8080",
                           subprotocols=[V4]) as ws:  # type: ignore[list-item]
            first = [await asyncio.wait_for(ws.recv(), 20) for _ in range(2)]
            assert sorted(first) == [b"\x00" + struct.pack("<H", 8080),  # type: ignore[type-var]
                                     b"\x01" + struct.pack("<H", 8080)]
            data = b""
            try:
                # A runtime may end the session at once when nothing listens yet.
                await ws.send(b"\x00ping\n")
                while b"pong" not in data:
                    message = await asyncio.wait_for(ws.recv(), 5)
                    assert isinstance(message, bytes)
                    if message[0] == 1:  # error channel: nothing listens yet
                        return False
                    data += message[1:]
            except (ConnectionClosed, TimeoutError):
                return False
            answers.append(data)
            return True

    await wait_for(forwarded, within=30)
    assert answers[-1] == b"pong\n"


async def test_port_forward_ends_when_the_pod_closes_the_connection(
        streaming_shim: Shim) -> None:
    """As the kubelet's streaming server does (containerd's CRI is the reference): once
    the pod has closed the connection of every forwarded port, the WebSocket closes;
    while one port is still forwarded, the session goes on."""
    shim = streaming_shim
    sb = await shim.run_sandbox("wsfwdend")
    await shim.run(sb, "once", ["nc", "-ll", "-p", "8080", "-e", "echo", "pong"])
    await shim.run(sb, "echo", ["nc", "-ll", "-p", "8081", "-e", "cat"])
    prefix = {port: struct.pack("<H", port) for port in (8080, 8081)}

    async def forward(ports: list[int]) -> ClientConnection:
        resp = await shim.runtime.PortForward(cri.PortForwardRequest(pod_sandbox_id=sb[0],
                                                                     port=ports))
        query = "&".join(f"port={p}" for p in ports)
        return await connect(f"{ws_url(resp.url)}?{query}",
                             subprotocols=[V4])  # type: ignore[list-item]

    async def answered_then_ended() -> bool:
        async with await forward([8080]) as ws:
            got = await asyncio.wait_for(collect(ws), 20)  # TimeoutError: never ended
        if got.get(1, b"") != prefix[8080]:  # an error: nothing listens yet
            return False
        assert got[0] == prefix[8080] + b"pong\n"
        return True

    await wait_for(answered_then_ended, within=30, what="port 8080 answering in the pod")

    async def echoing() -> bool:
        async with await forward([8081]) as ws:
            first = [await asyncio.wait_for(ws.recv(), 20) for _ in range(2)]
            assert sorted(first) == [b"\x00" + prefix[8081],  # type: ignore[type-var]
                                     b"\x01" + prefix[8081]]
            await ws.send(b"\x00hi\n")
            try:
                message = await asyncio.wait_for(ws.recv(), 20)
            except ConnectionClosed:
                return False  # nothing listens yet
            assert message == b"\x00hi\n"
            return True

    await wait_for(echoing, within=30, what="port 8081 echoing in the pod")
    async with await forward([8080, 8081]) as ws:
        got: dict[int, bytes] = {}

        async def until(channel: int, wanted: bytes) -> None:
            while got.get(channel, b"") != wanted:
                message = await asyncio.wait_for(ws.recv(), 20)
                assert isinstance(message, bytes)
                got[message[0]] = got.get(message[0], b"") + message[1:]

        await until(0, prefix[8080] + b"pong\n")
        # port 8080's connection has ended; port 8081's still carries data both ways
        await ws.send(b"\x02still here\n")
        await until(2, prefix[8081] + b"still here\n")
    assert got.get(1) == prefix[8080] and got.get(3) == prefix[8081]


async def test_port_forward_to_a_closed_port_reports_it_and_ends(streaming_shim: Shim) -> None:
    shim = streaming_shim
    sb = await shim.run_sandbox("wsfwdclosed")
    await shim.run(sb, "c", ["sleep", "1000"])
    resp = await shim.runtime.PortForward(cri.PortForwardRequest(pod_sandbox_id=sb[0],
                                                                 port=[9]))
    async with connect(ws_url(resp.url) + "?port=9",
                       subprotocols=[V4]) as ws:  # type: ignore[list-item]
        got = await asyncio.wait_for(collect(ws), 20)  # nothing listens on 9: the end
    prefix = struct.pack("<H", 9)
    assert got[0] == prefix
    message = got[1].removeprefix(prefix).decode()
    # the kubelet's wrapping; containerd's CRI says "failed to execute portforward ..."
    assert message.startswith(f"error forwarding port 9 to pod {sb[0]}, uid : "), message
    assert "refused" in message
    if not shim.reference:
        assert "failed to connect to localhost:9 inside the pod's network namespace" in message


async def test_streaming_requests_for_unknown_or_stopped_containers(streaming_shim: Shim) -> None:
    shim = streaming_shim
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await shim.runtime.Exec(cri.ExecRequest(container_id="f" * 64, cmd=["true"],
                                                stdout=True))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    sb = await shim.run_sandbox("wsgone")
    cid = await shim.run(sb, "c", ["true"])
    await shim.wait_exited(cid)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await shim.runtime.Exec(cri.ExecRequest(container_id=cid, cmd=["true"], stdout=True))
    if shim.reference:  # containerd: UNKNOWN "container is in CONTAINER_EXITED state"
        assert "EXITED" in (info.value.details() or "")
    else:
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await shim.runtime.PortForward(cri.PortForwardRequest(pod_sandbox_id="f" * 64))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


# -- SPDY/3.1 tunneled in a WebSocket (kubectl 1.32's port-forward) -----------------------------
SPDY_PF = "SPDY/3.1+portforward.k8s.io"


@pytest.fixture(params=["process", "containerd"])
def our_shim(request: pytest.FixtureRequest) -> Shim:
    fixture: Shim = request.getfixturevalue(f"{request.param}_shim")
    return fixture


class SpdyTunnel:
    """A SPDY client session in the binary messages of a WebSocket (wsproto underneath)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 ws: wsproto.WSConnection, early: list[wse.Event]) -> None:
        self.reader, self.writer, self.ws = reader, writer, ws
        self.session = spdy.SpdySession(self._send, server=False)
        self.closed_by_server = asyncio.Event()
        self._pump = asyncio.create_task(self._read(early))

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str, subprotocol: str = SPDY_PF) -> AsyncIterator[SpdyTunnel]:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        writer.write(ws.send(wse.Request(host=parts.netloc, target=parts.path,
                                         subprotocols=[subprotocol])))
        events: list[wse.Event] = []
        while not events:
            data = await asyncio.wait_for(reader.read(65536), 20)
            assert data, "the server closed during the handshake"
            ws.receive_data(data)
            events = list(ws.events())
        accepted = events.pop(0)
        assert isinstance(accepted, wse.AcceptConnection), accepted
        assert accepted.subprotocol == subprotocol
        tunnel = cls(reader, writer, ws, events)
        try:
            yield tunnel
        finally:
            await tunnel.close()

    async def _send(self, data: bytes) -> None:
        self.writer.write(self.ws.send(wse.BytesMessage(data=data)))
        await self.writer.drain()

    async def _read(self, early: list[wse.Event]) -> None:
        try:
            events = early
            while True:
                for event in events:
                    if isinstance(event, wse.BytesMessage):
                        await self.session.receive(bytes(event.data))
                    elif isinstance(event, wse.Ping):
                        self.writer.write(self.ws.send(event.response()))
                    elif isinstance(event, wse.CloseConnection):
                        self.closed_by_server.set()
                        with contextlib.suppress(wsproto.utilities.LocalProtocolError):
                            self.writer.write(self.ws.send(event.response()))
                        return
                data = await self.reader.read(65536)
                if not data:
                    return
                self.ws.receive_data(data)
                events = list(self.ws.events())
        finally:
            self.session.connection_lost()
            self.closed_by_server.set()

    async def close(self) -> None:
        if self.ws.state == wsproto.connection.ConnectionState.OPEN:
            self.writer.write(self.ws.send(wse.CloseConnection(code=1000)))
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        self.writer.close()

    async def forward(self, port: int, request_id: int) -> tuple[spdy.SpdyStream,
                                                                 spdy.SpdyStream]:
        """As kubectl does per connection: an error stream (closed at once), then a data stream."""
        headers = {"streamtype": "error", "port": str(port), "requestid": str(request_id)}
        error = await self.session.open_stream(headers)
        await error.close()
        data = await self.session.open_stream({**headers, "streamtype": "data"})
        return error, data


async def read_to_end(stream: spdy.SpdyStream, within: float = 20) -> bytes:
    out = b""
    while chunk := await asyncio.wait_for(stream.read(), within):
        out += chunk
    return out


async def read_until(stream: spdy.SpdyStream, wanted: bytes) -> bytes:
    out = b""
    while wanted not in out:
        chunk = await asyncio.wait_for(stream.read(), 20)
        assert chunk, f"the stream ended after {out!r}, before {wanted!r}"
        out += chunk
    return out


async def spdy_forward_url(shim: Shim, sandbox_id: str) -> str:
    resp = await shim.runtime.PortForward(cri.PortForwardRequest(pod_sandbox_id=sandbox_id))
    return resp.url


async def start_upper_server(shim: Shim, name: str, port: int = 8080) -> str:
    """A pod whose port answers each connection (concurrently) with its input upper-cased;
    its sandbox id once the port accepts connections through the tunnel."""
    sb = await shim.run_sandbox(name)
    await shim.run(sb, "server", ["nc", "-ll", "-p", str(port), "-e", "tr", "a-z", "A-Z"])

    async def listening() -> bool:
        async with SpdyTunnel.open(await spdy_forward_url(shim, sb[0])) as tunnel:
            error, data = await tunnel.forward(port, 0)
            await data.close()
            await read_to_end(data)
            return await read_to_end(error) == b""

    await wait_for(listening, within=30, what=f"port {port} listening in the pod")
    return sb[0]


async def test_spdy_port_forward_two_concurrent_connections(our_shim: Shim) -> None:
    shim = our_shim
    sandbox_id = await start_upper_server(shim, "spdyfwd")
    async with SpdyTunnel.open(await spdy_forward_url(shim, sandbox_id)) as tunnel:
        error_a, a = await tunnel.forward(8080, 1)
        error_b, b = await tunnel.forward(8080, 2)
        await a.write(b"first connection\n")
        await b.write(b"second connection\n")
        # both are open at once: each answers before either is finished
        assert await read_until(b, b"\n") == b"SECOND CONNECTION\n"
        assert await read_until(a, b"\n") == b"FIRST CONNECTION\n"
        big = bytes(range(97, 123)) * 20_000  # 520 kB: many data frames both ways
        await a.write(big)
        await a.close()  # FIN: the pod's side reads end-of-file, answers the rest and closes
        assert await read_to_end(a) == big.upper()
        await b.write(b"more")
        await b.close()
        assert await read_to_end(b) == b"MORE"
        assert await read_to_end(error_a) == b"" and await read_to_end(error_b) == b""
        # the session goes on: a third connection after two finished ones
        error_c, c = await tunnel.forward(8080, 3)
        await c.write(b"third")
        await c.close()
        assert await read_to_end(c) == b"THIRD"
        assert await read_to_end(error_c) == b""
        await tunnel.session.ping()


async def test_spdy_port_forward_errors_are_written_to_the_error_stream(our_shim: Shim) -> None:
    shim = our_shim
    sb = await shim.run_sandbox("spdyerr")
    await shim.run(sb, "c", ["sleep", "1000"])
    async with SpdyTunnel.open(await spdy_forward_url(shim, sb[0])) as tunnel:
        error, data = await tunnel.forward(9, 0)  # nothing listens on 9
        message = (await read_to_end(error)).decode()
        assert message.startswith(f"error forwarding port 9 to pod {sb[0]}, uid : failed to "
                                  f"connect to localhost:9 inside the pod's network namespace")
        assert "refused" in message
        assert await read_to_end(data) == b""
        # streams without a valid port or type are reset, as the kubelet does
        for headers in ({"streamtype": "data"}, {"streamtype": "data", "port": "0"},
                        {"streamtype": "data", "port": "http"},
                        {"streamtype": "data", "port": "\u00b2"},  # a digit to str.isdigit
                        {"streamtype": "data", "port": "65536"}, {"port": "80"},
                        {"port": "80", "streamtype": "control"}):
            with pytest.raises(spdy.StreamClosedError, match="status 5"):
                await tunnel.session.open_stream({**headers, "requestid": "7"})
        await tunnel.session.ping()  # still serving


async def test_spdy_port_forward_waits_a_bounded_time_for_a_pair(process_shim: Shim) -> None:
    shim = process_shim
    shim.state["backend"].streaming.stream_creation_timeout = 0.2
    sb = await shim.run_sandbox("spdylone")
    async with SpdyTunnel.open(await spdy_forward_url(shim, sb[0])) as tunnel:
        error = await tunnel.session.open_stream({"streamtype": "error", "port": "80",
                                                  "requestid": "5"})
        assert await read_to_end(error) == b"(request=5) timed out waiting for streams"
        # a repeated stream type within one request is an error of that request
        error = await tunnel.session.open_stream({"streamtype": "error", "port": "80",
                                                  "requestid": "6"})
        again = await tunnel.session.open_stream({"streamtype": "error", "port": "80",
                                                  "requestid": "6"})
        assert await read_to_end(again) == b""  # reset
        assert again.reset_status == spdy.CANCEL
        text = await read_to_end(error)
        assert text.startswith(b"error processing stream for request 6: error stream already "
                               b"assigned")


async def test_spdy_tunnel_bad_input_ends_only_that_connection(process_shim: Shim) -> None:
    shim = process_shim
    sb = await shim.run_sandbox("spdybad")
    async with SpdyTunnel.open(await spdy_forward_url(shim, sb[0])) as tunnel:
        tunnel.writer.write(tunnel.ws.send(wse.BytesMessage(
            data=bytes.fromhex("80020006 00000004 00000001"))))  # a SPDY/2 PING
        await asyncio.wait_for(tunnel.closed_by_server.wait(), 20)
        assert tunnel.session.goaway_received
        assert tunnel.ws.state != wsproto.connection.ConnectionState.OPEN
    # the server goes on serving
    async with SpdyTunnel.open(await spdy_forward_url(shim, sb[0])) as tunnel:
        await tunnel.session.ping()
    # the SPDY subprotocol is for port forwarding only
    cid = await shim.run(sb, "c", ["sleep", "1000"])
    resp = await shim.runtime.Exec(cri.ExecRequest(container_id=cid, cmd=["true"], stdout=True))
    async with SpdyTunnel.open(resp.url) as tunnel:
        await asyncio.wait_for(tunnel.closed_by_server.wait(), 20)


# -- the real kubectl -----------------------------------------------------------------------------
class StandInApiserver:
    """Just enough of an apiserver for ``kubectl port-forward pod/NAME``: discovery, the pod
    (Running), and the portforward subresource, which asks the shim for a URL and relays the
    upgrade and everything after it byte for byte (as a kubelet proxying its runtime would)."""

    def __init__(self, shim: Shim, sandbox_id: str, pod: str) -> None:
        self.shim, self.sandbox_id, self.pod = shim, sandbox_id, pod
        self.docs: dict[str, object] = {
            "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
            "/api/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
                        "resources": [
                            {"name": "pods", "singularName": "pod", "namespaced": True,
                             "kind": "Pod", "verbs": ["get", "list"], "shortNames": ["po"]},
                            {"name": "pods/portforward", "singularName": "", "namespaced": True,
                             "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}]},
            f"/api/v1/namespaces/default/pods/{pod}": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": "default", "uid": "u1"},
                "spec": {"containers": [{"name": "server", "image": "busybox"}]},
                "status": {"phase": "Running"}},
        }
        self.upgrades: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                path = head.split(b" ", 2)[1].decode().split("?")[0]
                if path == f"/api/v1/namespaces/default/pods/{self.pod}/portforward":
                    await self.relay(head, reader, writer)
                    return
                doc = self.docs.get(path)
                body = json.dumps(doc).encode() if doc is not None else b"{}"
                status = b"200 OK" if doc is not None else b"404 Not Found"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        finally:
            self.tasks.discard(task)
            writer.close()

    async def relay(self, head: bytes, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        lines = head.decode().split("\r\n")
        self.upgrades.append(next((line.split(":", 1)[1].strip() for line in lines
                                   if line.lower().startswith("sec-websocket-protocol:")), ""))
        target = urlsplit(await spdy_forward_url(self.shim, self.sandbox_id))
        lines[0] = f"GET {target.path} HTTP/1.1"
        lines = [f"Host: {target.netloc}" if line.lower().startswith("host:") else line
                 for line in lines]
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
        up_writer.write("\r\n".join(lines).encode())

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.write_eof()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()


async def test_kubectl_port_forward_through_a_stand_in_apiserver(process_shim: Shim,
                                                                 tmp_path: Path) -> None:
    shim = process_shim
    sandbox_id = await start_upper_server(shim, "kubectlfwd", port=80)
    apiserver = StandInApiserver(shim, sandbox_id, "web")
    server = await asyncio.start_server(apiserver.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {}}]}))
    kubectl = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(kubeconfig), "port-forward", "pod/web", ":80",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECACHEDIR": str(tmp_path / "cache")})
    try:
        assert kubectl.stdout is not None
        line = (await asyncio.wait_for(kubectl.stdout.readline(), 30)).decode()
        found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> 80", line)
        assert found, line
        local = int(found.group(1))

        async def exchange(text: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", local)
            writer.write(text)
            await writer.drain()
            writer.write_eof()
            answer = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            return answer

        # two connections at once through one tunnel, data both ways
        answers = await asyncio.gather(exchange(b"hello from kubectl\n"),
                                       exchange(b"x" * 200_000))
        assert answers == [b"HELLO FROM KUBECTL\n", b"X" * 200_000]
        assert await exchange(b"again") == b"AGAIN"
        assert apiserver.upgrades == [SPDY_PF]  # one WebSocket, many connections
    finally:
        kubectl.terminate()
        await kubectl.wait()
        server.close()
        for task in list(apiserver.tasks):
            task.cancel()
        await asyncio.gather(*apiserver.tasks, return_exceptions=True)


async def test_port_forward_connects_over_ipv6_when_only_ipv6_listens() -> None:
    # a server on ::1 only: the IPv4 attempt is refused, the IPv6 one succeeds
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"v6:" + await reader.read(100))
        writer.close()

    server = await asyncio.start_server(answer, "::1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await connect_in_netns("", port)
        writer.write(b"hi")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == b"v6:hi"
        writer.close()
    finally:
        server.close()
