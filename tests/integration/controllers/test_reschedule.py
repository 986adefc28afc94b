"""A node dies: its pods are evicted and the Deployment's pods come back elsewhere.

The whole control loop against a real apiserver: node lifecycle (lease gone ->
Unknown -> unreachable taints -> taint-based eviction), ReplicaSet (replaces
the pods being deleted), scheduler (places the replacements on the healthy
node, not the tainted one), simulated nodes playing the kubelets.
"""

from __future__ import annotations

import asyncio

from pilothouse.client import Client
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.scheduler.fakenodes import FakeNodes
from pilothouse.services.scheduler.scheduler import Scheduler
from tests.integration.controllers.test_manager_b import (
    client,  # noqa: F401 - fixture
    manager,
    ready,
    running,
    tolerate_unreachable,
)
from tests.support import wait_for


def deployment(replicas: int) -> apps_pb2.Deployment:
    d = apps_pb2.Deployment()
    d.metadata.name, d.metadata.namespace = "web", "default"
    d.spec.replicas = replicas
    d.spec.selector.matchLabels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    d.spec.template.spec.containers.add(name="web", image="busybox")
    # Leave an unreachable node at once (the default would wait 300 s).
    d.spec.template.spec.tolerations.extend(tolerate_unreachable(0))
    return d


async def test_pods_of_a_dead_node_are_rescheduled_elsewhere(client: Client) -> None:  # noqa: F811
    doomed = FakeNodes(client, 1, prefix="doomed-", lease_renew_interval=0.2)
    healthy = FakeNodes(client, 1, prefix="alive-", lease_renew_interval=0.2)
    controllers = manager(client, "deployment,replicaset,nodelifecycle",
                          settings={"node-monitor-grace-period": 3})
    scheduler = Scheduler(client, record_events=False)

    async def pods_on(prefix: str) -> list[core_pb2.Pod]:
        items = (await client.list(core_pb2.Pod, namespace="default")).items
        return [p for p in items if p.spec.nodeName.startswith(prefix) and ready(p)
                and not p.metadata.HasField("deletionTimestamp")]

    async with running(controllers.run(), scheduler.run(leader_elect=False)):
        doomed_task = asyncio.ensure_future(doomed.run())
        try:
            await doomed.registered.wait()
            await client.create(deployment(2))
            await wait_for(lambda: _count(pods_on("doomed-"), 2), within=60,
                           what="both pods running on the only node")
            async with running(healthy.run()):
                await healthy.registered.wait()
                doomed_task.cancel()  # the doomed node's kubelet goes away: no more leases
                await wait_for(lambda: _count(pods_on("alive-"), 2), within=90,
                               what="replacement pods running on the healthy node")
                node = await client.get(core_pb2.Node, "doomed-0")
                assert ("node.kubernetes.io/unreachable", "NoExecute") in \
                    {(t.key, t.effect) for t in node.spec.taints}
        finally:
            doomed_task.cancel()
            await asyncio.gather(doomed_task, return_exceptions=True)


async def _count(pods: object, n: int) -> bool:
    return len(await pods) == n  # type: ignore[misc]
