"""Two schedulers, one Lease (kube-system/kube-scheduler): only the leader schedules.

In-process: two ``Scheduler`` objects with leader election on (short leases) share a
real apiserver; the one holding the Lease binds, the other keeps its caches warm and
schedules nothing; stopping the leader releases the Lease and the other takes it and
schedules new pods.

As processes: two ``pilothouse scheduler`` commands; the leader is killed with
SIGKILL (no release: the Lease has to expire) and the other takes over.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pilothouse.client import Client, ClientError, is_not_found
from pilothouse.client.rest import RestTransport
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from pilothouse.services.apiserver.server import APIServer
from pilothouse.services.scheduler.config import default_config
from pilothouse.services.scheduler.scheduler import Scheduler
from pilothouse.services.scheduler.testing import make_node, make_pod
from tests.integration.scheduler.conftest import wait_bound
from tests.support import wait_for

LEASE_NS, LEASE_NAME = "kube-system", "kube-scheduler"


async def lease_holder(client: Client) -> str:
    try:
        lease = await client.get(coordination_pb2.Lease, LEASE_NAME, namespace=LEASE_NS)
    except ClientError as exc:
        if is_not_found(exc):
            return ""  # not created yet
        raise
    return str(lease.spec.holderIdentity)


def _attempts(sched: Scheduler) -> float:
    total = 0.0
    for metric in sched.metrics.registry.collect():
        if metric.name == "scheduler_schedule_attempts":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


class Candidate:
    def __init__(self, client: Client, identity: str) -> None:
        config = default_config()
        le = config.leader_election
        le.leader_elect = True
        le.lease_duration, le.renew_deadline, le.retry_period = 3.0, 2.0, 0.2
        self.client = client
        self.scheduler = Scheduler(client, config=config, identity=identity,
                                   record_events=False)
        self.task: asyncio.Task[None] = asyncio.create_task(self.scheduler.run())

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def candidates(apiserver: APIServer) -> AsyncIterator[list[Candidate]]:
    clients = [Client(RestTransport(apiserver.url, timeout=10)) for _ in range(2)]
    out = [Candidate(c, f"sched-{i}") for i, c in enumerate(clients)]
    try:
        yield out
    finally:
        for cand in out:
            await cand.stop()
        for c in clients:
            await c.close()


async def test_only_the_leader_schedules_and_the_other_takes_over(
        apiserver: APIServer, client: Client, candidates: list[Candidate]) -> None:
    await client.create(make_node("n1", cpu="4"))
    await wait_for(lambda: sum(c.scheduler.leading for c in candidates) == 1, 20,
                   "one scheduler leading")
    leader, follower = sorted(candidates, key=lambda c: not c.scheduler.leading)
    assert await lease_holder(client) == leader.scheduler.identity
    await wait_for(lambda: all(c.scheduler.cache.node_count == 1 for c in candidates),
                   what="both caches have the node")

    for i in range(3):
        await client.create(make_pod(f"a{i}", cpu="100m"))
    assert set((await wait_bound(client, "a0", "a1", "a2")).values()) == {"n1"}
    assert leader.scheduler.scheduled == 3
    # The follower saw the pods (its informers run) but never attempted one.
    await wait_for(lambda: follower.scheduler.cache.pod_count == 3, what="follower cache")
    assert follower.scheduler.scheduled == 0 and _attempts(follower.scheduler) == 0
    assert not follower.scheduler.leading

    await leader.stop()  # releases the Lease (client-go's ReleaseOnCancel)
    await wait_for(lambda: follower.scheduler.leading, 20, "the follower leading")
    assert await lease_holder(client) == follower.scheduler.identity
    await client.create(make_pod("b0", cpu="100m"))
    assert await wait_bound(client, "b0") == {"b0": "n1"}
    assert follower.scheduler.scheduled == 1
    assert leader.scheduler.scheduled == 3


# -- two `pilothouse scheduler` processes ---------------------------------------------------


class SchedulerProcess:
    def __init__(self, master: str, config: Path, log: Path) -> None:
        self.log_path = log
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pilothouse.cli", "scheduler", "--master", master,
             "--config", str(config), "--port", "0", "--log-format", "json"],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.url = ""

    def serving_url(self) -> str:
        """The metrics URL once the process logged it ("" before)."""
        if self.proc.poll() is not None:
            raise AssertionError(f"scheduler exited with {self.proc.returncode}:\n"
                                 + self.log_path.read_text())
        for line in self.log_path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("msg", rec.get("message")) == "scheduler serving" and rec.get("url"):
                self.url = str(rec["url"])
        return self.url

    async def metrics(self) -> str:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.get(f"{self.url}/metrics")).text

    async def leading(self) -> bool:
        text = await self.metrics()
        return f'leader_election_master_status{{name="{LEASE_NAME}"}} 1.0' in text

    async def scheduled(self) -> float:
        for line in (await self.metrics()).splitlines():
            if line.startswith("scheduler_schedule_attempts_total{") and \
                    'result="scheduled"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.mark.slow
async def test_killing_the_leader_process_hands_the_lease_to_the_other(
        apiserver: APIServer, client: Client, tmp_path: Path) -> None:
    config = tmp_path / "sched.yaml"
    config.write_text("apiVersion: kubescheduler.config.k8s.io/v1\n"
                      "kind: KubeSchedulerConfiguration\n"
                      "leaderElection:\n  leaderElect: true\n  leaseDuration: 3s\n"
                      "  renewDeadline: 2s\n  retryPeriod: 200ms\n")
    await client.create(make_node("n1", cpu="4"))
    procs = [SchedulerProcess(apiserver.url, config, tmp_path / f"sched-{i}.log")
             for i in range(2)]
    try:
        await wait_for(lambda: all(p.serving_url() for p in procs), 30, "schedulers serving")

        async def leaders() -> list[SchedulerProcess]:
            return [p for p in procs if await p.leading()]

        async def one_leader() -> bool:
            return len(await leaders()) == 1

        await wait_for(one_leader, 30, "one scheduler process leading")
        (leader,) = await leaders()
        (follower,) = [p for p in procs if p is not leader]
        holder = await lease_holder(client)
        assert holder

        await client.create(make_pod("a0", cpu="100m"))
        assert await wait_bound(client, "a0") == {"a0": "n1"}
        assert await leader.scheduled() == 1
        assert await follower.scheduled() == 0

        leader.proc.send_signal(signal.SIGKILL)  # no release: the Lease must expire
        leader.proc.wait(10)

        async def follower_took_over() -> bool:
            return await follower.leading() and await lease_holder(client) not in ("", holder)

        await wait_for(follower_took_over, 30, "the follower holding the Lease")
        await client.create(make_pod("b0", cpu="100m"))
        assert await wait_bound(client, "b0") == {"b0": "n1"}
        assert await follower.scheduled() == 1
    finally:
        for p in procs:
            p.stop()
