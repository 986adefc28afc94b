"""exec, attach and port-forward: the kubelet between the apiserver and the runtime.

Routes (Kubernetes' kubelet paths; the forms with the pod's UID check it):

    /exec/{namespace}/{pod}/{container}        /exec/{namespace}/{pod}/{uid}/{container}
    /attach/{namespace}/{pod}/{container}      /attach/{namespace}/{pod}/{uid}/{container}
    /portForward/{namespace}/{pod}             /portForward/{namespace}/{pod}/{uid}

Query, as the apiserver sends it: ``command`` (repeated, one argv word each),
``input``/``output``/``error``/``tty`` = ``1`` (``stdin``/``stdout``/``stderr`` and
``true`` are read too); ``port`` (repeated or comma-separated) for port-forward.

A WebSocket upgrade is checked (pod, container, running, query), then the
kubelet asks the runtime over CRI (Exec / Attach / PortForward) for a
streaming URL, opens a WebSocket there offering the client's subprotocols,
accepts the client with the one the runtime chose, and copies messages both
ways unchanged (channel protocols v1-v5, base64, ``SPDY/3.1+portforward.k8s.io``
tunnels alike) until either side closes; then it closes the other
(``pilothouse.wsrelay``, shared with the apiserver; the server runs uvicorn with its
``PassThroughWebSocketProtocol``, re-exported here).

Errors come before any upgrade, as plain text with Kubernetes' status: 404
unknown pod or container, 400 bad query / container not running / no
sandbox, 500 runtime failure. A request that is not a WebSocket upgrade (an
SPDY client) gets every one of those checks first, the runtime's included, and
then 400 ``Upgrade request required``, so it learns the real reason when there is
one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

import grpc
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidHandshake, InvalidStatus

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet.podstatus import RuntimePod
from pilothouse.services.kubelet.runtime import RuntimeClient, RuntimeError_
from pilothouse.wsrelay import PassThroughWebSocketProtocol as PassThroughWebSocketProtocol
from pilothouse.wsrelay import Receive, Send, Translate, deny, dial, relay

log = logging.getLogger("pilothouse.kubelet.streaming")

KINDS = ("exec", "attach", "portForward")
V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
CLOSE_SIGNAL, STDIN = 0xFF, 0
SPDY_TUNNEL_PREFIX = "SPDY/3.1+"
OPEN_TIMEOUT = 10.0
# CRI status -> the HTTP status the kubelet answers with.
CRI_TO_HTTP = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400,
               grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
               grpc.StatusCode.UNIMPLEMENTED: 501}


class StreamError(Exception):
    """Refuse the request: ``status`` and a plain-text ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StreamingHost(Protocol):
    """What the streaming endpoints need from the kubelet."""

    node_name: str
    runtime: RuntimeClient

    def find_pod(self, namespace: str, name: str) -> core_pb2.Pod | None: ...

    async def inspect(self, uid: str) -> RuntimePod: ...


@dataclass(frozen=True)
class StreamRequest:
    """One parsed /exec, /attach or /portForward request."""

    kind: str  # exec | attach | portForward
    namespace: str
    pod: str
    uid: str = ""
    container: str = ""
    command: list[str] = field(default_factory=list)
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    tty: bool = False
    ports: list[int] = field(default_factory=list)


def _flag(query: list[tuple[str, str]], *names: str) -> bool:
    values = [v for k, v in query if k in names]
    if not values:
        return False
    value = values[-1].lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false", ""):
        return False
    raise StreamError(400, f"{names[0]}: expected 1 or 0, got {values[-1]!r}")


def parse_ports(values: list[str]) -> list[int]:
    """``port`` values (each may be comma-separated) as port numbers; 400 when bad."""
    ports: list[int] = []
    for value in values:
        if not value:
            raise StreamError(400, 'query parameter "port" cannot be empty')
        for text in value.split(","):
            if not text.strip().isdigit() or not 0 < int(text) < 65536:
                raise StreamError(400, f"invalid port {text!r}: must be 1-65535")
            ports.append(int(text))
    return ports


def parse_request(path: str, query: list[tuple[str, str]]) -> StreamRequest:
    """The request a path and query (as ``parse_qsl`` pairs) ask for; 400/404 when bad."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in KINDS:
        raise StreamError(404, f"{path}: not found")
    kind = parts[0]
    if kind == "portForward":
        if len(parts) not in (3, 4):
            raise StreamError(400, "expected /portForward/{namespace}/{pod}[/{uid}]")
        return StreamRequest(kind, parts[1], parts[2], uid=parts[3] if len(parts) == 4 else "",
                             ports=parse_ports([v for k, v in query if k in ("port", "ports")]))
    if len(parts) not in (4, 5):
        raise StreamError(400, f"expected /{kind}/{{namespace}}/{{pod}}[/{{uid}}]/{{container}}")
    command = [v for k, v in query if k == "command"]
    req = StreamRequest(kind, parts[1], parts[2], uid=parts[3] if len(parts) == 5 else "",
                        container=parts[-1], command=command,
                        stdin=_flag(query, "input", "stdin"),
                        stdout=_flag(query, "output", "stdout"),
                        stderr=_flag(query, "error", "stderr"),
                        tty=_flag(query, "tty"))
    if kind == "exec" and not command:
        raise StreamError(400, "you must specify at least one command for the container")
    if not (req.stdin or req.stdout or req.stderr):
        raise StreamError(400, "you must specify at least 1 of stdin, stdout, stderr")
    return req


def upstream_offer(offered: list[str]) -> list[str]:
    """What to offer the runtime: the client's list, plus v4 behind a lone v5.

    kubectl 1.32 offers only v5; a runtime whose streaming server predates it
    (containerd 1.6's CRI) speaks v4, whose framing is the same but for v5's
    stream-close message (``v5_to_v4``)."""
    if V5 in offered and V4 not in offered:
        return [*offered, V4]
    return offered


def v5_to_v4(tty: bool) -> Translate:
    """The client's v5 messages for a v4 runtime: v4 cannot close one stream, so a
    close of stdin becomes ^D on a terminal (its end of input) and is dropped otherwise
    (a command reading stdin to its end then waits: the limit of such runtimes)."""

    def translate(message: bytes | str) -> bytes | str | None:
        if isinstance(message, bytes) and message[:1] == bytes([CLOSE_SIGNAL]):
            return bytes([STDIN]) + b"\x04" if tty and message[1:2] == bytes([STDIN]) else None
        return message

    return translate


def websocket_url(url: str) -> str:
    """A runtime streaming URL (http[s]://...) as the WebSocket URL to dial."""
    if url.startswith("http://"):
        return "ws://" + url[len("http://"):]
    if url.startswith("https://"):
        return "wss://" + url[len("https://"):]
    if url.startswith(("ws://", "wss://")):
        return url
    raise StreamError(500, f"the runtime answered a streaming URL the kubelet cannot dial: "
                           f"{url!r}")


class StreamingEndpoints:
    """The kubelet's /exec, /attach and /portForward (see the module docstring)."""

    def __init__(self, host: StreamingHost) -> None:
        self.host = host

    # -- entry points (called by the kubelet's ASGI server) -----------------------------

    async def http(self, path: str, query_string: bytes, send: Send) -> None:
        """A plain request: every check an upgrade gets, the runtime's too, then 400.

        The runtime is asked for a URL (never dialled: it expires unused) so that a
        client falling back from a refused WebSocket learns the runtime's reason."""
        try:
            req = parse_request(path, _query(query_string))
            await self._runtime_url(req)
            raise StreamError(400, "Upgrade request required")
        except StreamError as err:
            await _respond(send, err.status, err.message)
        except RuntimeError_ as err:
            await _respond(send, CRI_TO_HTTP.get(err.code, 500), err.message)

    async def websocket(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """A WebSocket upgrade: check, ask the runtime for a URL, relay."""
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        offered = list(scope.get("subprotocols") or [])
        try:
            req = parse_request(scope["path"], _query(scope.get("query_string", b"")))
            if req.kind == "portForward" and not req.ports and \
                    not any(p.startswith(SPDY_TUNNEL_PREFIX) for p in offered):
                raise StreamError(400, 'query parameter "port" is required')
            url = websocket_url(await self._runtime_url(req))
            upstream = await _dial(url, upstream_offer(offered))
        except StreamError as err:
            await _deny(scope, send, err.status, err.message)
            return
        except RuntimeError_ as err:
            await _deny(scope, send, CRI_TO_HTTP.get(err.code, 500), err.message)
            return
        log.debug("streaming %s %s/%s via %s (%s)", req.kind, req.namespace, req.pod, url,
                  upstream.subprotocol)
        if upstream.subprotocol == V4 and V4 not in offered:
            await relay(receive, send, upstream, subprotocol=V5, translate=v5_to_v4(req.tty))
        else:
            await relay(receive, send, upstream)

    # -- checks and CRI ------------------------------------------------------------------

    async def _check(self, req: StreamRequest) -> tuple[core_pb2.Pod, RuntimePod]:
        pod = self.host.find_pod(req.namespace, req.pod)
        if pod is None or (req.uid and req.uid != pod.metadata.uid):
            raise StreamError(404, f'pod "{req.pod}" in namespace "{req.namespace}" not found '
                                   f"on node {self.host.node_name}")
        runtime_pod = await self.host.inspect(pod.metadata.uid)
        if req.kind == "portForward":
            if runtime_pod.ready_sandbox() is None:
                raise StreamError(400, f'pod "{req.pod}" has no running sandbox')
            return pod, runtime_pod
        names = [c.name for c in [*pod.spec.initContainers, *pod.spec.containers]]
        names += [c.ephemeralContainerCommon.name for c in pod.spec.ephemeralContainers]
        if req.container not in names:
            raise StreamError(404, f'container "{req.container}" not found in pod "{req.pod}"')
        record = runtime_pod.latest(req.container)
        if record is None or not record.running:
            raise StreamError(400, f'container "{req.container}" in pod "{req.pod}" is not '
                                   "running")
        return pod, runtime_pod

    async def _runtime_url(self, req: StreamRequest) -> str:
        _, runtime_pod = await self._check(req)
        runtime = self.host.runtime
        if req.kind == "portForward":
            sandbox = runtime_pod.ready_sandbox()
            assert sandbox is not None  # _check refused the pod otherwise
            pf: cri.PortForwardResponse = await runtime.call(
                "PortForward", cri.PortForwardRequest(pod_sandbox_id=sandbox.id,
                                                      port=req.ports))
            return pf.url
        record = runtime_pod.latest(req.container)
        assert record is not None
        if req.kind == "exec":
            ex: cri.ExecResponse = await runtime.call("Exec", cri.ExecRequest(
                container_id=record.id, cmd=req.command, tty=req.tty, stdin=req.stdin,
                stdout=req.stdout, stderr=req.stderr and not req.tty))
            return ex.url
        at: cri.AttachResponse = await runtime.call("Attach", cri.AttachRequest(
            container_id=record.id, tty=req.tty, stdin=req.stdin, stdout=req.stdout,
            stderr=req.stderr and not req.tty))
        return at.url


def _query(query_string: bytes) -> list[tuple[str, str]]:
    return parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)


async def _dial(url: str, subprotocols: list[str]) -> ClientConnection:
    """Open the runtime's streaming WebSocket; StreamError(500) when it refuses."""
    try:
        return await dial(url, subprotocols, open_timeout=OPEN_TIMEOUT)
    except InvalidStatus as err:
        body = err.response.body.decode(errors="replace").strip() if err.response.body else ""
        raise StreamError(500, f"the runtime's streaming server answered "
                               f"{err.response.status_code}: {body}") from None
    except (OSError, InvalidHandshake, TimeoutError) as err:
        raise StreamError(500, f"cannot reach the runtime's streaming server: "
                               f"{err or type(err).__name__}") from None


async def _respond(send: Send, status: int, message: str) -> None:
    body = message.encode() + b"\n"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _deny(scope: dict[str, Any], send: Send, status: int, message: str) -> None:
    """Refuse a WebSocket upgrade with ``message`` as plain text."""
    await deny(scope, send, status, message.encode() + b"\n",
               content_type="text/plain; charset=utf-8", reason=message)
