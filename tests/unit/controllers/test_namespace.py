"""Namespace controller: empty a terminating namespace, report conditions, finalize."""

from __future__ import annotations

from collections import Counter

import pytest

from pilothouse.client import APIError
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.namespace import (
    ContentReport,
    NamespaceController,
    content_conditions,
)
from tests.unit.controllers.fake_cluster import FakeCluster
from tests.unit.controllers.workload_builders import make_pod, make_rs


def namespace(name: str = "team", *, deleting: bool = True) -> core_pb2.Namespace:
    ns = core_pb2.Namespace()
    ns.metadata.name = name
    ns.spec.finalizers.append("kubernetes")
    if deleting:
        ns.metadata.deletionTimestamp.seconds = 100
        ns.status.phase = "Terminating"
    return ns


def configmap(name: str, ns: str = "team", finalizer: str = "") -> core_pb2.ConfigMap:
    cm = core_pb2.ConfigMap()
    cm.metadata.name = name
    cm.metadata.namespace = ns
    if finalizer:
        cm.metadata.finalizers.append(finalizer)
    return cm


def conditions(ns: core_pb2.Namespace) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in ns.status.conditions}


async def test_deletes_every_kind_then_finalizes() -> None:
    cluster = FakeCluster()
    controller = NamespaceController(cluster.ctx)
    await cluster.add(namespace())
    await cluster.add(make_pod("p", namespace="team"))
    await cluster.add(make_rs("r", namespace="team"))
    await cluster.add(configmap("c"))
    await cluster.add(make_pod("elsewhere", namespace="default"))
    await controller.sync("team")
    assert [p.metadata.name for p in cluster.objects(core_pb2.Pod)] == ["elsewhere"]
    assert cluster.objects(core_pb2.ConfigMap) == []
    ns = cluster.get(core_pb2.Namespace, "team")
    assert ns is not None and list(ns.spec.finalizers) == []
    got = conditions(ns)
    assert got["NamespaceContentRemaining"][:2] == ("False", "ContentRemoved")
    assert got["NamespaceDeletionContentFailure"][:2] == ("False", "ContentDeleted")
    assert any(a.subresource == "finalize" for a in cluster.fake.actions)


async def test_content_with_finalizers_keeps_the_namespace_and_is_reported() -> None:
    cluster = FakeCluster()
    controller = NamespaceController(cluster.ctx)
    await cluster.add(namespace())
    held = configmap("held", finalizer="example.com/hold")
    held.metadata.deletionTimestamp.seconds = 100  # deleted, waiting for its finalizer
    await cluster.add(held)
    await controller.sync("team")
    ns = cluster.get(core_pb2.Namespace, "team")
    assert ns is not None and list(ns.spec.finalizers) == ["kubernetes"]
    got = conditions(ns)
    assert got["NamespaceContentRemaining"] == (
        "True", "SomeResourcesRemain",
        "Some resources are remaining: configmaps. has 1 resource instances")
    assert got["NamespaceFinalizersRemaining"] == (
        "True", "SomeFinalizersRemain",
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 "
        "resource instances")
    assert controller.queue.waiting == 1  # looked at again later
    assert not any(a.subresource == "finalize" for a in cluster.fake.actions)


async def test_delete_failure_is_reported_and_retried() -> None:
    cluster = FakeCluster()
    controller = NamespaceController(cluster.ctx)
    await cluster.add(namespace())
    await cluster.add(configmap("c"))
    cluster.fake.fail_next("delete", APIError(500, "InternalError", "disk on fire"),
                           "configmaps")
    with pytest.raises(RuntimeError, match="disk on fire"):
        await controller.sync("team")
    ns = cluster.get(core_pb2.Namespace, "team")
    assert ns is not None
    status, reason, message = conditions(ns)["NamespaceDeletionContentFailure"]
    assert (status, reason) == ("True", "ContentDeletionFailed")
    assert "1 remaining" in message


@pytest.mark.parametrize("ns", [namespace("live", deleting=False), None],
                         ids=["not-deleting", "gone"])
async def test_nothing_to_do(ns: core_pb2.Namespace | None) -> None:
    cluster = FakeCluster()
    controller = NamespaceController(cluster.ctx)
    if ns is not None:
        await cluster.add(ns)
    await cluster.add(configmap("c", "live"))
    before = len(cluster.writes())
    await controller.sync("live")
    assert len(cluster.writes()) == before


def test_content_conditions_sorted_messages() -> None:
    report = ContentReport(remaining=Counter({"pods.": 2, "deployments.apps": 1}),
                           finalizers=Counter({"b/x": 1, "a/y": 3}))
    got = {t: m for t, _, _, m in content_conditions(report)}
    assert got["NamespaceContentRemaining"] == (
        "Some resources are remaining: deployments.apps has 1 resource instances, "
        "pods. has 2 resource instances")
    assert got["NamespaceFinalizersRemaining"].endswith(
        "a/y in 3 resource instances, b/x in 1 resource instances")
    assert len(got) == 5
