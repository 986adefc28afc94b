"""The controller-manager against a real apiserver (SQLite in tmp_path, gRPC client).

No kubelet runs: ``FakeKubelet`` plays one for pods, as simulated nodes do. It
binds new pods to a node, writes them Running and Ready, and finishes the
graceful deletion of terminating pods (deletes them with grace 0), so
Deployments, ReplicaSets, the garbage collector and the namespace controller
see the life cycle they would see in a real cluster.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pilothouse.api.timeutil import format_time
from pilothouse.client import (
    APIError,
    Client,
    SharedInformerFactory,
    WorkQueue,
    connect,
    run_worker,
)
from pilothouse.client.clock import real_clock
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.apiserver.server import APIServer, write_kubeconfig
from pilothouse.services.controllers.manager import ControllerManager, select_controllers
from pilothouse.services.controllers.registry import CONTROLLERS
from tests.support import wait_for

MINE = "replicaset,deployment,garbagecollector,namespace,serviceaccount"
Deployment = apps_pb2.Deployment
RS = apps_pb2.ReplicaSet


# -- a kubelet stand-in -----------------------------------------------------------------------

class FakeKubelet:
    """Binds pods to ``node``, makes them Running/Ready, and completes their deletion."""

    def __init__(self, client: Client, node: str = "node-1") -> None:
        self.client = client
        self.node = node
        self.factory = SharedInformerFactory(client)
        self.pods = self.factory.informer_for(core_pb2.Pod)
        self.queue: WorkQueue[str] = WorkQueue()
        self.pods.add_event_handler(on_add=self._enqueue,
                                    on_update=lambda _o, n: self._enqueue(n))

    def _enqueue(self, pod: core_pb2.Pod) -> None:
        self.queue.add(f"{pod.metadata.namespace}/{pod.metadata.name}")

    async def sync(self, key: str) -> None:
        namespace, name = key.split("/")
        pod = self.pods.get(name, namespace)
        if pod is None:
            return
        try:
            if pod.metadata.HasField("deletionTimestamp"):
                await self.client.delete(core_pb2.Pod, name, namespace=namespace,
                                         grace_period_seconds=0,
                                         precondition_uid=pod.metadata.uid)
            elif not pod.spec.nodeName:
                await self.client.bind(namespace, name, self.node, pod_uid=pod.metadata.uid)
            elif pod.status.phase != "Running":
                now = format_time(real_clock().now())
                status = {"phase": "Running", "podIP": "10.0.0.1",
                          "conditions": [{"type": t, "status": "True",
                                          "lastTransitionTime": now}
                                         for t in ("Initialized", "Ready", "ContainersReady",
                                                   "PodScheduled")]}
                await self.client.patch(core_pb2.Pod, name, {"status": status},
                                        namespace=namespace, subresource="status")
        except APIError as exc:
            if not (exc.is_not_found() or exc.is_conflict()):
                raise

    async def run(self) -> None:
        async with self.factory, asyncio.TaskGroup() as group:
            for _ in range(4):
                group.create_task(run_worker(self.queue, self.sync))


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
async def client(apiserver: APIServer) -> AsyncIterator[Client]:
    async with connect(f"grpc://{apiserver.grpc_address}", timeout=10) as c:
        yield c


@pytest.fixture
async def cluster(client: Client) -> AsyncIterator[Client]:
    """The controllers of this suite and a fake kubelet, running until the test ends."""
    manager = ControllerManager(client, select_controllers(MINE, CONTROLLERS), workers=4)
    kubelet = FakeKubelet(client)
    tasks = [asyncio.create_task(manager.run()), asyncio.create_task(kubelet.run())]
    try:
        await wait_for(lambda: manager.synced, what="caches synced")
        yield client
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError):
                raise result



# -- builders and probes --------------------------------------------------------------------------

def deployment(name: str = "web", replicas: int = 3, image: str = "nginx:1",
               namespace: str = "default", max_surge: int = 1,
               max_unavailable: int = 0) -> Deployment:
    d = Deployment()
    d.metadata.name = name
    d.metadata.namespace = namespace
    d.spec.replicas = replicas
    d.spec.selector.matchLabels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="c", image=image)
    d.spec.strategy.type = "RollingUpdate"
    d.spec.strategy.rollingUpdate.maxSurge.intVal = max_surge
    d.spec.strategy.rollingUpdate.maxUnavailable.intVal = max_unavailable
    return d


def is_ready(pod: core_pb2.Pod) -> bool:
    return not pod.metadata.HasField("deletionTimestamp") and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


async def ready_pods(client: Client, app: str, namespace: str = "default"
                     ) -> list[core_pb2.Pod]:
    pods = (await client.list(core_pb2.Pod, namespace=namespace,
                              label_selector=f"app={app}")).items
    return [p for p in pods if is_ready(p)]


async def rolled_out(client: Client, name: str, namespace: str = "default") -> bool:
    """What ``kubectl rollout status`` waits for."""
    d = await client.get(Deployment, name, namespace=namespace)
    s = d.status
    want = d.spec.replicas
    return (s.observedGeneration >= d.metadata.generation and s.updatedReplicas == want
            and s.replicas == want and s.availableReplicas == want)


# -- tests -------------------------------------------------------------------------------------

async def test_deleted_pod_of_a_deployment_is_replaced(cluster: Client) -> None:
    client = cluster
    await client.create(deployment(replicas=3))
    await wait_for(lambda: rolled_out(client, "web"), what="rollout")
    before = await ready_pods(client, "web")
    assert len(before) == 3
    victim = before[0].metadata.name
    await client.delete(core_pb2.Pod, victim, namespace="default")

    async def replaced() -> bool:
        pods = await ready_pods(client, "web")
        return len(pods) == 3 and victim not in {p.metadata.name for p in pods}

    await wait_for(replaced, what="a replacement pod")

    async def reported() -> bool:
        rs = (await client.list(RS, namespace="default")).items
        return len(rs) == 1 and rs[0].status.readyReplicas == 3

    await wait_for(reported, what="the ReplicaSet reporting 3 ready")


async def test_rolling_update_never_drops_below_three_ready(cluster: Client) -> None:
    client = cluster
    await client.create(deployment(replicas=3, max_surge=1, max_unavailable=0))
    await wait_for(lambda: rolled_out(client, "web"), what="first rollout")
    lowest = 3
    done = asyncio.Event()

    async def watch_ready() -> None:
        nonlocal lowest
        factory = SharedInformerFactory(client)
        pods = factory.informer_for(core_pb2.Pod)

        def count(*_: Any) -> None:
            nonlocal lowest
            if pods.has_synced():
                lowest = min(lowest, sum(1 for p in pods.list("default") if is_ready(p)))

        pods.add_event_handler(count, count, count)
        async with factory:
            await factory.wait_for_sync()
            count()
            await done.wait()

    watcher = asyncio.create_task(watch_ready())
    d = await client.get(Deployment, "web", namespace="default")
    d.spec.template.spec.containers[0].image = "nginx:2"
    await client.update(d)

    async def v2_everywhere() -> bool:
        if not await rolled_out(client, "web"):
            return False
        pods = await ready_pods(client, "web")
        return len(pods) == 3 and all(p.spec.containers[0].image == "nginx:2" for p in pods)

    await wait_for(v2_everywhere, within=60, what="rollout to nginx:2")
    done.set()
    await watcher
    assert lowest >= 3
    replica_sets = {r.spec.template.spec.containers[0].image: r
                    for r in (await client.list(RS, namespace="default")).items}
    assert replica_sets["nginx:1"].spec.replicas == 0
    assert replica_sets["nginx:2"].metadata.annotations[
        "deployment.kubernetes.io/revision"] == "2"


async def test_deleting_a_namespace_empties_it_and_it_goes(cluster: Client) -> None:
    client = cluster
    ns = core_pb2.Namespace()
    ns.metadata.name = "team"
    await client.create(ns)
    await client.create(deployment(namespace="team", replicas=2))
    cm = core_pb2.ConfigMap()
    cm.metadata.name = "settings"
    cm.metadata.namespace = "team"
    await client.create(cm)
    await wait_for(lambda: rolled_out(client, "web", "team"), what="rollout in team")
    await wait_for(lambda: _exists(client, core_pb2.ServiceAccount, "default", "team"),
                   what="default service account")
    await client.delete(core_pb2.Namespace, "team")

    async def gone() -> bool:
        return not await _exists(client, core_pb2.Namespace, "team")

    await wait_for(gone, within=60, what="namespace gone")
    for cls in (core_pb2.Pod, RS, Deployment, core_pb2.ConfigMap, core_pb2.ServiceAccount):
        assert (await client.list(cls, namespace="team")).items == []


async def test_orphan_and_foreground_deletion(cluster: Client) -> None:
    client = cluster
    await client.create(deployment("orphaned", replicas=2))
    await wait_for(lambda: rolled_out(client, "orphaned"), what="rollout")
    await client.delete(Deployment, "orphaned", namespace="default",
                        propagation_policy="Orphan")

    async def orphaned() -> bool:
        if await _exists(client, Deployment, "orphaned", "default"):
            return False
        rss = (await client.list(RS, namespace="default", label_selector="app=orphaned")).items
        return len(rss) == 1 and not rss[0].metadata.ownerReferences

    await wait_for(orphaned, what="deployment gone, ReplicaSet orphaned")
    assert len(await ready_pods(client, "orphaned")) == 2

    await client.create(deployment("fg", replicas=2))
    await wait_for(lambda: rolled_out(client, "fg"), what="rollout")
    await client.delete(Deployment, "fg", namespace="default", propagation_policy="Foreground")
    d = await client.get(Deployment, "fg", namespace="default")
    assert "foregroundDeletion" in d.metadata.finalizers  # waits for its dependents

    async def all_gone() -> bool:
        pods = (await client.list(core_pb2.Pod, namespace="default",
                                  label_selector="app=fg")).items
        rss = (await client.list(RS, namespace="default", label_selector="app=fg")).items
        return not pods and not rss and not await _exists(client, Deployment, "fg",
                                                          "default")

    await wait_for(all_gone, within=60, what="foreground cascade")


async def test_background_deletion_cascades(cluster: Client) -> None:
    client = cluster
    await client.create(deployment("bg", replicas=2))
    await wait_for(lambda: rolled_out(client, "bg"), what="rollout")
    await client.delete(Deployment, "bg", namespace="default", propagation_policy="Background")

    async def cascaded() -> bool:
        pods = (await client.list(core_pb2.Pod, namespace="default",
                                  label_selector="app=bg")).items
        rss = (await client.list(RS, namespace="default", label_selector="app=bg")).items
        return not pods and not rss

    await wait_for(cascaded, within=60, what="background cascade")


def kubectl(kubeconfig: Path, *args: str) -> str:
    proc = subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", *args],
                          capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


async def test_kubectl_rollout_status_history_undo_pause_restart(
        cluster: Client, apiserver: APIServer, tmp_path: Path) -> None:
    client = cluster
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)

    async def run(*args: str) -> str:
        return await asyncio.to_thread(kubectl, kubeconfig, *args)

    await run("create", "deployment", "web", "--image=nginx:1", "--replicas=2")
    out = await run("rollout", "status", "deployment/web", "--timeout=60s")
    assert 'deployment "web" successfully rolled out' in out
    await run("set", "image", "deployment/web", "nginx=nginx:2")
    await run("rollout", "status", "deployment/web", "--timeout=60s")
    history = await run("rollout", "history", "deployment/web")
    assert re.search(r"^1\s", history, re.M) and re.search(r"^2\s", history, re.M)
    await run("rollout", "undo", "deployment/web")
    await run("rollout", "status", "deployment/web", "--timeout=60s")
    d = await client.get(Deployment, "web", namespace="default")
    assert d.spec.template.spec.containers[0].image == "nginx:1"
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    history = await run("rollout", "history", "deployment/web")
    revisions = re.findall(r"^(\d+)\s", history, re.M)
    assert revisions == ["2", "3"]  # revision 1 became 3
    pods = await ready_pods(client, "web")
    assert {p.spec.containers[0].image for p in pods} == {"nginx:1"}

    await run("rollout", "pause", "deployment/web")
    await run("set", "image", "deployment/web", "nginx=nginx:3")
    await wait_for(lambda: _condition(client, "web", "DeploymentPaused"), what="paused")
    assert len((await client.list(RS, namespace="default")).items) == 2  # no new one
    await run("rollout", "resume", "deployment/web")
    await run("rollout", "status", "deployment/web", "--timeout=60s")
    await run("rollout", "restart", "deployment/web")
    await run("rollout", "status", "deployment/web", "--timeout=60s")
    d = await client.get(Deployment, "web", namespace="default")
    assert "kubectl.kubernetes.io/restartedAt" in d.spec.template.metadata.annotations
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "5"
    describe = await run("describe", "deployment", "web")
    assert "ScalingReplicaSet" in describe


async def _exists(client: Client, cls: Any, name: str, namespace: str = "") -> bool:
    try:
        await client.get(cls, name, namespace=namespace)
    except APIError as exc:
        if exc.is_not_found():
            return False
        raise
    return True


async def _condition(client: Client, name: str, reason: str) -> bool:
    d = await client.get(Deployment, name, namespace="default")
    return any(c.type == "Progressing" and c.reason == reason for c in d.status.conditions)


async def test_controller_manager_process_leads_serves_health_and_stops_on_sigterm(
        apiserver: APIServer, client: Client) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pilothouse.cli", "controller-manager",
        f"--apiserver=grpc://{apiserver.grpc_address}", "--port=0", f"--controllers={MINE}",
        "--identity=cm-test", stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stderr is not None
    port = 0
    try:
        async with asyncio.timeout(30):
            while not port:
                line = (await proc.stderr.readline()).decode()
                assert line, "controller-manager exited early"
                found = re.search(r"address=127\.0\.0\.1:(\d+)", line)
                if found:
                    port = int(found.group(1))

        async def lease_held() -> bool:
            try:
                lease = await client.get(coordination_pb2.Lease, "kube-controller-manager",
                                         namespace="kube-system")
            except APIError:
                return False
            return lease.spec.holderIdentity == "cm-test"

        await wait_for(lease_held, what="lease taken")

        async def healthy() -> bool:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = await reader.read()
            writer.close()
            return data.startswith(b"HTTP/1.1 200")

        await wait_for(healthy, what="/readyz 200")
        await client.create(deployment("proc", replicas=1))

        async def has_rs() -> bool:
            rss = (await client.list(RS, namespace="default", label_selector="app=proc")).items
            return len(rss) == 1

        await wait_for(has_rs, what="the process's deployment controller at work")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.stderr.read()
            code = await proc.wait()
    assert code == 0
    lease = await client.get(coordination_pb2.Lease, "kube-controller-manager",
                             namespace="kube-system")
    assert lease.spec.holderIdentity == ""  # released on the way out
