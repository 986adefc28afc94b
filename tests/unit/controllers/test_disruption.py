"""Disruption controller: PodDisruptionBudget status from pods and their controllers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pilothouse.api.timeutil import time_to_proto
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.intstr.intstr_pb2 import IntOrString
from pilothouse.gen.k8s.policy.v1 import policy_pb2
from pilothouse.services.controllers.disruption import DisruptionController
from pilothouse.services.controllers.pod_utils import get_condition, new_owner_reference
from tests.unit.controllers.fake_cluster import FakeCluster, make_pod

T0 = datetime(2024, 1, 1, tzinfo=UTC)
APP = {"app": "web"}


def intstr(value: int | str) -> IntOrString:
    return IntOrString(type=0, intVal=value) if isinstance(value, int) else \
        IntOrString(type=1, strVal=value)


def make_pdb(*, min_available: int | str | None = None,
             max_unavailable: int | str | None = None) -> policy_pb2.PodDisruptionBudget:
    pdb = policy_pb2.PodDisruptionBudget()
    pdb.metadata.name = "web"
    pdb.metadata.namespace = "default"
    pdb.spec.selector.matchLabels.update(APP)
    if min_available is not None:
        pdb.spec.minAvailable.CopyFrom(intstr(min_available))
    if max_unavailable is not None:
        pdb.spec.maxUnavailable.CopyFrom(intstr(max_unavailable))
    return pdb


async def seed(cluster: FakeCluster, ready: int, not_ready: int, replicas: int,
               owned: bool = True) -> None:
    rs = apps_pb2.ReplicaSet()
    rs.metadata.name = "web-abc"
    rs.metadata.namespace = "default"
    rs.spec.replicas = replicas
    rs = await cluster.add(rs)
    for i in range(ready + not_ready):
        pod = make_pod(f"web-{i}", labels=APP, ip=f"10.0.0.{i + 1}", ready=i < ready)
        if owned:
            pod.metadata.ownerReferences.append(new_owner_reference(rs, "apps/v1", "ReplicaSet"))
        await cluster.add(pod)


@pytest.mark.parametrize(("pdb", "ready", "not_ready", "replicas", "expected"), [
    pytest.param(make_pdb(min_available=2), 3, 0, 3, (3, 2, 3, 1, "True"), id="min-int"),
    pytest.param(make_pdb(min_available=2), 2, 1, 3, (2, 2, 3, 0, "False"), id="min-int-tight"),
    pytest.param(make_pdb(min_available="50%"), 4, 0, 4, (4, 2, 4, 2, "True"),
                 id="min-percent-of-scale"),
    pytest.param(make_pdb(min_available="50%"), 3, 0, 5, (3, 3, 5, 0, "False"),
                 id="min-percent-rounds-up"),
    pytest.param(make_pdb(max_unavailable=1), 3, 0, 3, (3, 2, 3, 1, "True"), id="max-int"),
    pytest.param(make_pdb(max_unavailable="34%"), 3, 0, 3, (3, 1, 3, 2, "True"),
                 id="max-percent"),
    pytest.param(make_pdb(max_unavailable=0), 3, 0, 3, (3, 3, 3, 0, "False"), id="max-zero"),
])
async def test_status(pdb: policy_pb2.PodDisruptionBudget, ready: int, not_ready: int,
                      replicas: int, expected: tuple[int, int, int, int, str]) -> None:
    cluster = FakeCluster(start=T0)
    controller = DisruptionController(cluster.ctx)
    await seed(cluster, ready, not_ready, replicas)
    await cluster.add(pdb)
    await controller.sync("default/web")
    got = cluster.get(policy_pb2.PodDisruptionBudget, "web")
    assert got is not None
    st = got.status
    cond = get_condition(st.conditions, "DisruptionAllowed")
    assert cond is not None
    assert (st.currentHealthy, st.desiredHealthy, st.expectedPods, st.disruptionsAllowed,
            cond.status) == expected
    assert cond.reason == ("SufficientPods" if expected[4] == "True" else "InsufficientPods")


async def test_unmanaged_pods_with_percentage_fail_clearly() -> None:
    cluster = FakeCluster(start=T0)
    controller = DisruptionController(cluster.ctx)
    await seed(cluster, 2, 0, 2, owned=False)
    await cluster.add(make_pdb(max_unavailable=1))
    await controller.sync("default/web")
    got = cluster.get(policy_pb2.PodDisruptionBudget, "web")
    assert got is not None
    cond = get_condition(got.status.conditions, "DisruptionAllowed")
    assert cond is not None and (cond.status, cond.reason) == ("False", "SyncFailed")
    assert "has no controller" in cond.message
    assert cluster.recorder.reasons() == ["CalculateExpectedPodCountFailed"]


async def test_disrupted_pods_count_until_deleted_or_stale() -> None:
    cluster = FakeCluster(start=T0)
    controller = DisruptionController(cluster.ctx)
    await seed(cluster, 3, 0, 3)
    pdb = await cluster.add(make_pdb(min_available=2))
    pdb.status.disruptedPods["web-0"].CopyFrom(time_to_proto(T0))
    await cluster.put(pdb)
    await controller.sync("default/web")
    cluster.settle()
    got = cluster.get(policy_pb2.PodDisruptionBudget, "web")
    assert got is not None
    assert (got.status.currentHealthy, got.status.disruptionsAllowed) == (2, 0)
    cluster.clock.advance(121)
    await controller.sync("default/web")
    got = cluster.get(policy_pb2.PodDisruptionBudget, "web")
    assert got is not None
    assert dict(got.status.disruptedPods) == {}
    assert (got.status.currentHealthy, got.status.disruptionsAllowed) == (3, 1)


async def test_pod_events_enqueue_matching_pdb() -> None:
    cluster = FakeCluster(start=T0)
    controller = DisruptionController(cluster.ctx)
    await cluster.add(make_pdb(min_available=1))
    while len(controller.queue):
        key = await controller.queue.get()
        controller.queue.done(key)
    await cluster.add(make_pod("other", labels={"app": "db"}))
    assert len(controller.queue) == 0
    await cluster.add(make_pod("web-9", labels=APP))
    assert len(controller.queue) == 1
