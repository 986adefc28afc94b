"""pods/exec, pods/attach, pods/portforward: WebSocket pass-through to the pod's kubelet.

kubectl 1.32 opens a WebSocket (``GET`` with ``Upgrade: websocket``) on

    /api/v1/namespaces/{ns}/pods/{name}/exec?command=sh&command=-c&command=...
        &container=c&stdin=true&stdout=true&stderr=true&tty=true
    /api/v1/namespaces/{ns}/pods/{name}/attach?container=c&stdin=true&stdout=true...
    /api/v1/namespaces/{ns}/pods/{name}/portforward[?ports=8080]

offering ``v5.channel.k8s.io`` (exec/attach) or ``SPDY/3.1+portforward.k8s.io``
(port-forward). The proxy checks the pod and container as Kubernetes does,
finds the node's kubelet (``proxy.kubelet_endpoint``), dials

    ws://{node-ip}:{port}/exec/{ns}/{name}/{container}?command=...&input=1&output=1&error=1&tty=1
    ws://{node-ip}:{port}/portForward/{ns}/{name}?port=8080

offering the client's subprotocols, accepts the client with the one the
kubelet chose, and copies messages both ways unchanged until either side
closes; then it closes the other.

Errors are Kubernetes ``Status`` answers instead of the upgrade: 404 unknown
pod, 400 unknown container / unscheduled pod / bad query, the kubelet's own
refusal with its code (404, 400 container not running, ...), 503 when the
kubelet cannot be reached. A request that is not a WebSocket upgrade (kubectl
falls back to SPDY when the WebSocket is refused) is checked the same way,
down to the kubelet, and then answered 400 ``Upgrade request required``, so
the fallback reports the same reason the WebSocket got.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import httpx
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    NegotiationError,
)
from websockets.typing import Subprotocol

from pilothouse.api.serialization import dumps
from pilothouse.services.apiserver import errors, proxy
from pilothouse.services.apiserver.errors import StatusError
from pilothouse.services.apiserver.metrics import APIServerMetrics
from pilothouse.services.apiserver.operations import not_found_path
from pilothouse.services.apiserver.registry import Registry

log = logging.getLogger("pilothouse.apiserver.streaming")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

SUBRESOURCES = ("exec", "attach", "portforward")
KUBELET_PATHS = {"exec": "exec", "attach": "attach", "portforward": "portForward"}
OPEN_TIMEOUT = 10.0
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 409: "Conflict", 422: "Invalid", 429: "TooManyRequests",
           500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


@dataclass(frozen=True)
class ConnectRequest:
    """A pods/{exec,attach,portforward} request: where, and what to ask the kubelet."""

    namespace: str
    name: str
    subresource: str
    query: list[tuple[str, str]]


def parse_path(path: str) -> tuple[str, str, str] | None:
    """(namespace, pod, subresource) of a pods/exec|attach|portforward path, else None."""
    parts = [p for p in path.split("/") if p]
    if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" \
            and parts[6] in SUBRESOURCES:
        return parts[3], parts[5], parts[6]
    return None


def _go_bool(value: str) -> bool:
    # Kubernetes reads a query bool as false only for false/f/0; anything else is true.
    return value.lower() not in ("false", "f", "0")


def kubelet_query(subresource: str, query: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """PodExecOptions / PodAttachOptions / PodPortForwardOptions -> the kubelet's query."""
    if subresource == "portforward":
        ports: list[tuple[str, str]] = []
        for key, value in query:
            if key != "ports":
                continue
            for text in value.split(","):
                if not text.strip().isdigit() or not 0 < int(text) < 65536:
                    raise errors.bad_request(f"invalid port {text!r}: must be 1-65535")
                ports.append(("port", str(int(text))))
        return ports
    out = [("command", v) for k, v in query if k == "command"] if subresource == "exec" else []
    flags = {k: v for k, v in query}
    for option, kubelet_name in (("stdin", "input"), ("stdout", "output"), ("stderr", "error"),
                                 ("tty", "tty")):
        if option in flags and _go_bool(flags[option]):
            out.append((kubelet_name, "1"))
    return out


def status_from_kubelet(code: int, body: bytes) -> StatusError:
    """A kubelet's refusal (plain text, or a Status) as the Status the client gets."""
    text = body.decode(errors="replace").strip()
    with contextlib.suppress(ValueError):
        doc = json.loads(text)
        if isinstance(doc, dict) and doc.get("kind") == "Status":
            return StatusError(int(doc.get("code") or code), str(doc.get("reason") or ""),
                               str(doc.get("message") or text))
    if code < 400:
        return errors.internal(f"the kubelet answered {code} instead of an upgrade: {text}")
    return StatusError(code, REASONS.get(code, ""), text or f"the kubelet answered {code}")


class StreamingProxy:
    """Serves the three streaming subresources of pods (see the module docstring)."""

    def __init__(self, registry: Registry, *, metrics: APIServerMetrics | None = None) -> None:
        self.registry = registry
        self.metrics = metrics or APIServerMetrics()

    async def kubelet_url(self, namespace: str, name: str, subresource: str,
                          query: list[tuple[str, str]]) -> str:
        """``http://kubelet/...`` for a request, after Kubernetes' checks (StatusError)."""
        params = kubelet_query(subresource, query)
        pods = self.registry.store_for("", "pods")
        pod: Any = await pods.get(namespace, name)
        path = [KUBELET_PATHS[subresource], namespace, name]
        if subresource != "portforward":
            requested = ""
            for key, value in query:
                if key == "container":
                    requested = value
            path.append(proxy.log_container(pod, requested))
        if not pod.spec.nodeName:
            raise errors.bad_request(f"pod {name} does not have a host assigned")
        node = await self.registry.store_for("", "nodes").get("", pod.spec.nodeName)
        endpoint = proxy.kubelet_endpoint(node)
        url = endpoint.base_url + "/" + "/".join(quote(p, safe="") for p in path)
        return url + (f"?{urlencode(params)}" if params else "")

    # -- a plain HTTP request (no WebSocket) --------------------------------------------

    async def http(self, namespace: str, name: str, subresource: str,
                   query_string: bytes) -> StatusError:
        """The Status for a request that is not an upgrade (raises the first refusal)."""
        url = await self.kubelet_url(namespace, name, subresource, _query(query_string))
        timeout = httpx.Timeout(10.0)
        try:
            async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
                response = await client.get(url)
        except httpx.TransportError as exc:
            raise errors.service_unavailable(f"error talking to the kubelet: {exc}") from None
        if response.status_code == 400 and b"Upgrade request required" in response.content:
            return errors.bad_request("Upgrade request required")
        return status_from_kubelet(response.status_code, response.content)

    # -- a WebSocket ----------------------------------------------------------------------

    async def websocket(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        where = parse_path(scope["path"])
        labels = ("CONNECT", "", "", "v1", "pods", where[2] if where else "", "resource",
                  "apiserver")
        code = "101"
        try:
            if where is None:
                raise not_found_path()
            url = await self.kubelet_url(*where, _query(scope.get("query_string", b"")))
            upstream = await _dial("ws" + url[len("http"):],
                                   list(scope.get("subprotocols") or []))
        except StatusError as exc:
            code = str(exc.code)
            await _deny(scope, send, exc)
            return
        except Exception as exc:  # a bug: the client still gets a Status
            log.exception("internal error serving a WebSocket on %s", scope["path"])
            code = "500"
            await _deny(scope, send, errors.internal(str(exc) or type(exc).__name__))
            return
        finally:
            if where is not None:
                self.metrics.request_total.labels(*labels, code).inc()
        gauge = self.metrics.longrunning.labels(*labels[0:1], *labels[2:])
        gauge.inc()
        try:
            await relay(receive, send, upstream)
        finally:
            gauge.dec()


def _query(query_string: bytes) -> list[tuple[str, str]]:
    return parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)


async def _dial(url: str, subprotocols: list[str]) -> ClientConnection:
    """Open the kubelet's WebSocket; its refusal or absence as a StatusError."""
    try:
        return await connect(url, create_connection=_offering(subprotocols),
                             compression=None, max_size=None, proxy=None,
                             open_timeout=OPEN_TIMEOUT, ping_interval=None)
    except InvalidStatus as err:
        raise status_from_kubelet(err.response.status_code,
                                  bytes(err.response.body or b"")) from None
    except (OSError, InvalidHandshake, TimeoutError) as err:
        raise errors.service_unavailable(
            f"error dialing the kubelet: {err or type(err).__name__}") from None


# Kubernetes' ``SPDY/3.1+portforward.k8s.io`` is not an HTTP token (the "/"), and the
# websockets library checks subprotocols as tokens on both sides of a handshake. The
# two classes below keep its framing and leave the offer and the choice to us.
# The same code is in the kubelet (services/kubelet/streaming.py): components share no code.


def _offering(subprotocols: list[str]) -> type[ClientConnection]:
    """A client connection class that offers ``subprotocols`` exactly as given."""
    offered = [Subprotocol(p) for p in subprotocols]

    def chosen(headers: Headers) -> Subprotocol | None:
        values = [v.strip() for header in headers.get_all("Sec-WebSocket-Protocol")
                  for v in header.split(",") if v.strip()]
        if not values:
            return None
        if len(values) > 1 or values[0] not in offered:
            raise NegotiationError(f"the server chose {', '.join(values)}, which was not "
                                   f"offered")
        return Subprotocol(values[0])

    class Offering(ClientConnection):
        def __init__(self, protocol: ClientProtocol, **kwargs: Any) -> None:
            protocol.available_subprotocols = offered or None
            protocol.process_subprotocol = chosen  # type: ignore[method-assign]
            super().__init__(protocol, **kwargs)

    return Offering


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


async def relay(receive: Receive, send: Send, upstream: ClientConnection) -> None:
    """Accept the ASGI WebSocket with ``upstream``'s subprotocol and copy messages both ways.

    Whichever side closes first, the other is closed too; the upstream's close
    code reaches the client (an abnormal end becomes 1011).
    """
    await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

    async def from_client() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            data = message.get("bytes")
            try:
                await upstream.send(data if data is not None else message.get("text") or "")
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
        code = upstream.close_code
        if code in (None, 1005):
            code = 1000
        elif code == 1006:
            code = 1011
        with contextlib.suppress(Exception):  # the client may be gone already
            await send({"type": "websocket.close", "code": code,
                        "reason": upstream.close_reason or ""})


async def _deny(scope: dict[str, Any], send: Send, exc: StatusError) -> None:
    """Refuse the upgrade with the Status as an HTTP answer (ASGI's denial extension)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
        return
    body = dumps(exc.to_status())
    await send({"type": "websocket.http.response.start", "status": exc.code,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "websocket.http.response.body", "body": body})
