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

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidHandshake, InvalidStatus

from pilothouse.api.serialization import dumps
from pilothouse.services.apiserver import errors, proxy
from pilothouse.services.apiserver.errors import StatusError
from pilothouse.services.apiserver.metrics import APIServerMetrics
from pilothouse.services.apiserver.operations import not_found_path
from pilothouse.services.apiserver.registry import Registry
from pilothouse.wsrelay import PassThroughWebSocketProtocol as PassThroughWebSocketProtocol
from pilothouse.wsrelay import Receive, Send, deny, dial, relay
from pilothouse.wsrelay import offering as _offering  # noqa: F401 - tests dial with it

log = logging.getLogger("pilothouse.apiserver.streaming")

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
        return await dial(url, subprotocols, open_timeout=OPEN_TIMEOUT)
    except InvalidStatus as err:
        raise status_from_kubelet(err.response.status_code,
                                  bytes(err.response.body or b"")) from None
    except (OSError, InvalidHandshake, TimeoutError) as err:
        raise errors.service_unavailable(
            f"error dialing the kubelet: {err or type(err).__name__}") from None


async def _deny(scope: dict[str, Any], send: Send, exc: StatusError) -> None:
    """Refuse the upgrade with the Status as an HTTP answer."""
    await deny(scope, send, exc.code, dumps(exc.to_status()),
               content_type="application/json", reason=exc.message)
