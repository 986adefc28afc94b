"""The kubelet's HTTP server: what the apiserver proxies to, and what monitoring scrapes.

Routes (Kubernetes' paths):

- ``GET /healthz`` — ``ok`` while the PLEG relists and the runtime answers;
- ``GET /pods`` — a PodList of the pods this kubelet runs;
- ``GET /containerLogs/{namespace}/{pod}/{container}`` — query ``follow``,
  ``previous``, ``tailLines``, ``sinceSeconds``, ``sinceTime``, ``timestamps``,
  ``limitBytes``; text/plain, streamed (chunked) with ``follow``;
- ``POST /run/{namespace}/{pod}/{container}?cmd=...`` — run a command (ExecSync): its
  output, and its exit code in the ``X-Exit-Code`` header;
- ``GET /stats/summary`` — node and pod CPU/memory (the Summary API's JSON shape);
- ``GET /metrics`` — the kubelet's Prometheus metrics; ``GET /metrics/resource`` —
  node/pod/container CPU and memory in Prometheus text;
- ``/exec``, ``/attach``, ``/portForward`` — WebSocket upgrades relayed to the runtime's
  streaming server (``streaming.py``).

Errors are plain-text answers with the status Kubernetes gives (404 for an
unknown pod or container, 400 for a bad query), never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pilothouse.api.codec import message_to_dict
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import logs as logslib
from pilothouse.services.kubelet.metrics import KubeletMetrics
from pilothouse.services.kubelet.podstatus import ContainerRecord, RuntimePod
from pilothouse.services.kubelet.runtime import RuntimeClient, RuntimeError_
from pilothouse.services.kubelet.streaming import KINDS as STREAMING_KINDS
from pilothouse.services.kubelet.streaming import (
    PassThroughWebSocketProtocol,
    StreamingEndpoints,
)

log = logging.getLogger("pilothouse.kubelet.server")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class KubeletView(Protocol):
    """What the server needs from the kubelet."""

    node_name: str
    runtime: RuntimeClient
    metrics: KubeletMetrics

    def find_pod(self, namespace: str, name: str) -> core_pb2.Pod | None: ...

    def running_pods(self) -> list[core_pb2.Pod]: ...

    async def inspect(self, uid: str) -> RuntimePod: ...

    def healthy(self) -> tuple[bool, str]: ...

    def boot_time(self) -> datetime: ...


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _flag(query: dict[str, list[str]], name: str) -> bool:
    value = query.get(name, ["false"])[-1].lower()
    if value in ("", "1", "true"):
        return value != "" or name in query
    if value in ("0", "false"):
        return False
    raise HTTPError(400, f"{name}: expected true or false, got {value!r}")


def _int(query: dict[str, list[str]], name: str) -> int | None:
    if name not in query:
        return None
    raw = query[name][-1]
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(400, f"{name}: expected an integer, got {raw!r}") from None
    if value < 0:
        raise HTTPError(400, f"{name}: must be 0 or more, got {value}")
    return value


def log_options(query: dict[str, list[str]], now_ns: int) -> logslib.LogOptions:
    opts = logslib.LogOptions(follow=_flag(query, "follow"),
                              timestamps=_flag(query, "timestamps"),
                              tail_lines=_int(query, "tailLines"),
                              limit_bytes=_int(query, "limitBytes"))
    since = _int(query, "sinceSeconds")
    if since is not None:
        if since == 0:
            raise HTTPError(400, "sinceSeconds: must be greater than 0")
        opts.since_ns = now_ns - since * 1_000_000_000
    if "sinceTime" in query:
        try:
            opts.since_ns = logslib.parse_ts(query["sinceTime"][-1].replace("+00:00", "Z"))
        except ValueError:
            raise HTTPError(400, f"sinceTime: not an RFC 3339 time: "
                                 f"{query['sinceTime'][-1]!r}") from None
    return opts


class KubeletServer:
    def __init__(self, kubelet: KubeletView) -> None:
        self.kubelet = kubelet
        self.streaming = StreamingEndpoints(kubelet)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    # -- serving ----------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        config = uvicorn.Config(self, host=host, port=port, log_config=None, access_log=False,
                                lifespan="off", timeout_graceful_shutdown=1, loop="none",
                                http="h11", ws=PassThroughWebSocketProtocol,
                                ws_per_message_deflate=False)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(), name="kubelet-http")
        while not self._server.started:
            if self._task.done():
                with contextlib.suppress(SystemExit):
                    self._task.result()
                raise OSError(f"cannot listen on {host}:{port}")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, SystemExit):
                await self._task

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.streaming.websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        path = unquote(scope["path"])
        if path.lstrip("/").split("/", 1)[0] in STREAMING_KINDS:
            await self.streaming.http(path, scope.get("query_string", b""), send)
            return
        query = parse_qs(scope.get("query_string", b"").decode(), keep_blank_values=True)
        method = scope["method"]
        try:
            await self._route(method, path, query, send)
        except HTTPError as e:
            await _respond(send, e.status, e.message.encode() + b"\n")
        except RuntimeError_ as e:
            await _respond(send, 500, f"runtime: {e.message}\n".encode())

    async def _route(self, method: str, path: str, query: dict[str, list[str]],
                     send: Send) -> None:
        parts = [p for p in path.split("/") if p]
        if path in ("/healthz", "/healthz/ping", "/healthz/syncloop"):
            ok, why = self.kubelet.healthy()
            await _respond(send, 200 if ok else 500, b"ok" if ok else why.encode())
            return
        if path == "/pods" and method == "GET":
            items = [message_to_dict(p) for p in self.kubelet.running_pods()]
            body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
            await _respond(send, 200, json.dumps(body).encode(), "application/json")
            return
        if path == "/metrics":
            await _respond(send, 200, generate_latest(self.kubelet.metrics.registry),
                           CONTENT_TYPE_LATEST)
            return
        if path == "/metrics/resource":
            await _respond(send, 200, (await self.resource_metrics()).encode(),
                           CONTENT_TYPE_LATEST)
            return
        if path == "/stats/summary":
            summary = json.dumps(await self.summary()).encode()
            await _respond(send, 200, summary, "application/json")
            return
        if parts and parts[0] == "containerLogs" and method == "GET":
            if len(parts) != 4:
                raise HTTPError(400, "expected /containerLogs/{namespace}/{pod}/{container}")
            await self.container_logs(parts[1], parts[2], parts[3], query, send)
            return
        if parts and parts[0] == "run" and method == "POST":
            if len(parts) not in (4, 5):
                raise HTTPError(400, "expected /run/{namespace}/{pod}/{container}")
            await self.run_command(parts[1], parts[2], parts[-1], query, send)
            return
        raise HTTPError(404, f"{path}: not found")

    # -- containers --------------------------------------------------------------------------

    async def _container(self, namespace: str, pod_name: str, container: str,
                         previous: bool = False) -> tuple[core_pb2.Pod, ContainerRecord]:
        pod = self.kubelet.find_pod(namespace, pod_name)
        if pod is None:
            raise HTTPError(404, f'pod "{pod_name}" in namespace "{namespace}" not found '
                                 f"on node {self.kubelet.node_name}")
        names = [c.name for c in list(pod.spec.initContainers) + list(pod.spec.containers)]
        if container not in names:
            raise HTTPError(400, f"container {container} is not valid for pod {pod_name}")
        rp = await self.kubelet.inspect(pod.metadata.uid)
        records = rp.all(container)
        index = 1 if previous else 0
        if len(records) <= index:
            if previous:
                raise HTTPError(400, f'previous terminated container "{container}" in pod '
                                     f'"{pod_name}" not found')
            raise HTTPError(400, f'container "{container}" in pod "{pod_name}" is waiting '
                                 "to start: ContainerCreating")
        return pod, records[index]

    async def container_logs(self, namespace: str, pod_name: str, container: str,
                             query: dict[str, list[str]], send: Send) -> None:
        opts = log_options(query, time.time_ns())
        previous = _flag(query, "previous")
        _, record = await self._container(namespace, pod_name, container, previous)
        path = Path(record.log_path)
        runtime = self.kubelet.runtime

        async def running() -> bool:
            status = await runtime.container_status(record.id)
            return status is not None and status.state == cri.CONTAINER_RUNNING

        if not opts.follow:
            body = await asyncio.to_thread(logslib.read_log, path, opts)
            await _respond(send, 200, body)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        stream: AsyncIterator[bytes] = logslib.stream_log(path, opts, running)
        try:
            async for chunk in stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def run_command(self, namespace: str, pod_name: str, container: str,
                          query: dict[str, list[str]], send: Send) -> None:
        cmd = query.get("cmd", [])
        if len(cmd) == 1:
            cmd = cmd[0].split()
        if not cmd:
            raise HTTPError(400, "cmd is required")
        _, record = await self._container(namespace, pod_name, container)
        resp = await self.kubelet.runtime.exec_sync(record.id, cmd, 60)
        await _respond(send, 200, resp.stdout + resp.stderr,
                       extra=[(b"x-exit-code", str(resp.exit_code).encode())])

    # -- stats --------------------------------------------------------------------------------

    async def _stats(self) -> tuple[list[cri.ContainerStats], list[cri.PodSandbox]]:
        resp = await self.kubelet.runtime.call("ListContainerStats",
                                               cri.ListContainerStatsRequest())
        sandboxes = await self.kubelet.runtime.pod_sandboxes()
        return list(resp.stats), sandboxes

    async def summary(self) -> dict[str, Any]:
        stats, _ = await self._stats()
        now = datetime.now().astimezone().isoformat()
        pods_out: list[dict[str, Any]] = []
        by_uid: dict[str, list[cri.ContainerStats]] = {}
        for s in stats:
            uid = s.attributes.labels.get("io.kubernetes.pod.uid", "")
            by_uid.setdefault(uid, []).append(s)
        node_cpu = 0
        node_mem = 0
        for pod in self.kubelet.running_pods():
            containers = []
            cpu_total = 0
            cpu_nano_total = 0
            mem_total = 0
            for s in by_uid.get(pod.metadata.uid, []):
                cpu = s.cpu.usage_nano_cores.value
                cpu_ns = s.cpu.usage_core_nano_seconds.value
                mem = s.memory.working_set_bytes.value
                cpu_total += cpu
                cpu_nano_total += cpu_ns
                mem_total += mem
                containers.append({
                    "name": s.attributes.metadata.name,
                    "startTime": now,
                    "cpu": {"time": now, "usageNanoCores": cpu, "usageCoreNanoSeconds": cpu_ns},
                    "memory": {"time": now, "workingSetBytes": mem,
                               "usageBytes": s.memory.usage_bytes.value or mem,
                               "rssBytes": s.memory.rss_bytes.value},
                })
            node_cpu += cpu_total
            node_mem += mem_total
            pods_out.append({
                "podRef": {"name": pod.metadata.name, "namespace": pod.metadata.namespace,
                           "uid": pod.metadata.uid},
                "startTime": now,
                "containers": containers,
                "cpu": {"time": now, "usageNanoCores": cpu_total,
                        "usageCoreNanoSeconds": cpu_nano_total},
                "memory": {"time": now, "workingSetBytes": mem_total, "usageBytes": mem_total},
            })
        node = _node_stats(now)
        node["nodeName"] = self.kubelet.node_name
        node["startTime"] = self.kubelet.boot_time().isoformat()
        return {"node": node, "pods": pods_out}

    async def resource_metrics(self) -> str:
        stats, _ = await self._stats()
        lines = [
            "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed "
            "by the container in core-seconds",
            "# TYPE container_cpu_usage_seconds_total counter",
        ]
        mem_lines = [
            "# HELP container_memory_working_set_bytes [STABLE] Current working set of the "
            "container in bytes",
            "# TYPE container_memory_working_set_bytes gauge",
        ]
        for s in stats:
            labels = s.attributes.labels
            tags = (f'container="{s.attributes.metadata.name}",'
                    f'namespace="{labels.get("io.kubernetes.pod.namespace", "")}",'
                    f'pod="{labels.get("io.kubernetes.pod.name", "")}"')
            lines.append(f"container_cpu_usage_seconds_total{{{tags}}} "
                         f"{s.cpu.usage_core_nano_seconds.value / 1e9}")
            mem_lines.append(f"container_memory_working_set_bytes{{{tags}}} "
                             f"{s.memory.working_set_bytes.value}")
        node = _node_stats(datetime.now().astimezone().isoformat())
        tail = [
            "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the "
            "node in core-seconds",
            "# TYPE node_cpu_usage_seconds_total counter",
            f"node_cpu_usage_seconds_total {node['cpu']['usageCoreNanoSeconds'] / 1e9}",
            "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in "
            "bytes",
            "# TYPE node_memory_working_set_bytes gauge",
            f"node_memory_working_set_bytes {node['memory']['workingSetBytes']}",
        ]
        return "\n".join(lines + mem_lines + tail) + "\n"


def _node_stats(now: str) -> dict[str, Any]:
    from pilothouse.services.kubelet.nodestatus import meminfo

    info = meminfo()
    total = info.get("MemTotal", 0)
    available = info.get("MemAvailable", 0)
    cpu_ns = 0
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = sum(int(x) for x in fields[:3]) + sum(int(x) for x in fields[5:8])
        cpu_ns = ticks * 10_000_000  # USER_HZ is 100 on Linux
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": {"time": now, "usageCoreNanoSeconds": cpu_ns},
            "memory": {"time": now, "availableBytes": available,
                       "workingSetBytes": max(total - available, 0),
                       "usageBytes": max(total - info.get("MemFree", 0), 0)}}


async def _respond(send: Send, status: int, body: bytes,
                   content_type: str = "text/plain; charset=utf-8",
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
