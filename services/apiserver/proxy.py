"""apiserver -> kubelet: the one connection that does not go through the apiserver's store.

``pods/log`` (and later exec/attach/port-forward) are served by the kubelet of
the pod's node; the apiserver finds it from the Node object — the address of
type InternalIP (else Hostname) and ``status.daemonEndpoints.kubeletEndpoint``
— and streams the kubelet's answer back, as Kubernetes does:

    GET /api/v1/namespaces/{ns}/pods/{pod}/log?container=c&follow=true&tailLines=10
      -> GET http://{node-ip}:{kubelet-port}/containerLogs/{ns}/{pod}/{c}?follow=true&tailLines=10
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from pilothouse.services.apiserver import errors

# Query parameters of pods/log passed on to the kubelet unchanged.
LOG_PARAMS = ("follow", "previous", "sinceSeconds", "sinceTime", "timestamps", "tailLines",
              "limitBytes")


@dataclass(frozen=True)
class KubeletEndpoint:
    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def kubelet_endpoint(node: Any) -> KubeletEndpoint:
    """Where a Node's kubelet listens; 503 when the Node does not say."""
    port = node.status.daemonEndpoints.kubeletEndpoint.Port
    by_type = {a.type: a.address for a in node.status.addresses}
    host = by_type.get("InternalIP") or by_type.get("Hostname") or by_type.get("ExternalIP")
    if not port or not host:
        raise errors.service_unavailable(
            f'node "{node.metadata.name}" does not report a kubelet endpoint')
    return KubeletEndpoint(host, int(port))


def log_container(pod: Any, requested: str) -> str:
    """The container whose log is asked for, with Kubernetes' messages when unclear."""
    names = [c.name for c in pod.spec.containers]
    every = names + [c.name for c in pod.spec.initContainers] + \
        [c.ephemeralContainerCommon.name for c in pod.spec.ephemeralContainers]
    name = pod.metadata.name
    if requested:
        if requested not in every:
            raise errors.bad_request(
                f"container {requested} is not valid for pod {name}")
        return requested
    default = pod.metadata.annotations.get("kubectl.kubernetes.io/default-container", "")
    if default in names:
        return default
    if len(names) == 1:
        return names[0]
    raise errors.bad_request(
        f"a container name must be specified for pod {name}, choose one of: "
        f"[{' '.join(names)}]")


def log_url(endpoint: KubeletEndpoint, namespace: str, pod: str, container: str,
            query: dict[str, str]) -> str:
    passed = {k: v for k, v in query.items() if k in LOG_PARAMS}
    path = "/containerLogs/" + "/".join(quote(p, safe="") for p in (namespace, pod, container))
    return endpoint.base_url + path + (f"?{urlencode(passed)}" if passed else "")


async def stream(url: str) -> AsyncGenerator[tuple[int, str, bytes], None]:
    """GET ``url`` from a kubelet: yields (status, content type, b"") once, then chunks.

    A kubelet that cannot be reached is a 503 Status; the caller relays any
    other status and body as they come.
    """
    timeout = httpx.Timeout(connect=5.0, read=None, write=10.0, pool=5.0)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client, \
                client.stream("GET", url) as response:
            yield (response.status_code,
                   response.headers.get("content-type", "text/plain"), b"")
            async for chunk in response.aiter_raw():
                yield response.status_code, "", chunk
    except httpx.TransportError as exc:
        raise errors.service_unavailable(f"error talking to the kubelet: {exc}") from None
