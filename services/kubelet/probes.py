"""Probes (liveness, readiness, startup) and lifecycle hooks.

``run_handler`` performs one exec / httpGet / tcpSocket / grpc / sleep action
against a container and says whether it succeeded, as Kubernetes' prober
does: exec succeeds on exit code 0; httpGet on a status 200-399 (redirects
are not followed); tcpSocket when a connection opens; grpc when the
standard health service answers SERVING.

``ProbeManager`` keeps one ``ProbeWorker`` per running container and probe
kind. A worker waits ``initialDelaySeconds`` after the container started,
then probes every ``periodSeconds`` (each try bounded by
``timeoutSeconds``); the result flips only after ``successThreshold``
successes or ``failureThreshold`` failures in a row. Liveness and readiness
are not probed until the startup probe (if any) has succeeded. A result
change calls ``on_change(pod_uid)`` so the pod worker re-syncs; every
failed try records an ``Unhealthy`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pilothouse.api import intstr
from pilothouse.client.clock import AsyncClock
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet.runtime import RuntimeClient, RuntimeError_

log = logging.getLogger("pilothouse.kubelet.probes")

LIVENESS, READINESS, STARTUP = "Liveness", "Readiness", "Startup"
MAX_PROBE_OUTPUT = 10 * 1024


@dataclass
class Target:
    """Where a handler runs: the container and its pod's address."""

    container_id: str
    pod_ip: str
    container: core_pb2.Container
    pod_name: str = ""


def _port(port: Any, container: core_pb2.Container) -> int:
    value = intstr.to_json(port)
    if isinstance(value, int):
        return value
    for p in container.ports:
        if p.name == value:
            return int(p.containerPort)
    if value.isdigit():
        return int(value)
    raise ValueError(f"port {value!r} is not a number and no container port has that name")


async def run_handler(handler: Any, target: Target, *, runtime: RuntimeClient,
                      limit: float, clock: AsyncClock | None = None) -> tuple[bool, str]:
    """``limit``: seconds a try may take (exec timeout, HTTP/TCP/gRPC timeout)."""
    timeout = limit
    """Run a ProbeHandler or LifecycleHandler; (succeeded, message)."""
    try:
        if handler.HasField("exec"):
            cmd = list(handler.exec.command)
            if not cmd:
                return False, "exec has no command"
            resp = await runtime.exec_sync(target.container_id, cmd, max(int(timeout), 1))
            out = (resp.stdout + resp.stderr)[:MAX_PROBE_OUTPUT].decode(errors="replace")
            if resp.exit_code != 0:
                return False, out.strip() or f"command {cmd!r} exited with {resp.exit_code}"
            return True, out
        if handler.HasField("httpGet"):
            return await _http_get(handler.httpGet, target, timeout)
        if handler.HasField("tcpSocket"):
            host = handler.tcpSocket.host or target.pod_ip
            port = _port(handler.tcpSocket.port, target.container)
            try:
                async with asyncio.timeout(timeout):
                    _, writer = await asyncio.open_connection(host, port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            except (OSError, TimeoutError) as e:
                return False, f"dial tcp {host}:{port}: {e or 'timeout'}"
            return True, ""
        if handler.DESCRIPTOR.fields_by_name.get("grpc") and handler.HasField("grpc"):
            return await _grpc(handler.grpc, target, timeout)
        if handler.DESCRIPTOR.fields_by_name.get("sleep") and handler.HasField("sleep"):
            if clock is not None:
                await clock.sleep(handler.sleep.seconds)
            else:
                await asyncio.sleep(handler.sleep.seconds)
            return True, ""
    except RuntimeError_ as e:
        return False, e.message or str(e)
    except ValueError as e:
        return False, str(e)
    return False, "the handler has no action"


async def _http_get(action: core_pb2.HTTPGetAction, target: Target,
                    seconds: float) -> tuple[bool, str]:
    timeout = seconds
    host = action.host or target.pod_ip
    port = _port(action.port, target.container)
    scheme = (action.scheme or "HTTP").lower()
    path = action.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{host}:{port}{path}"
    headers = {"User-Agent": "kube-probe/1.32", "Accept": "*/*"}
    for h in action.httpHeaders:
        headers[h.name] = h.value
    try:
        async with httpx.AsyncClient(verify=False, timeout=timeout,
                                     follow_redirects=False) as http:
            resp = await http.get(url, headers=headers)
    except httpx.HTTPError as e:
        return False, f'Get "{url}": {e or type(e).__name__}'
    if 200 <= resp.status_code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {resp.status_code}"


async def _grpc(action: Any, target: Target, seconds: float) -> tuple[bool, str]:
    timeout = seconds
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    addr = f"{target.pod_ip}:{action.port}"
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=action.service),
                                    timeout=timeout)
        except grpc.aio.AioRpcError as e:
            return False, f"failed to connect service {addr!r}: {e.details() or e.code().name}"
    if resp.status != health_pb2.HealthCheckResponse.SERVING:
        return False, f"service unhealthy (responded with {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)})"  # noqa: E501
    return True, ""


# -- probe workers --------------------------------------------------------------------------


@dataclass
class ProbeState:
    kind: str
    result: bool  # the current verdict
    successes: int = 0
    failures: int = 0
    on_hold: bool = False  # a liveness/startup failure waits for the container to be replaced


@dataclass
class _Worker:
    pod_uid: str
    container_id: str
    state: ProbeState
    task: asyncio.Task[None] | None = None


EventSink = Callable[[str, str, str, str], None]  # pod uid, type, reason, message


@dataclass
class ProbeManager:
    runtime: RuntimeClient
    clock: AsyncClock
    on_change: Callable[[str], None]
    on_event: EventSink = field(default=lambda uid, t, r, m: None)
    run: Callable[..., Awaitable[tuple[bool, str]]] = run_handler
    _workers: dict[tuple[str, str], _Worker] = field(default_factory=dict)  # (cid, kind)

    def result(self, container_id: str, kind: str) -> bool | None:
        w = self._workers.get((container_id, kind))
        return w.state.result if w is not None else None

    def ensure(self, pod_uid: str, pod_name: str, container: core_pb2.Container,
               container_id: str, pod_ip: str, started_at_ns: int,
               started_before: bool = False) -> None:
        """Start the workers this running container needs (idempotent)."""
        present = [(STARTUP, container.HasField("startupProbe"), container.startupProbe),
                   (LIVENESS, container.HasField("livenessProbe"), container.livenessProbe),
                   (READINESS, container.HasField("readinessProbe"), container.readinessProbe)]
        for kind, has, probe in present:
            if not has or (container_id, kind) in self._workers:
                continue
            initial = {READINESS: False, LIVENESS: True, STARTUP: started_before}[kind]
            w = _Worker(pod_uid, container_id, ProbeState(kind, initial))
            self._workers[(container_id, kind)] = w
            target = Target(container_id, pod_ip, container, pod_name)
            w.task = asyncio.create_task(self._loop(w, probe, target, started_at_ns),
                                         name=f"probe:{kind}:{container.name}")

    def has(self, container_id: str, kind: str) -> bool:
        return (container_id, kind) in self._workers

    def stop_container(self, container_id: str) -> None:
        for key in [k for k in self._workers if k[0] == container_id]:
            w = self._workers.pop(key)
            if w.task is not None:
                w.task.cancel()

    def stop_pod(self, pod_uid: str, keep: set[str] | None = None) -> None:
        """Stop the pod's workers (except those of container ids in ``keep``)."""
        for key, w in list(self._workers.items()):
            if w.pod_uid == pod_uid and (keep is None or key[0] not in keep):
                self._workers.pop(key)
                if w.task is not None:
                    w.task.cancel()

    async def close(self) -> None:
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        self._workers.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self, w: _Worker, probe: core_pb2.Probe, target: Target,
                    started_at_ns: int) -> None:
        period = probe.periodSeconds or 10
        timeout = probe.timeoutSeconds or 1
        success_threshold = probe.successThreshold or 1
        failure_threshold = probe.failureThreshold or 3
        # initialDelaySeconds counts from the container's start; time since then comes
        # off the wait (a restarted kubelet does not wait again).
        elapsed = max(self.clock.now().timestamp() - started_at_ns / 1e9, 0.0) \
            if started_at_ns else 0.0
        await self.clock.sleep(max(probe.initialDelaySeconds - elapsed, 0.0))
        while True:
            if w.state.kind != STARTUP and not self._started(w.container_id):
                await self.clock.sleep(period)
                continue
            if w.state.kind == STARTUP and w.state.result:
                return  # a startup probe stops once it has succeeded
            if not w.state.on_hold:
                ok, message = await self.run(probe.handler, target, runtime=self.runtime,
                                             limit=float(timeout), clock=self.clock)
                self._record(w, ok, message, success_threshold, failure_threshold)
            await self.clock.sleep(period)

    def _started(self, container_id: str) -> bool:
        w = self._workers.get((container_id, STARTUP))
        return w is None or w.state.result

    def _record(self, w: _Worker, ok: bool, message: str, success_threshold: int,
                failure_threshold: int) -> None:
        st = w.state
        if ok:
            st.successes += 1
            st.failures = 0
        else:
            st.failures += 1
            st.successes = 0
            self.on_event(w.pod_uid, "Warning", "Unhealthy",
                          f"{st.kind} probe failed: {message}".strip())
        new = st.result
        if ok and st.successes >= success_threshold:
            new = True
        elif not ok and st.failures >= failure_threshold:
            new = False
        if new != st.result:
            st.result = new
            if not new and st.kind in (LIVENESS, STARTUP):
                st.on_hold = True
            self.on_change(w.pod_uid)
