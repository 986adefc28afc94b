"""controller-manager: --controllers selection, flags, health endpoints, running controllers."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from pilothouse import cli
from pilothouse.client import Client, LeaderElector
from pilothouse.client.clock import AsyncFakeClock
from pilothouse.client.fake import FakeTransport
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.base import ControllerContext, ControllerDescriptor
from pilothouse.services.controllers.manager import (
    ControllerManager,
    HealthServer,
    _parse_settings,
    add_arguments,
    select_controllers,
)
from pilothouse.services.controllers.registry import CONTROLLERS


async def _noop(ctx: ControllerContext) -> None:
    return None


KNOWN = [ControllerDescriptor("deployment", _noop), ControllerDescriptor("job", _noop),
         ControllerDescriptor("replicaset", _noop),
         ControllerDescriptor("bootstrapsigner", _noop, enabled_by_default=False)]


@pytest.mark.parametrize(("spec", "want"), [
    ("*", ["deployment", "job", "replicaset"]),
    ("*,-job", ["deployment", "replicaset"]),
    ("-job,*", ["deployment", "replicaset"]),
    ("job", ["job"]),
    ("*,bootstrapsigner", ["deployment", "job", "replicaset", "bootstrapsigner"]),
    ("job,-job", []),
    (" deployment , replicaset ", ["deployment", "replicaset"]),
], ids=["star", "star-minus", "order-free", "one", "opt-in", "disable-wins", "spaces"])
def test_select_controllers(spec: str, want: list[str]) -> None:
    assert [d.name for d in select_controllers(spec, KNOWN)] == want


@pytest.mark.parametrize(("spec", "message"), [
    ("*,-jobs", "unknown controller 'jobs'"),
    ("", "--controllers is empty"),
    ("nope", "known controllers: bootstrapsigner, deployment, job, replicaset"),
], ids=["typo", "empty", "lists-known"])
def test_select_controllers_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        select_controllers(spec, KNOWN)


def test_registry_names_are_unique_and_include_the_core_controllers() -> None:
    names = [d.name for d in CONTROLLERS]
    assert len(names) == len(set(names))
    assert {"replicaset", "deployment", "garbagecollector", "namespace",
            "serviceaccount"} <= set(names)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_settings_from_flags() -> None:
    args = _args("--concurrent", "replicaset=9", "--setting", "node-monitor-grace-period=40",
                 "--setting", "ratio=0.5", "--setting", "mode=fast")
    got = _parse_settings(args, CONTROLLERS)
    assert got == {"concurrent-replicaset-syncs": 9, "node-monitor-grace-period": 40,
                   "ratio": 0.5, "mode": "fast"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--concurrent", "replicaset"], "expected NAME=N"),
    (["--concurrent", "replicaset=0"], "expected NAME=N"),
    (["--concurrent", "nosuch=2"], "unknown controller"),
    (["--setting", "novalue"], "expected KEY=VALUE"),
], ids=["no-value", "zero", "unknown", "setting"])
def test_settings_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _parse_settings(_args(*argv), CONTROLLERS)


@pytest.mark.parametrize(("argv", "message"), [
    (["--controllers", "*,-nosuch"], "unknown controller 'nosuch'"),
    (["--apiserver", "ftp://x"], "expected grpc://host:port"),
    (["--port", "70000"], "must be 0..65535"),
    (["--workers", "0"], "at least 1"),
    (["--leader-elect-renew-deadline", "20"], "lease-duration > renew-deadline"),
], ids=["controllers", "apiserver", "port", "workers", "lease-timing"])
def test_cli_bad_input_is_a_clear_error(argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["controller-manager", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


async def _get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_health_server_endpoints() -> None:
    manager = ControllerManager(Client(FakeTransport()), [])
    server = HealthServer(manager, port=0)
    await server.start()
    try:
        assert await _get(server.port, "/healthz") == (200, b"ok")
        assert (await _get(server.port, "/readyz"))[0] == 503
        manager.synced = True
        assert await _get(server.port, "/readyz") == (200, b"ok")
        code, body = await _get(server.port, "/metrics")
        assert code == 200 and b"leader_election_master_status" in body
        assert (await _get(server.port, "/nope"))[0] == 404
        assert (await _get(server.port, "/healthz", "POST"))[0] == 405
    finally:
        await server.stop()


async def test_manager_runs_controllers_after_winning_the_lease() -> None:
    fake = FakeTransport()
    client = Client(fake)
    clock = AsyncFakeClock()
    ns = core_pb2.Namespace()
    ns.metadata.name = "kube-system"
    await client.create(ns)
    started = asyncio.Event()
    seen: list[ControllerContext] = []

    async def start(ctx: ControllerContext) -> None:
        seen.append(ctx)
        ctx.informers.informer_for(core_pb2.Namespace)
        ctx.informers.start()
        started.set()
        await asyncio.Event().wait()

    elector = LeaderElector(client, "kube-system", "kube-controller-manager", "me",
                            clock=clock)
    manager = ControllerManager(client, [ControllerDescriptor("probe", start)],
                                elector=elector, clock=clock, settings={"x": 1})
    task = asyncio.create_task(manager.run())
    await asyncio.wait_for(started.wait(), 10)
    for _ in range(1000):
        if manager.synced:
            break
        await asyncio.sleep(0)
    assert manager.leading and manager.synced and manager.ready
    assert seen[0].settings == {"x": 1}
    lease = await client.get(coordination_pb2.Lease, "kube-controller-manager",
                             namespace="kube-system")
    assert lease.spec.holderIdentity == "me"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not manager.leading
    lease = await client.get(coordination_pb2.Lease, "kube-controller-manager",
                             namespace="kube-system")
    assert lease.spec.holderIdentity == ""  # released on the way out


async def test_a_failing_controller_stops_the_manager() -> None:
    async def broken(ctx: ControllerContext) -> None:
        raise RuntimeError("controller bug")

    manager = ControllerManager(Client(FakeTransport()),
                                [ControllerDescriptor("broken", broken)])
    with pytest.raises(ExceptionGroup) as info:
        await asyncio.wait_for(manager.run(), 10)
    assert "controller bug" in str(info.value.exceptions[0])
