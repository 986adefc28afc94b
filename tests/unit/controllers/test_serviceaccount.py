"""ServiceAccount controller: a default account in every active namespace."""

from __future__ import annotations

import pytest

from pilothouse.client import APIError
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.serviceaccount import ServiceAccountController
from tests.unit.controllers.fake_cluster import FakeCluster


def namespace(name: str, phase: str = "Active") -> core_pb2.Namespace:
    ns = core_pb2.Namespace()
    ns.metadata.name = name
    ns.status.phase = phase
    if phase == "Terminating":
        ns.metadata.deletionTimestamp.seconds = 1
    return ns


def accounts(cluster: FakeCluster) -> list[str]:
    return sorted(f"{sa.metadata.namespace}/{sa.metadata.name}"
                  for sa in cluster.objects(core_pb2.ServiceAccount))


async def test_creates_default_account_and_recreates_it_after_deletion() -> None:
    cluster = FakeCluster()
    controller = ServiceAccountController(cluster.ctx)
    await cluster.add(namespace("team"))
    await controller.sync("team")
    cluster.settle()
    assert accounts(cluster) == ["team/default"]
    await controller.sync("team")  # already there: no second create
    assert len(cluster.writes("create", "serviceaccounts")) == 1
    while len(controller.queue):
        controller.queue.done(await controller.queue.get())
    await cluster.remove(core_pb2.ServiceAccount, "default", "team")
    assert len(controller.queue) == 1  # the deletion re-queues the namespace
    await controller.sync("team")
    assert accounts(cluster) == ["team/default"]


@pytest.mark.parametrize("phase", ["Terminating"], ids=["terminating"])
async def test_no_account_in_a_terminating_namespace(phase: str) -> None:
    cluster = FakeCluster()
    controller = ServiceAccountController(cluster.ctx)
    await cluster.add(namespace("old", phase))
    await controller.sync("old")
    await controller.sync("missing")
    assert accounts(cluster) == []


async def test_already_exists_from_a_lagging_cache_is_fine() -> None:
    cluster = FakeCluster()
    controller = ServiceAccountController(cluster.ctx)
    await cluster.add(namespace("team"))
    cluster.fake.fail_next("create", APIError(409, "AlreadyExists", "exists"))
    await controller.sync("team")


async def test_other_errors_are_retried() -> None:
    cluster = FakeCluster()
    controller = ServiceAccountController(cluster.ctx)
    await cluster.add(namespace("team"))
    cluster.fake.fail_next("create", APIError(500, "InternalError", "boom"))
    with pytest.raises(APIError):
        await controller.sync("team")
