"""Endpoints/EndpointSlice, node lifecycle, Job and CronJob controllers against a real
apiserver (SQLite in tmp_path, gRPC client), run by the controller-manager.

Simulated nodes (``services/scheduler/fakenodes.py``) play the kubelets: they
keep Leases fresh and make pods bound to them Running and Ready with an IP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from pilothouse.client import APIError, Client, connect
from pilothouse.client.clock import AsyncClock, AsyncFakeClock
from pilothouse.gen.k8s.batch.v1 import batch_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.discovery.v1 import discovery_pb2
from pilothouse.gen.k8s.intstr.intstr_pb2 import IntOrString
from pilothouse.services.apiserver.server import APIServer
from pilothouse.services.controllers.manager import ControllerManager, select_controllers
from pilothouse.services.controllers.registry import CONTROLLERS
from pilothouse.services.scheduler.fakenodes import FakeNodes
from tests.support import wait_for


@pytest.fixture
async def client(apiserver: APIServer) -> AsyncIterator[Client]:
    async with connect(f"grpc://{apiserver.grpc_address}", timeout=10) as c:
        yield c


@asynccontextmanager
async def running(*work: Awaitable[None]) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run coroutines as tasks for the block; a task that failed fails the test."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException) and \
                    not isinstance(result, asyncio.CancelledError):
                raise result


def manager(client: Client, controllers: str, *, clock: AsyncClock | None = None,
            settings: dict[str, object] | None = None) -> ControllerManager:
    return ControllerManager(client, select_controllers(controllers, CONTROLLERS), workers=2,
                             settings=settings, clock=clock)



def make_pod(name: str, node: str, *, labels: dict[str, str] | None = None,
             tolerations: list[core_pb2.Toleration] | None = None) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = "default"
    pod.metadata.labels.update(labels or {})
    pod.spec.nodeName = node
    c = pod.spec.containers.add(name="c", image="nginx")
    c.ports.add(name="http", containerPort=8080)
    pod.spec.tolerations.extend(tolerations or [])
    return pod


def ready(pod: core_pb2.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


async def events(client: Client, reason: str) -> list[core_pb2.Event]:
    return [e for e in (await client.list(core_pb2.Event, namespace="default")).items
            if e.reason == reason]


# -- Endpoints and EndpointSlices ------------------------------------------------------------


async def test_service_gets_endpoint_slices_of_ready_pods(client: Client) -> None:
    nodes = FakeNodes(client, 2, lease_renew_interval=0)
    async with running(nodes.run(), manager(client, "endpoints,endpointslice").run()):
        await nodes.registered.wait()
        for i in range(3):
            await client.create(make_pod(f"web-{i}", f"fake-node-{i % 2}",
                                         labels={"app": "web"}))
        svc = core_pb2.Service()
        svc.metadata.name, svc.metadata.namespace = "web", "default"
        svc.spec.selector["app"] = "web"
        svc.spec.ports.add(name="http", port=80, targetPort=IntOrString(type=1, strVal="http"))
        svc = await client.create(svc)
        bare = core_pb2.Service()
        bare.metadata.name, bare.metadata.namespace = "external", "default"
        bare.spec.ports.add(name="http", port=80)
        await client.create(bare)

        async def slices(service: str) -> list[discovery_pb2.EndpointSlice]:
            return list((await client.list(
                discovery_pb2.EndpointSlice, namespace="default",
                label_selector=f"kubernetes.io/service-name={service}")).items)

        async def all_ready(count: int) -> bool:
            endpoints = [e for s in await slices("web") for e in s.endpoints]
            return len(endpoints) == count and all(e.conditions.ready for e in endpoints)

        await wait_for(lambda: all_ready(3), what="3 ready endpoints")
        [web] = await slices("web")
        assert web.metadata.name.startswith("web-")
        assert web.addressType == "IPv4"
        assert web.metadata.labels["endpointslice.kubernetes.io/managed-by"] == \
            "endpointslice-controller.k8s.io"
        assert web.metadata.ownerReferences[0].uid == svc.metadata.uid
        assert [(p.name, p.port, p.protocol) for p in web.ports] == [("http", 8080, "TCP")]
        pods = {p.metadata.name: p for p in
                (await client.list(core_pb2.Pod, namespace="default")).items}
        assert sorted(e.addresses[0] for e in web.endpoints) == \
            sorted(p.status.podIP for p in pods.values())
        assert {e.targetRef.name: e.nodeName for e in web.endpoints} == \
            {name: p.spec.nodeName for name, p in pods.items()}
        assert all(e.zone for e in web.endpoints)

        async def endpoints_count(n: int) -> bool:
            try:
                ep = await client.get(core_pb2.Endpoints, "web", namespace="default")
            except APIError as exc:
                if exc.is_not_found():
                    return False
                raise
            return sum(len(s.addresses) for s in ep.subsets) == n

        await wait_for(lambda: endpoints_count(3), what="Endpoints with 3 addresses")
        assert await slices("external") == []
        # A pod goes (the simulated kubelet finishes its deletion): so does its endpoint.
        await client.delete(core_pb2.Pod, "web-0", namespace="default")
        await wait_for(lambda: all_ready(2), what="2 endpoints after a delete")
        await wait_for(lambda: endpoints_count(2), what="Endpoints with 2 addresses")


# -- node lifecycle -------------------------------------------------------------------------


def tolerate_unreachable(seconds: int | None) -> list[core_pb2.Toleration]:
    t = core_pb2.Toleration(key="node.kubernetes.io/unreachable", operator="Exists",
                            effect="NoExecute")
    if seconds is not None:
        t.tolerationSeconds = seconds
    return [t]


async def test_node_whose_lease_stops_goes_unknown_tainted_and_pods_evicted(
        client: Client) -> None:
    healthy = FakeNodes(client, 1, prefix="alive-", lease_renew_interval=0.2)
    doomed = FakeNodes(client, 1, prefix="doomed-", lease_renew_interval=0.2)
    cm = manager(client, "nodelifecycle", settings={"node-monitor-grace-period": 4})
    async with running(healthy.run(), cm.run()):
        async with running(doomed.run()):
            await healthy.registered.wait()
            await doomed.registered.wait()
            await client.create(make_pod("quick", "doomed-0",
                                         tolerations=tolerate_unreachable(0)))
            await client.create(make_pod("patient", "doomed-0",
                                         tolerations=tolerate_unreachable(3600)))
            await client.create(make_pod("safe", "alive-0"))

            async def all_ready() -> bool:
                pods = (await client.list(core_pb2.Pod, namespace="default")).items
                return len(pods) == 3 and all(ready(p) for p in pods)

            await wait_for(all_ready, what="pods running")
        # The doomed node's kubelet is gone: no more lease renewals.

        async def node_unknown() -> bool:
            node = await client.get(core_pb2.Node, "doomed-0")
            conds = {c.type: c for c in node.status.conditions}
            keys = {(t.key, t.effect) for t in node.spec.taints}
            return conds["Ready"].status == "Unknown" and \
                ("node.kubernetes.io/unreachable", "NoExecute") in keys

        await wait_for(node_unknown, what="doomed node Unknown and tainted")
        node = await client.get(core_pb2.Node, "doomed-0")
        cond = next(c for c in node.status.conditions if c.type == "Ready")
        assert cond.reason == "NodeStatusUnknown"
        assert ("node.kubernetes.io/unreachable", "NoSchedule") in \
            {(t.key, t.effect) for t in node.spec.taints}

        async def evicted() -> bool:
            quick = await client.get(core_pb2.Pod, "quick", namespace="default")
            patient = await client.get(core_pb2.Pod, "patient", namespace="default")
            return quick.metadata.HasField("deletionTimestamp") and not ready(patient)

        await wait_for(evicted, what="quick pod evicted, patient pod not ready")
        patient = await client.get(core_pb2.Pod, "patient", namespace="default")
        assert not patient.metadata.HasField("deletionTimestamp")
        await wait_for(lambda: _has_events(client, "TaintManagerEviction"),
                       what="TaintManagerEviction event")
        # The healthy node and its pod are untouched.
        alive = await client.get(core_pb2.Node, "alive-0")
        assert not alive.spec.taints
        assert next(c for c in alive.status.conditions if c.type == "Ready").status == "True"
        safe = await client.get(core_pb2.Pod, "safe", namespace="default")
        assert ready(safe) and not safe.metadata.HasField("deletionTimestamp")


async def _has_events(client: Client, reason: str) -> bool:
    return bool(await events(client, reason))


# -- Job --------------------------------------------------------------------------------------


def make_job(name: str, completions: int, parallelism: int, backoff: int = 6) -> batch_pb2.Job:
    job = batch_pb2.Job()
    job.metadata.name = name
    job.metadata.namespace = "default"
    job.spec.completions = completions
    job.spec.parallelism = parallelism
    job.spec.backoffLimit = backoff
    job.spec.template.spec.restartPolicy = "Never"
    job.spec.template.spec.containers.add(name="work", image="busybox")
    return job


async def finish_pods(client: Client, job: str, phase: str) -> int:
    """Play the kubelet: every unfinished pod of ``job`` ends in ``phase``."""
    pods = (await client.list(core_pb2.Pod, namespace="default",
                              label_selector=f"batch.kubernetes.io/job-name={job}")).items
    done = 0
    for pod in pods:
        if pod.status.phase in ("Succeeded", "Failed"):
            continue
        await client.patch(core_pb2.Pod, pod.metadata.name, {"status": {"phase": phase}},
                           namespace="default", subresource="status")
        done += 1
    return done


async def job_condition(client: Client, name: str, type_: str) -> batch_pb2.JobCondition | None:
    job = await client.get(batch_pb2.Job, name, namespace="default")
    return next((c for c in job.status.conditions if c.type == type_ and c.status == "True"),
                None)


async def test_job_completes_and_fails(client: Client) -> None:
    async with running(manager(client, "job").run()):
        await client.create(make_job("pi", completions=3, parallelism=2))
        await client.create(make_job("doomed", completions=1, parallelism=1, backoff=0))
        finished = 0

        async def complete() -> bool:
            nonlocal finished
            finished += await finish_pods(client, "pi", "Succeeded")
            return await job_condition(client, "pi", "Complete") is not None

        await wait_for(complete, what="Job pi Complete")
        job = await client.get(batch_pb2.Job, "pi", namespace="default")
        assert job.status.succeeded == 3 and finished == 3
        assert job.status.HasField("completionTime")
        pods = (await client.list(core_pb2.Pod, namespace="default",
                                  label_selector="batch.kubernetes.io/job-name=pi")).items
        assert len(pods) == 3
        assert all("batch.kubernetes.io/job-tracking" not in p.metadata.finalizers
                   for p in pods)

        async def failed() -> bool:
            await finish_pods(client, "doomed", "Failed")
            return await job_condition(client, "doomed", "Failed") is not None

        await wait_for(failed, what="Job doomed Failed")
        cond = await job_condition(client, "doomed", "Failed")
        assert cond is not None and cond.reason == "BackoffLimitExceeded"
        await wait_for(lambda: _has_events(client, "Completed"), what="Completed event")


# -- CronJob on a fake clock ---------------------------------------------------------------------


async def test_cronjob_with_fake_clock_creates_jobs(client: Client) -> None:
    clock = AsyncFakeClock(datetime.now(UTC))
    cm = manager(client, "cronjob", clock=clock)
    async with running(cm.run()):
        cj = batch_pb2.CronJob()
        cj.metadata.name, cj.metadata.namespace = "tick", "default"
        cj.spec.schedule = "* * * * *"
        cj.spec.concurrencyPolicy = "Allow"
        cj.spec.jobTemplate.spec.template.spec.restartPolicy = "OnFailure"
        cj.spec.jobTemplate.spec.template.spec.containers.add(name="tick", image="busybox")
        await client.create(cj)

        async def jobs() -> list[batch_pb2.Job]:
            return list((await client.list(batch_pb2.Job, namespace="default")).items)

        async def job_count(n: int) -> bool:
            return len(await jobs()) == n

        # The controller has seen the CronJob and sleeps (on our clock) until the next minute.
        await clock.wait_for_sleepers(1, within=30)
        assert await jobs() == []
        clock.advance(120)  # two scheduled times passed: only the latest runs
        await wait_for(lambda: job_count(1), what="first Job")
        [first] = await jobs()
        status = (await client.get(batch_pb2.CronJob, "tick", namespace="default")).status
        minutes = status.lastScheduleTime.seconds // 60
        assert first.metadata.name == f"tick-{minutes}"
        assert first.metadata.ownerReferences[0].kind == "CronJob"
        assert [r.name for r in status.active] == [first.metadata.name]
        await clock.wait_for_sleepers(1, within=30)
        clock.advance(60)
        await wait_for(lambda: job_count(2), what="second Job")
        names = sorted(j.metadata.name for j in await jobs())
        assert names == [f"tick-{minutes}", f"tick-{minutes + 1}"]
