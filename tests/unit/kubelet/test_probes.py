"""Probe workers: thresholds, initial delay, startup gating, events — with a fake clock and a
scripted handler; and the real handlers against local servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pilothouse.api import intstr
from pilothouse.client.clock import AsyncFakeClock
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import probes
from pilothouse.services.kubelet.probes import LIVENESS, READINESS, STARTUP, ProbeManager


class Script:
    """Probe outcomes in order (the last repeats)."""

    def __init__(self, *outcomes: bool) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, handler: Any, target: Any, **kw: Any) -> tuple[bool, str]:
        self.calls += 1
        ok = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        return ok, "" if ok else "boom"


def container(**probes_: core_pb2.Probe) -> core_pb2.Container:
    c = core_pb2.Container(name="main")
    for field, probe in probes_.items():
        getattr(c, field).CopyFrom(probe)
    return c


def probe(period: int = 10, success: int = 1, failure: int = 3, delay: int = 0
          ) -> core_pb2.Probe:
    p = core_pb2.Probe(periodSeconds=period, successThreshold=success,
                       failureThreshold=failure, initialDelaySeconds=delay)
    p.handler.exec.command.append("true")
    return p


@pytest.fixture
async def manager() -> AsyncIterator[tuple[ProbeManager, AsyncFakeClock, list[str], list[Any]]]:
    clock = AsyncFakeClock()
    changes: list[str] = []
    events: list[Any] = []
    m = ProbeManager(runtime=None, clock=clock, on_change=changes.append,  # type: ignore[arg-type]
                     on_event=lambda *e: events.append(e))
    yield m, clock, changes, events
    await m.close()


async def tick(clock: AsyncFakeClock, seconds: float) -> None:
    await clock.wait_for_sleepers()
    clock.advance(seconds)
    for _ in range(20):
        await asyncio.sleep(0)


async def test_liveness_fails_only_after_failure_threshold(manager: Any) -> None:
    m, clock, changes, events = manager
    m.run = Script(False)
    m.ensure("uid", "pod", container(livenessProbe=probe(period=10, failure=3)), "c1",
             "10.0.0.2", 0)
    await tick(clock, 0)
    assert m.result("c1", LIVENESS) is True  # one failure: not yet
    await tick(clock, 10)
    assert m.result("c1", LIVENESS) is True
    await tick(clock, 10)
    assert m.result("c1", LIVENESS) is False
    assert changes == ["uid"]
    assert [e[2] for e in events] == ["Unhealthy"] * 3
    assert events[0][3] == "Liveness probe failed: boom"


async def test_readiness_starts_false_and_needs_success_threshold(manager: Any) -> None:
    m, clock, changes, _ = manager
    m.run = Script(True)
    m.ensure("uid", "pod", container(readinessProbe=probe(period=5, success=2)), "c1",
             "10.0.0.2", 0)
    assert m.result("c1", READINESS) is False
    await tick(clock, 0)
    assert m.result("c1", READINESS) is False
    await tick(clock, 5)
    assert m.result("c1", READINESS) is True
    assert changes == ["uid"]


async def test_initial_delay_is_waited(manager: Any) -> None:
    m, clock, _, _ = manager
    script = Script(True)
    m.run = script
    m.ensure("uid", "pod", container(readinessProbe=probe(delay=30)), "c1", "10.0.0.2", 0)
    await tick(clock, 29)
    assert script.calls == 0
    await tick(clock, 1)
    assert script.calls == 1


async def test_liveness_waits_for_the_startup_probe(manager: Any) -> None:
    m, clock, _, _ = manager
    calls: list[str] = []

    async def run(handler: Any, target: Any, **kw: Any) -> tuple[bool, str]:
        calls.append(handler.exec.command[0])
        return handler.exec.command[0] == "start", ""

    m.run = run
    start, live = probe(period=1), probe(period=1)
    start.handler.exec.command[0] = "start"
    live.handler.exec.command[0] = "live"
    m.ensure("uid", "pod", container(startupProbe=start, livenessProbe=live), "c1", "ip", 0)
    await tick(clock, 0)
    assert calls[:1] == ["start"] and "live" not in calls[:1]
    assert m.result("c1", STARTUP) is True
    for _ in range(3):
        await tick(clock, 1)
    assert "live" in calls
    assert calls.count("start") == 1  # a startup probe stops once it succeeded


async def test_stopping_a_container_stops_its_workers(manager: Any) -> None:
    m, _, _, _ = manager
    m.run = Script(True)
    m.ensure("uid", "pod", container(livenessProbe=probe()), "c1", "ip", 0)
    assert m.has("c1", LIVENESS)
    m.stop_container("c1")
    assert not m.has("c1", LIVENESS)


# -- the real handlers -------------------------------------------------------------------


def target(port: int, **ports: int) -> probes.Target:
    c = core_pb2.Container(name="main")
    for name, p in ports.items():
        c.ports.add(name=name, containerPort=p)
    del port
    return probes.Target("cid", "127.0.0.1", c)


async def serve(status: int) -> tuple[asyncio.AbstractServer, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                     .encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("status,ok", [(200, True), (302, True), (404, False), (500, False)])
async def test_http_get_success_is_200_to_399(status: int, ok: bool) -> None:
    server, port = await serve(status)
    try:
        handler = core_pb2.ProbeHandler()
        handler.httpGet.path = "/healthz"
        handler.httpGet.port.CopyFrom(intstr.parse("http"))
        result, message = await probes.run_handler(handler, target(port, http=port),
                                                   runtime=None, limit=2)  # type: ignore[arg-type]
    finally:
        server.close()
        await server.wait_closed()
    assert result is ok
    if not ok:
        assert str(status) in message


async def test_tcp_socket_probe() -> None:
    server, port = await serve(200)
    handler = core_pb2.ProbeHandler()
    handler.tcpSocket.port.CopyFrom(intstr.parse(str(port)))
    ok, _ = await probes.run_handler(handler, target(port), runtime=None,  # type: ignore[arg-type]
                                     limit=2)
    server.close()
    await server.wait_closed()
    assert ok
    ok, message = await probes.run_handler(handler, target(port), runtime=None,  # type: ignore[arg-type]
                                           limit=2)
    assert not ok and "dial tcp" in message


async def test_unknown_named_port_is_a_failure_not_a_crash() -> None:
    handler = core_pb2.ProbeHandler()
    handler.tcpSocket.port.CopyFrom(intstr.parse("nosuch"))
    ok, message = await probes.run_handler(handler, target(0), runtime=None,  # type: ignore[arg-type]
                                           limit=1)
    assert not ok and "nosuch" in message


async def test_grpc_health_probe() -> None:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        handler = core_pb2.ProbeHandler()
        handler.grpc.port = port
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert (await probes.run_handler(handler, target(port), runtime=None,  # type: ignore[arg-type]
                                         limit=2))[0]
        await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        ok, message = await probes.run_handler(handler, target(port), runtime=None,  # type: ignore[arg-type]
                                               limit=2)
        assert not ok and "NOT_SERVING" in message
    finally:
        await server.stop(None)


async def test_exec_probe_through_the_runtime(harness: Any) -> None:
    from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri

    from .conftest import make_pod

    state = await harness.add(make_pod())
    await harness.syncer.sync(state)
    cid = harness.running("main").id
    harness.backend.exec_results[("check",)] = cri.ExecSyncResponse(exit_code=1,
                                                                    stdout=b"unhealthy")
    handler = core_pb2.ProbeHandler()
    handler.exec.command.append("check")
    ok, message = await probes.run_handler(handler, probes.Target(cid, "", core_pb2.Container()),
                                           runtime=harness.runtime, limit=1)
    assert (ok, message) == (False, "unhealthy")
    handler.exec.command[0] = "fine"
    assert (await probes.run_handler(handler, probes.Target(cid, "", core_pb2.Container()),
                                     runtime=harness.runtime, limit=1))[0]
