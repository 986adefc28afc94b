"""The scheduler against a real apiserver: placement, explanations, preemption, events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from pilothouse.client import Client
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.scheduling.v1 import scheduling_pb2
from pilothouse.services.scheduler.fakenodes import FakeNodes
from pilothouse.services.scheduler.testing import make_node, make_pod
from tests.integration.scheduler.conftest import (
    Running,
    events_for,
    node_of,
    wait_bound,
)
from tests.support import wait_for

ZONE = "topology.kubernetes.io/zone"


async def create_nodes(client: Client, *nodes: core_pb2.Node) -> None:
    for n in nodes:
        await client.create(n)


async def test_pods_land_where_kubernetes_would_put_them(client: Client,
                                                         scheduler: Running) -> None:
    await create_nodes(client, make_node("small", cpu="1", memory="2Gi", zone="a"),
                       make_node("big", cpu="8", memory="16Gi", zone="b"),
                       make_node("gpu", cpu="8", memory="16Gi", zone="c",
                                 labels={"accel": "gpu"},
                                 taints=[("dedicated", "gpu", "NoSchedule")]))
    await wait_for(lambda: scheduler.scheduler.cache.node_count == 3, what="nodes cached")
    await client.create(make_pod("needs-2-cpu", cpu="2"))
    await client.create(make_pod("wants-gpu", node_selector={"accel": "gpu"},
                                 tolerations=[{"key": "dedicated", "operator": "Exists"}]))
    await client.create(make_pod("zone-a", node_selector={ZONE: "a"}, cpu="500m"))
    placed = await wait_bound(client, "needs-2-cpu", "wants-gpu", "zone-a")
    assert placed["needs-2-cpu"] in ("big", "gpu") and placed["needs-2-cpu"] != "gpu"
    assert placed == {"needs-2-cpu": "big", "wants-gpu": "gpu", "zone-a": "small"}
    await wait_for(lambda: events_for(client, "zone-a", "Scheduled"), what="Scheduled event")
    (event,) = await events_for(client, "zone-a", "Scheduled")
    assert event.message == "Successfully assigned default/zone-a to small"


async def test_anti_affinity_spreads_replicas(client: Client, scheduler: Running) -> None:
    await create_nodes(client, *(make_node(f"n{i}", zone="ab"[i % 2]) for i in range(3)))
    await wait_for(lambda: scheduler.scheduler.cache.node_count == 3, what="nodes cached")
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}},
         "topologyKey": "kubernetes.io/hostname"}]}}
    for i in range(4):
        await client.create(make_pod(f"web-{i}", labels={"app": "web"}, affinity=anti))
    placed = await wait_bound(client, "web-0", "web-1", "web-2")
    assert sorted(placed.values()) == ["n0", "n1", "n2"]

    async def failed() -> bool:
        return bool(await events_for(client, "web-3", "FailedScheduling"))

    await wait_for(failed, what="FailedScheduling for the 4th replica")
    (event,) = await events_for(client, "web-3", "FailedScheduling")
    assert event.type == "Warning"
    # The doubled full stop is Kubernetes' own (the PostFilter message ends with one).
    assert event.message == ("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity "
                             "rules. preemption: 0/3 nodes are available: 3 No preemption "
                             "victims found for incoming pod..")


async def test_unschedulable_pod_is_explained_then_fits_when_a_node_is_added(
        client: Client, scheduler: Running) -> None:
    await create_nodes(client, make_node("tiny-1", cpu="1"), make_node("tiny-2", cpu="1"),
                       make_node("tainted", cpu="8", taints=[("dedicated", "db", "NoSchedule")]))
    await wait_for(lambda: scheduler.scheduler.cache.node_count == 3, what="nodes cached")
    await client.create(make_pod("hungry", cpu="4"))

    async def condition() -> Any:
        pod = await client.get(core_pb2.Pod, "hungry", namespace="default")
        return next((c for c in pod.status.conditions if c.type == "PodScheduled"), None)

    async def has_condition() -> bool:
        return await condition() is not None

    await wait_for(has_condition, what="PodScheduled condition")
    cond = await condition()
    assert cond.status == "False" and cond.reason == "Unschedulable"
    assert cond.message.startswith("0/3 nodes are available: 1 node(s) had untolerated taint "
                                   "{dedicated: db}, 2 Insufficient cpu.")
    # explain: over HTTP, and through the CLI
    async with httpx.AsyncClient() as http:
        doc = (await http.get(f"{scheduler.http.url}/debug/explain/default/hungry")).json()
    assert doc["result"] == "Unschedulable"
    assert doc["filters"]["tiny-1"] == {"plugin": "NodeResourcesFit",
                                        "code": "UnschedulableAndUnresolvable",
                                        "reasons": ["Insufficient cpu"]}
    assert doc["filters"]["tainted"]["plugin"] == "TaintToleration"
    import contextlib
    import io

    from pilothouse.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(main, ["scheduler", "explain", "default/hungry",
                                              "--address", scheduler.http.url])
    assert code == 0
    text = out.getvalue()
    assert "Unschedulable" in text and "tiny-2" in text and "Insufficient cpu" in text
    # a node that fits arrives: the pod is moved back and scheduled
    await client.create(make_node("roomy", cpu="8"))
    assert await wait_bound(client, "hungry") == {"hungry": "roomy"}
    async with httpx.AsyncClient() as http:
        doc = (await http.get(f"{scheduler.http.url}/debug/explain/default/hungry")).json()
    assert doc["result"] == "Scheduled" and doc["node"] == "roomy"


async def test_scores_are_explained(client: Client, scheduler: Running) -> None:
    await create_nodes(client, make_node("a", cpu="4"), make_node("b", cpu="4"))
    await client.create(make_pod("filler", cpu="3", node_name="a"))
    await wait_for(lambda: scheduler.scheduler.cache.node_count == 2, what="nodes cached")
    await client.create(make_pod("p", cpu="500m"))
    assert await wait_bound(client, "p") == {"p": "b"}
    async with httpx.AsyncClient() as http:
        doc = (await http.get(f"{scheduler.http.url}/debug/explain/default/p")).json()
    best = doc["scores"][0]
    assert best["node"] == "b"
    fit = best["plugins"]["NodeResourcesFit"]
    assert fit["weight"] == 1 and fit["raw"] == fit["normalized"]
    assert best["total"] == sum(v["normalized"] * v["weight"]
                                for v in best["plugins"].values())
    missing = (await asyncio.to_thread(
        httpx.get, f"{scheduler.http.url}/debug/explain/default/nope")).json()
    assert "no scheduling attempt" in missing["error"]


async def test_metrics_endpoint(client: Client, scheduler: Running) -> None:
    await create_nodes(client, make_node("n1"))
    await wait_for(lambda: scheduler.scheduler.cache.node_count == 1, what="nodes cached")
    await client.create(make_pod("p"))
    await wait_bound(client, "p")
    await wait_for(lambda: scheduler.scheduler.scheduled == 1, what="bind accounted")
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{scheduler.http.url}/metrics")).text
        ready = await http.get(f"{scheduler.http.url}/readyz")
    assert ready.status_code == 200
    assert 'scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"} ' \
           '1.0' in text
    assert 'scheduler_pending_pods{queue="active"} 0.0' in text
    assert "scheduler_scheduling_attempt_duration_seconds_bucket" in text
    assert 'scheduler_framework_extension_point_duration_seconds_count{extension_point=' \
           '"Bind",profile="default-scheduler",status="Success"} 1.0' in text


async def test_preemption_evicts_the_right_victims(client: Client, scheduler: Running) -> None:
    fake = FakeNodes(client, 2, cpu="2", zones=("a",), lease_renew_interval=0)
    runner = asyncio.create_task(fake.run())
    try:
        await wait_for(lambda: scheduler.scheduler.cache.node_count == 2, what="nodes cached")
        pc = scheduling_pb2.PriorityClass()
        pc.metadata.name = "critical"
        pc.value = 1000
        await client.create(pc)
        await wait_for(lambda: scheduler.scheduler.priority_classes.get("critical") is not None,
                       what="PriorityClass cached")
        await client.create(make_pod("low-a", cpu="2", priority=1))
        await client.create(make_pod("low-b", cpu="1", priority=5))
        await client.create(make_pod("low-c", cpu="1", priority=5))
        placed = await wait_bound(client, "low-a", "low-b", "low-c")
        node_a = placed["low-a"]
        assert placed["low-b"] == placed["low-c"] != node_a

        async def running(name: str) -> bool:
            pod = await client.get(core_pb2.Pod, name, namespace="default")
            return pod.status.phase == "Running" and bool(pod.status.podIP)

        await wait_for(lambda: running("low-a"), what="fake node runs the pod")
        # Needs the whole of a node: evicting low-a (priority 1, one victim) beats
        # evicting low-b and low-c (priority 5).
        await client.create(make_pod("vip", cpu="2", priority_class="critical"))
        placed = await wait_bound(client, "vip", within=20)
        assert placed == {"vip": node_a}

        async def gone(name: str) -> bool:
            pods = await client.list(core_pb2.Pod, namespace="default")
            return name not in {p.metadata.name for p in pods.items}

        await wait_for(lambda: gone("low-a"), what="victim deleted")
        assert await node_of(client, "low-b") and await node_of(client, "low-c")
        assert await events_for(client, "low-a", "Preempted")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_fake_nodes_register_leases_and_run_pods(client: Client,
                                                      scheduler: Running) -> None:
    from pilothouse.gen.k8s.coordination.v1 import coordination_pb2

    fake = FakeNodes(client, 5, zones=("z1", "z2"), lease_renew_interval=3600)
    runner = asyncio.create_task(fake.run())
    try:
        await asyncio.wait_for(fake.registered.wait(), 15)
        await wait_for(lambda: scheduler.scheduler.cache.node_count == 5, what="nodes")
        nodes = await client.list(core_pb2.Node)
        assert sorted(dict(n.metadata.labels)["topology.kubernetes.io/zone"]
                      for n in nodes.items) == ["z1", "z1", "z1", "z2", "z2"]
        leases = await client.list(coordination_pb2.Lease, namespace="kube-node-lease")
        assert len(leases.items) == 5
        for i in range(10):
            await client.create(make_pod(f"p{i}", cpu="100m"))

        async def all_running() -> bool:
            pods = await client.list(core_pb2.Pod, namespace="default")
            return len(pods.items) == 10 and all(p.status.phase == "Running"
                                                 for p in pods.items)

        await wait_for(all_running, what="pods running")
        pods = await client.list(core_pb2.Pod, namespace="default")
        assert len({p.status.podIP for p in pods.items}) == 10
        assert json.dumps(sorted({p.spec.nodeName for p in pods.items})) != "[]"
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
