"""exec, attach and port-forward end to end: a WebSocket client -> apiserver pods/exec ->
kubelet /exec -> CRI Exec -> the shim's streaming server, with the real pieces in-process
(apiserver, the shim's process backend, kubelet)."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pilothouse.client import connect as connect_client
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.apiserver.server import APIServer, APIServerConfig
from pilothouse.services.apiserver.streaming import _offering as offering

from .conftest import Node, busybox_pod, wait_for

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"


class TakesAnyOffer(ServerConnection):
    """A stand-in kubelet that answers with the first subprotocol offered, token or not."""

    def __init__(self, protocol: Any, *args: Any, **kwargs: Any) -> None:
        def first(headers: Any) -> Any:
            return headers.get("Sec-WebSocket-Protocol", "").split(",")[0].strip() or None

        protocol.process_subprotocol = first
        super().__init__(protocol, *args, **kwargs)


def running(pod: core_pb2.Pod) -> bool:
    return pod.status.phase == "Running" and bool(pod.status.containerStatuses) and all(
        cs.state.HasField("running") for cs in pod.status.containerStatuses)


@dataclass
class Session:
    """What one exec/attach WebSocket carried, by channel."""

    subprotocol: str
    channels: dict[int, bytes] = field(default_factory=dict)
    close_code: int | None = None

    @property
    def status(self) -> dict[str, object]:
        raw = self.channels.get(3, b"")
        return json.loads(raw) if raw else {}


def pod_url(node: Node, name: str, sub: str, query: Sequence[tuple[str, str]]) -> str:
    return (f"ws://127.0.0.1:{node.api.port}/api/v1/namespaces/default/pods/{name}/{sub}?"
            + urlencode(list(query)))


def exec_query(*command: str, **flags: bool) -> list[tuple[str, str]]:
    query = [("command", c) for c in command]
    return query + [(k, "true") for k, v in flags.items() if v]


async def open_ws(url: str, *protocols: str) -> ClientConnection:
    # offered as given: SPDY/3.1+portforward.k8s.io is not an HTTP token
    return await connect(url, create_connection=offering(list(protocols)),
                         compression=None, proxy=None, open_timeout=20)


async def collect(ws: ClientConnection) -> Session:
    session = Session(ws.subprotocol or "")
    try:
        async for message in ws:
            assert isinstance(message, bytes), message
            channel, data = message[0], message[1:]
            session.channels[channel] = session.channels.get(channel, b"") + data
    except ConnectionClosed:
        pass
    session.close_code = ws.close_code
    return session


async def refused(url: str, *protocols: str) -> tuple[int, dict[str, object]]:
    """The HTTP status and Status body of a refused upgrade."""
    with pytest.raises(InvalidStatus) as caught:
        await open_ws(url, *protocols)
    response = caught.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def start_kubelet(node: Node) -> None:
    node.overrides["node_ip"] = "127.0.0.1"  # where the apiserver finds the kubelet
    await node.start_kubelet()


async def start(node: Node, pod: core_pb2.Pod) -> None:
    await start_kubelet(node)
    await node.run_pod(pod)
    await node.wait_pod(pod.metadata.name, running, what="Running")


async def test_exec_returns_output_stderr_and_exit_code(process_node: Node) -> None:
    await start(process_node, busybox_pod("web", "sleep 3600"))
    url = pod_url(process_node, "web", "exec", exec_query(
        "sh", "-c", "echo out; echo err >&2; exit 3", stdout=True, stderr=True))
    async with await open_ws(url, V5, V4) as ws:
        session = await collect(ws)
    assert session.subprotocol == V5  # the shim's choice, passed back through both hops
    assert session.channels[1] == b"out\n"
    assert session.channels[2] == b"err\n"
    assert session.status["status"] == "Failure"
    assert session.status["reason"] == "NonZeroExitCode"
    assert session.status["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}
    assert session.close_code == 1000

    # an older client's protocol is passed through as well
    url = pod_url(process_node, "web", "exec", exec_query("cat", "/etc/hostname",
                                                          stdout=True))
    async with await open_ws(url, V4) as ws:
        session = await collect(ws)
    assert session.subprotocol == V4
    assert session.channels[1] == b"web\n"
    assert session.status == {"metadata": {}, "status": "Success"}


async def test_concurrent_execs_do_not_cross(process_node: Node) -> None:
    await start(process_node, busybox_pod("web", "sleep 3600"))

    async def one(i: int) -> bytes:
        url = pod_url(process_node, "web", "exec", exec_query(
            "sh", "-c", f"read x; echo $x-{i}", stdin=True, stdout=True))
        async with await open_ws(url, V5) as ws:
            await ws.send(b"\x00" + f"hello{i}\n".encode())
            session = await collect(ws)
        return session.channels.get(1, b"")

    outputs = await asyncio.gather(*(one(i) for i in range(12)))
    assert outputs == [f"hello{i}-{i}\n".encode() for i in range(12)]


async def test_exec_stdin_reaches_the_command_and_v5_close_ends_it(process_node: Node) -> None:
    await start(process_node, busybox_pod("web", "sleep 3600"))
    url = pod_url(process_node, "web", "exec", exec_query(
        "sh", "-c", "wc -c; echo done", stdin=True, stdout=True, stderr=True))
    payload = bytes(range(256)) * 1024  # 256 KiB in several messages, binary-safe
    async with await open_ws(url, V5) as ws:
        for i in range(0, len(payload), 32 * 1024):
            await ws.send(b"\x00" + payload[i:i + 32 * 1024])
        await ws.send(b"\xff\x00")  # v5: stdin is closed
        session = await collect(ws)
    assert session.channels[1].split() == [str(len(payload)).encode(), b"done"]
    assert session.status["status"] == "Success"


async def test_exec_with_a_terminal_follows_resize(process_node: Node) -> None:
    await start(process_node, busybox_pod("web", "sleep 3600"))
    url = pod_url(process_node, "web", "exec", exec_query(
        "sh", "-c", "read line; stty size; test -t 1 && echo a-terminal",
        stdin=True, stdout=True, tty=True))
    async with await open_ws(url, V5) as ws:
        await ws.send(b"\x04" + json.dumps({"Width": 101, "Height": 33}).encode())
        await ws.send(b"\x00go\n")
        session = await collect(ws)
    out = session.channels[1].decode()
    assert "33 101" in out
    assert "a-terminal" in out
    assert out.startswith("go\r\n")  # the terminal echoed the input
    assert 2 not in session.channels  # a terminal has no separate stderr
    assert session.status["status"] == "Success"


async def test_attach_joins_the_containers_stdio(process_node: Node) -> None:
    pod = busybox_pod("echoer", "while read line; do echo got $line; done")
    pod.spec.containers[0].stdin = True
    await start(process_node, pod)
    url = pod_url(process_node, "echoer", "attach",
                  [("container", "main"), ("stdin", "true"), ("stdout", "true"),
                   ("stderr", "true")])
    async with await open_ws(url, V5) as ws:
        assert ws.subprotocol == V5
        await ws.send(b"\x00hello\n")
        seen = b""
        while b"got hello" not in seen:
            message = await ws.recv()
            assert isinstance(message, bytes)
            if message[0] == 1:
                seen += message[1:]
    assert b"got hello\n" in seen


async def test_port_forward_websocket_reaches_a_port_inside_the_pod(
        process_node: Node) -> None:
    await start(process_node, busybox_pod(
        "httpd", "mkdir -p /tmp/www; echo hello-pf > /tmp/www/index.html; "
                 "exec httpd -f -p 8080 -h /tmp/www"))

    async def get_page() -> bytes:
        url = pod_url(process_node, "httpd", "portforward", [("ports", "8080")])
        async with await open_ws(url, "portforward.k8s.io") as ws:
            assert ws.subprotocol == "portforward.k8s.io"
            first = [await ws.recv(), await ws.recv()]  # the port on data and error channels
            assert first == [b"\x00" + struct.pack("<H", 8080),
                             b"\x01" + struct.pack("<H", 8080)]
            await ws.send(b"\x00GET / HTTP/1.0\r\n\r\n")
            data = b""
            try:
                async for message in ws:
                    assert isinstance(message, bytes)
                    if message[0] == 0:
                        data += message[1:]
                    if b"hello-pf" in data:
                        break
            except ConnectionClosed:
                pass
            return data

    # httpd may still be starting when the pod is Running
    pages: list[bytes] = []

    async def served() -> bool:
        pages.append(await get_page())
        return b"hello-pf" in pages[-1]

    await wait_for(served, 20, "a page through port-forward")
    assert pages[-1].startswith(b"HTTP/1.")


async def test_refusals_are_kubernetes_statuses(process_node: Node) -> None:
    await start(process_node, busybox_pod("web", "sleep 3600"))
    node = process_node
    code, status = await refused(pod_url(node, "nope", "exec",
                                         exec_query("ls", stdout=True)), V5)
    assert (code, status["reason"], status["message"]) == (404, "NotFound",
                                                           'pods "nope" not found')
    code, status = await refused(pod_url(node, "web", "exec", [("container", "nope"),
                                                               ("command", "ls"),
                                                               ("stdout", "true")]), V5)
    assert (code, status["reason"]) == (400, "BadRequest")
    assert status["message"] == "container nope is not valid for pod web"
    # checked by the kubelet, relayed with its code and words
    code, status = await refused(pod_url(node, "web", "exec", [("stdout", "true")]), V5)
    assert (code, status["reason"]) == (400, "BadRequest")
    assert status["message"] == "you must specify at least one command for the container"
    code, status = await refused(pod_url(node, "web", "exec", exec_query("ls")), V5)
    assert status["message"] == "you must specify at least 1 of stdin, stdout, stderr"
    code, status = await refused(pod_url(node, "web", "portforward", [("ports", "x")]),
                                 "portforward.k8s.io")
    assert (code, status["reason"]) == (400, "BadRequest")
    kubelet = node.kubelet_url.replace("http://", "ws://")
    with pytest.raises(InvalidStatus) as caught:  # the channel protocol needs ?port=
        await open_ws(f"{kubelet}/portForward/default/web", "portforward.k8s.io")
    assert caught.value.response.status_code == 400
    assert b'query parameter "port" is required' in (caught.value.response.body or b"")
    # not a WebSocket (what kubectl's SPDY fallback sends): checked, then refused
    api = f"http://127.0.0.1:{node.api.port}/api/v1/namespaces/default/pods"
    async with httpx.AsyncClient(timeout=20) as http:
        resp = await http.post(f"{api}/web/exec?command=ls&stdout=true")
        assert resp.status_code == 400
        assert resp.json()["message"] == "Upgrade request required"
        resp = await http.post(f"{api}/nope/exec?command=ls&stdout=true")
        assert (resp.status_code, resp.json()["reason"]) == (404, "NotFound")
        resp = await http.get(f"{api}/web/exec?command=ls")
        assert resp.json()["message"] == "you must specify at least 1 of stdin, stdout, stderr"
        resp = await http.delete(f"{api}/web/exec?command=ls&stdout=true")
        assert (resp.status_code, resp.json()["reason"]) == (405, "MethodNotAllowed")
        metrics = (await http.get(f"http://127.0.0.1:{node.api.port}/metrics")).text
    assert 'apiserver_request_total{code="404",component="apiserver",dry_run="",group="",' \
           'resource="pods",scope="resource",subresource="exec",verb="CONNECT",' \
           'version="v1"}' in metrics


async def test_a_stopped_container_is_400_and_the_kubelet_refuses_unknown_names(
        process_node: Node) -> None:
    pod = busybox_pod("done", "echo bye", restart_policy="Never")
    await start_kubelet(process_node)
    await process_node.run_pod(pod)
    await process_node.wait_pod("done", lambda p: p.status.phase == "Succeeded",
                                what="Succeeded")
    code, status = await refused(pod_url(process_node, "done", "exec",
                                         exec_query("ls", stdout=True)), V5)
    assert (code, status["reason"]) == (400, "BadRequest")
    assert status["message"] == 'container "main" in pod "done" is not running'
    kubelet = process_node.kubelet_url.replace("http://", "ws://")
    with pytest.raises(InvalidStatus) as caught:
        await open_ws(f"{kubelet}/exec/default/nope/main?command=ls&output=1", V5)
    assert caught.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as caught:
        await open_ws(f"{kubelet}/exec/default/done/other?command=ls&output=1", V5)
    assert caught.value.response.status_code == 404
    assert b'container "other" not found' in (caught.value.response.body or b"")
    async with httpx.AsyncClient(timeout=20) as http:
        resp = await http.get(f"{process_node.kubelet_url}/attach/default/done/main?output=1")
    assert resp.status_code == 400 and "is not running" in resp.text


async def test_kubectls_v5_exec_on_every_runtime(node: Node) -> None:
    """kubectl 1.32 offers only v5; containerd's own CRI speaks v4, and the kubelet
    bridges the two."""
    await start(node, busybox_pod("web", "sleep 3600"))
    url = pod_url(node, "web", "exec", exec_query("sh", "-c", "echo out; exit 3",
                                                  stdout=True, stderr=True))
    async with await open_ws(url, V5) as ws:
        session = await collect(ws)
    assert session.subprotocol == V5
    assert session.channels[1] == b"out\n"
    assert session.status["reason"] == "NonZeroExitCode"
    assert session.status["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}

    url = pod_url(node, "web", "exec", exec_query(
        "sh", "-c", "read line; echo got-$line", stdin=True, stdout=True, tty=True))
    async with await open_ws(url, V5) as ws:
        await ws.send(b"\x04" + json.dumps({"Width": 120, "Height": 40}).encode())
        await ws.send(b"\x00hello\n")
        session = await collect(ws)
    assert "got-hello" in session.channels[1].decode()
    assert session.status["status"] == "Success"


async def test_the_runtimes_refusal_reaches_websocket_and_fallback_clients(
        process_node: Node) -> None:
    await start(process_node, busybox_pod("web", "sleep 3600"))  # stdin not kept open
    query = [("stdin", "true"), ("stdout", "true")]
    code, status = await refused(pod_url(process_node, "web", "attach", query), V5)
    assert (code, status["reason"]) == (400, "BadRequest")
    assert "not created with stdin open" in str(status["message"])
    api = f"http://127.0.0.1:{process_node.api.port}/api/v1/namespaces/default/pods"
    async with httpx.AsyncClient(timeout=20) as http:  # kubectl's SPDY fallback
        resp = await http.post(f"{api}/web/attach?stdin=true&stdout=true")
    assert resp.status_code == 400
    assert "not created with stdin open" in resp.json()["message"]


@pytest.mark.parametrize("http2", [False, True], ids=["uvicorn", "hypercorn-http2"])
async def test_the_apiserver_relays_to_the_nodes_kubelet(tmp_path: Path, http2: bool) -> None:
    """The apiserver alone, with a stand-in kubelet: path, query and subprotocols reach
    it as Kubernetes' kubelet expects them, messages go both ways unchanged, on either
    HTTP server the apiserver runs on."""
    seen: list[tuple[str, str | None]] = []

    async def kubelet(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.append((ws.request.path, ws.request.headers.get("Sec-WebSocket-Protocol")))
        async for message in ws:
            await ws.send(message)  # echo, binary and text alike
            if message == b"\x00bye":
                await ws.close(1000)

    api = APIServer(APIServerConfig(data_dir=tmp_path / "api", port=0, grpc_port=0,
                                    http2=http2))
    await api.start()
    client = connect_client(f"grpc://{api.grpc_address}")
    try:
        async with serve(kubelet, "127.0.0.1", 0, create_connection=TakesAnyOffer) as server:
            port = server.sockets[0].getsockname()[1]
            node = core_pb2.Node()
            node.metadata.name = "stand-in"
            node = await client.create(node)
            node.status.addresses.add(type="InternalIP", address="127.0.0.1")
            node.status.daemonEndpoints.kubeletEndpoint.Port = port
            await client.update_status(node)
            pod = busybox_pod("p", "sleep 1")
            pod.metadata.namespace = "default"
            pod.spec.nodeName = "stand-in"
            await client.create(pod)
            url = (f"ws://127.0.0.1:{api.port}/api/v1/namespaces/default/pods/p/exec?"
                   "command=sh&command=-c&command=echo%20a%20b&stdin=true&stdout=true&tty=1")
            async with await open_ws(url, V5, V4) as ws:
                assert ws.subprotocol == V5
                await ws.send(b"\x00hello")
                assert await ws.recv() == b"\x00hello"
                await ws.send("text too")
                assert await ws.recv() == "text too"
                await ws.send(b"\x00bye")
                assert await ws.recv() == b"\x00bye"
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1000
            async with await open_ws(url.replace("/exec?", "/portforward?ports=8080&"),
                                     "SPDY/3.1+portforward.k8s.io") as ws:
                assert ws.subprotocol == "SPDY/3.1+portforward.k8s.io"
        assert seen == [
            ("/exec/default/p/main?command=sh&command=-c&command=echo+a+b&input=1&output=1"
             "&tty=1", f"{V5}, {V4}"),
            ("/portForward/default/p?port=8080", "SPDY/3.1+portforward.k8s.io")]
    finally:
        await client.close()
        await api.stop()
