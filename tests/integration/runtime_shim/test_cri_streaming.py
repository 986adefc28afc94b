"""Exec, Attach and PortForward through the shim's streaming server, with a WebSocket client.

Run against our backends and containerd's own CRI plugin (whose streaming server is
the kubelet's library): the same framing, status documents and port prefixes."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path

import grpc
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
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
            await ws.send(b"\x00ping\n")
            data = b""
            try:
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
