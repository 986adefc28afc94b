"""Deployment controller: seed the caches, call sync(key), look at what was written.

ReplicaSet status is simulated here (``report``): each ReplicaSet's pods are
as ready and available as the test says, without a ReplicaSet controller.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from pilothouse.api.intstr import from_json
from pilothouse.client import APIError, copy_object
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.deployment import DeploymentController
from pilothouse.services.controllers.deployment_utils import (
    calculate_status,
    equal_ignore_hash,
    get_proportion,
    max_surge,
    max_unavailable,
    new_rs_new_replicas,
    resolve_fenceposts,
    set_new_replica_set_annotations,
)
from pilothouse.services.controllers.pod_utils import compute_hash
from tests.unit.controllers.fake_cluster import FakeCluster
from tests.unit.controllers.workload_builders import make_deployment, make_pod, make_rs, owned_by

KEY = "default/web"
RS = apps_pb2.ReplicaSet


def rss(cluster: FakeCluster) -> list[RS]:
    """ReplicaSets, lowest revision first."""
    return sorted(cluster.objects(RS), key=lambda r: int(
        r.metadata.annotations.get("deployment.kubernetes.io/revision", "0")))


def deployment(cluster: FakeCluster) -> apps_pb2.Deployment:
    d = cluster.get(apps_pb2.Deployment, "web")
    assert d is not None
    return d


def cond(d: apps_pb2.Deployment, type_: str) -> tuple[str, str]:
    for c in d.status.conditions:
        if c.type == type_:
            return c.status, c.reason
    return "", ""


async def report(cluster: FakeCluster, available: bool = True) -> None:
    """Every ReplicaSet's pods exist at once; ready and available if ``available``."""
    for rs in cluster.objects(RS):
        new = copy_object(rs)
        want = rs.spec.replicas
        new.status.replicas = want
        new.status.readyReplicas = want if available else 0
        new.status.availableReplicas = want if available else 0
        new.status.observedGeneration = rs.metadata.generation
        if new.status != rs.status:
            await cluster.client.update_status(new)
    cluster.settle()


async def start(**kwargs: object) -> tuple[FakeCluster, DeploymentController]:
    cluster = FakeCluster()
    controller = DeploymentController(cluster.ctx)
    await cluster.add(make_deployment(**kwargs))  # type: ignore[arg-type]
    return cluster, controller


async def step(cluster: FakeCluster, controller: DeploymentController,
               available: bool = True) -> None:
    await controller.sync(KEY)
    cluster.settle()
    await report(cluster, available)


async def change_image(cluster: FakeCluster, image: str) -> None:
    d = copy_object(deployment(cluster))
    d.spec.template.spec.containers[0].image = image
    await cluster.client.update(d)
    cluster.settle()


# -- first rollout --------------------------------------------------------------------------


async def test_new_deployment_creates_its_replica_set() -> None:
    cluster, controller = await start(replicas=3)
    await controller.sync(KEY)
    cluster.settle()
    (rs,) = rss(cluster)
    d = deployment(cluster)
    h = compute_hash(d.spec.template)
    assert rs.metadata.name == f"web-{h}"
    assert rs.metadata.labels["pod-template-hash"] == h
    assert rs.spec.template.metadata.labels["pod-template-hash"] == h
    assert dict(rs.spec.selector.matchLabels) == {"app": "web", "pod-template-hash": h}
    assert rs.spec.replicas == 3
    (ref,) = rs.metadata.ownerReferences
    assert (ref.kind, ref.uid, ref.controller, ref.blockOwnerDeletion) == (
        "Deployment", d.metadata.uid, True, True)
    ann = rs.metadata.annotations
    assert (ann["deployment.kubernetes.io/revision"],
            ann["deployment.kubernetes.io/desired-replicas"],
            ann["deployment.kubernetes.io/max-replicas"]) == ("1", "3", "4")
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert cond(d, "Progressing") == ("True", "NewReplicaSetCreated")
    assert ("web", "Normal", "ScalingReplicaSet",
            f"Scaled up replica set web-{h} from 0 to 3") in cluster.recorder.recorded


async def test_complete_rollout_reports_status_and_conditions() -> None:
    cluster, controller = await start(replicas=3)
    for _ in range(3):
        await step(cluster, controller)
    d = deployment(cluster)
    s = d.status
    assert (s.replicas, s.updatedReplicas, s.readyReplicas, s.availableReplicas,
            s.unavailableReplicas, s.observedGeneration) == (3, 3, 3, 3, 0,
                                                             d.metadata.generation)
    assert cond(d, "Available") == ("True", "MinimumReplicasAvailable")
    assert cond(d, "Progressing") == ("True", "NewReplicaSetAvailable")


async def test_unavailable_pods_report_minimum_replicas_unavailable() -> None:
    cluster, controller = await start(replicas=4)
    for _ in range(2):
        await step(cluster, controller, available=False)
    d = deployment(cluster)
    assert d.status.unavailableReplicas == 4
    assert cond(d, "Available") == ("False", "MinimumReplicasUnavailable")


# -- rolling update -------------------------------------------------------------------------


@pytest.mark.parametrize(("surge", "unavailable", "replicas"), [
    (1, 0, 3), (0, 1, 3), ("25%", "25%", 10), (2, 2, 5), ("50%", 0, 4),
], ids=["surge-1", "unavailable-1", "percent", "both-2", "surge-half"])
async def test_rolling_update_keeps_within_surge_and_availability(
        surge: int | str, unavailable: int | str, replicas: int) -> None:
    cluster, controller = await start(replicas=replicas, max_surge=surge,
                                      max_unavailable=unavailable)
    for _ in range(3):
        await step(cluster, controller)
    await change_image(cluster, "nginx:2")
    d = deployment(cluster)
    limit_total = replicas + max_surge(d)
    min_available = replicas - max_unavailable(d)
    for _ in range(40):
        await step(cluster, controller)
        total = sum(r.spec.replicas for r in cluster.objects(RS))
        available = sum(r.status.availableReplicas for r in cluster.objects(RS))
        assert total <= limit_total
        assert available >= min_available
        if cond(deployment(cluster), "Progressing")[1] == "NewReplicaSetAvailable":
            break
    d = deployment(cluster)
    old, new = rss(cluster)
    assert (old.spec.replicas, new.spec.replicas) == (0, replicas)
    assert new.spec.template.spec.containers[0].image == "nginx:2"
    assert new.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert cond(d, "Progressing") == ("True", "NewReplicaSetAvailable")
    assert d.status.updatedReplicas == replicas


async def test_rolling_update_removes_unhealthy_old_pods_first() -> None:
    cluster, controller = await start(replicas=4, max_surge=0, max_unavailable=1)
    for _ in range(2):
        await step(cluster, controller)
    (old,) = rss(cluster)
    broken = copy_object(old)
    broken.status.availableReplicas = 2  # two of the old pods are not available
    await cluster.client.update_status(broken)
    cluster.settle()
    await change_image(cluster, "nginx:2")
    await controller.sync(KEY)  # creates the new RS (at 0: no surge)
    cluster.settle()
    await controller.sync(KEY)
    cluster.settle()
    old = cluster.get(RS, old.metadata.name)  # type: ignore[assignment]
    # Only 2 old pods are available (fewer than the 3 that must stay), so a plain
    # scale-down could never start; an unavailable old pod goes first instead,
    # within the budget 4 total - 3 min available - 0 new unavailable = 1.
    assert old is not None and old.spec.replicas == 3


async def test_recreate_scales_down_then_waits_for_old_pods() -> None:
    cluster, controller = await start(replicas=2, strategy="Recreate")
    for _ in range(2):
        await step(cluster, controller)
    (old,) = rss(cluster)
    pod = await cluster.add(make_pod("old-pod", owner=old, node="n"))
    await change_image(cluster, "nginx:2")
    await step(cluster, controller)
    (old,) = rss(cluster)  # no new ReplicaSet while old pods run
    assert old.spec.replicas == 0
    await step(cluster, controller)
    assert len(rss(cluster)) == 1
    await cluster.remove(core_pb2.Pod, pod.metadata.name, "default")
    await step(cluster, controller)
    old, new = rss(cluster)
    assert (old.spec.replicas, new.spec.replicas) == (0, 2)


# -- scaling ----------------------------------------------------------------------------------


async def test_proportional_scaling_during_a_rollout() -> None:
    """Kubernetes' documented example: 10 replicas, maxSurge 3, a stuck rollout with
    8 old and 5 new replicas; scaling to 15 adds 3 to the old and 2 to the new."""
    cluster = FakeCluster()
    controller = DeploymentController(cluster.ctx)
    d = await cluster.add(make_deployment(replicas=10, max_surge=3, max_unavailable=2,
                                          image="nginx:2"))
    ann = {"deployment.kubernetes.io/desired-replicas": "10",
           "deployment.kubernetes.io/max-replicas": "13"}
    old = make_rs("web-old", replicas=8, owner=d, image="nginx:1",
                  annotations={**ann, "deployment.kubernetes.io/revision": "1"})
    new = make_rs("web-new", replicas=5, owner=d, image="nginx:2",
                  annotations={**ann, "deployment.kubernetes.io/revision": "2"})
    await cluster.add(old)
    await cluster.add(new)
    await report(cluster, available=False)
    d = copy_object(deployment(cluster))
    d.spec.replicas = 15
    await cluster.client.update(d)
    cluster.settle()
    await controller.sync(KEY)
    sizes = {r.metadata.name: r.spec.replicas for r in cluster.objects(RS)}
    assert sizes == {"web-old": 11, "web-new": 7}
    for r in cluster.objects(RS):
        assert r.metadata.annotations["deployment.kubernetes.io/desired-replicas"] == "15"
        assert r.metadata.annotations["deployment.kubernetes.io/max-replicas"] == "18"


async def test_scaling_a_settled_deployment_resizes_its_only_replica_set() -> None:
    cluster, controller = await start(replicas=3)
    for _ in range(2):
        await step(cluster, controller)
    d = copy_object(deployment(cluster))
    d.spec.replicas = 7
    await cluster.client.update(d)
    cluster.settle()
    await controller.sync(KEY)
    (rs,) = rss(cluster)
    assert rs.spec.replicas == 7
    assert "Scaled up replica set " + rs.metadata.name + " from 3 to 7" in [
        r[3] for r in cluster.recorder.recorded]


# -- revisions, rollback, history -----------------------------------------------------------


async def test_rollback_reuses_the_old_replica_set_with_a_new_revision() -> None:
    cluster, controller = await start(replicas=2, max_surge=1, max_unavailable=0)
    for _ in range(3):
        await step(cluster, controller)
    v1_template = copy_object(rss(cluster)[0].spec.template)
    await change_image(cluster, "nginx:2")
    for _ in range(8):
        await step(cluster, controller)
    # kubectl rollout undo: the old template (hash label removed) goes back in.
    d = copy_object(deployment(cluster))
    d.spec.template.CopyFrom(v1_template)
    del d.spec.template.metadata.labels["pod-template-hash"]
    await cluster.client.update(d)
    cluster.settle()
    for _ in range(8):
        await step(cluster, controller)
    v2, v1 = rss(cluster)  # by revision: v1 is now revision 3
    assert v1.spec.template.spec.containers[0].image == "nginx:1"
    assert (v1.spec.replicas, v2.spec.replicas) == (2, 0)
    assert v1.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    assert v1.metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert deployment(cluster).metadata.annotations["deployment.kubernetes.io/revision"] == "3"


async def test_revision_history_limit_deletes_oldest_empty_replica_sets() -> None:
    cluster = FakeCluster()
    controller = DeploymentController(cluster.ctx)
    d = await cluster.add(make_deployment(replicas=1, history=2, image="nginx:9"))
    for rev in range(1, 6):
        await cluster.add(make_rs(f"web-r{rev}", replicas=0, owner=d, image=f"nginx:{rev}",
                                  annotations={"deployment.kubernetes.io/revision": str(rev)}))
    for _ in range(4):
        await step(cluster, controller)
    names = sorted(r.metadata.name for r in cluster.objects(RS) if r.spec.replicas == 0)
    assert names == ["web-r4", "web-r5"]


async def test_restart_annotation_rolls_out_a_new_replica_set() -> None:
    cluster, controller = await start(replicas=1)
    for _ in range(2):
        await step(cluster, controller)
    d = copy_object(deployment(cluster))
    d.spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"] = \
        "2025-01-01T00:00:00Z"
    await cluster.client.update(d)
    cluster.settle()
    for _ in range(6):
        await step(cluster, controller)
    old, new = rss(cluster)
    assert (old.spec.replicas, new.spec.replicas) == (0, 1)
    assert "kubectl.kubernetes.io/restartedAt" in new.spec.template.metadata.annotations


# -- pause, deadline, collisions ------------------------------------------------------------


async def test_pause_stops_rollouts_and_resume_continues() -> None:
    cluster, controller = await start(replicas=2)
    for _ in range(2):
        await step(cluster, controller)
    d = copy_object(deployment(cluster))
    d.spec.paused = True
    await cluster.client.update(d)
    cluster.settle()
    await change_image(cluster, "nginx:2")
    await step(cluster, controller)
    assert len(rss(cluster)) == 1
    assert cond(deployment(cluster), "Progressing") == ("Unknown", "DeploymentPaused")
    d = copy_object(deployment(cluster))
    d.spec.paused = False
    await cluster.client.update(d)
    cluster.settle()
    await step(cluster, controller)
    assert len(rss(cluster)) == 2
    for _ in range(6):
        await step(cluster, controller)
    assert cond(deployment(cluster), "Progressing") == ("True", "NewReplicaSetAvailable")


async def test_progress_deadline_exceeded() -> None:
    cluster, controller = await start(replicas=2, progress_deadline=60)
    for _ in range(3):
        await step(cluster, controller, available=False)
    d = deployment(cluster)
    assert cond(d, "Progressing")[0] == "True"
    assert controller.queue.waiting == 1  # re-checked when the deadline runs out
    cluster.clock.advance(120)
    await step(cluster, controller, available=False)
    assert cond(deployment(cluster), "Progressing") == ("False", "ProgressDeadlineExceeded")


async def test_hash_collision_bumps_collision_count() -> None:
    cluster = FakeCluster()
    controller = DeploymentController(cluster.ctx)
    d = await cluster.add(make_deployment(replicas=1))
    squatter = make_rs(f"web-{compute_hash(d.spec.template)}", replicas=0, image="other:1")
    await cluster.add(squatter)
    with pytest.raises(APIError):
        await controller.sync(KEY)
    cluster.settle()
    assert deployment(cluster).status.collisionCount == 1
    await controller.sync(KEY)
    cluster.settle()
    names = {r.metadata.name for r in cluster.objects(RS)}
    assert f"web-{compute_hash(d.spec.template, 1)}" in names


async def test_adopts_matching_orphan_replica_set() -> None:
    cluster = FakeCluster()
    controller = DeploymentController(cluster.ctx)
    d = await cluster.add(make_deployment(replicas=1))
    orphan = make_rs("web-orphan", replicas=1)
    await cluster.add(orphan)
    await controller.sync(KEY)
    got = cluster.get(RS, "web-orphan")
    assert got is not None and got.metadata.ownerReferences[0].uid == d.metadata.uid
    assert len(cluster.objects(RS)) == 1  # its template equals the Deployment's


async def test_missing_deployment_is_a_no_op() -> None:
    cluster = FakeCluster()
    controller = DeploymentController(cluster.ctx)
    await controller.sync(KEY)
    assert cluster.writes() == []


# -- pure helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(("surge", "unavailable", "desired", "want"), [
    ("25%", "25%", 10, (3, 2)),
    ("25%", "25%", 1, (1, 0)),
    (0, 0, 5, (0, 1)),          # both zero would never progress
    ("0%", "0%", 5, (0, 1)),
    (2, "50%", 3, (2, 1)),
], ids=["quarter", "one-replica", "zero-zero", "zero-percent", "mixed"])
def test_resolve_fenceposts(surge: int | str, unavailable: int | str, desired: int,
                            want: tuple[int, int]) -> None:
    assert resolve_fenceposts(from_json(surge), from_json(unavailable), desired) == want


def test_new_rs_new_replicas() -> None:
    d = make_deployment(replicas=10, max_surge=3)
    old = make_rs("old", replicas=10)
    new = make_rs("new", replicas=0)
    assert new_rs_new_replicas(d, [old, new], new) == 3
    new.spec.replicas = 9
    old.spec.replicas = 2
    assert new_rs_new_replicas(d, [old, new], new) == 10
    recreate = make_deployment(replicas=4, strategy="Recreate")
    assert new_rs_new_replicas(recreate, [old, new], new) == 4


def test_get_proportion_rounds_and_caps() -> None:
    d = make_deployment(replicas=15, max_surge=3)
    rs = make_rs("a", replicas=8,
                 annotations={"deployment.kubernetes.io/max-replicas": "13"})
    assert get_proportion(rs, d, 5, 0) == 3
    assert get_proportion(rs, d, 5, 4) == 1   # capped by what is left to hand out
    assert get_proportion(rs, d, 0, 0) == 0


def test_equal_ignore_hash() -> None:
    a = make_rs().spec.template
    b = copy_object(a)
    b.metadata.labels["pod-template-hash"] = "abc"
    assert equal_ignore_hash(a, b)
    b.metadata.creationTimestamp.SetInParent()  # {} from a client: the same as absent
    b.spec.containers[0].resources.SetInParent()
    assert equal_ignore_hash(a, b)
    b.spec.containers[0].image = "other"
    assert not equal_ignore_hash(a, b)


def test_revision_history_annotation_grows_on_rollback() -> None:
    d = make_deployment()
    rs = make_rs(annotations={"deployment.kubernetes.io/revision": "2",
                              "deployment.kubernetes.io/revision-history": "1"})
    assert set_new_replica_set_annotations(d, rs, 5, exists=True)
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "5"
    assert rs.metadata.annotations["deployment.kubernetes.io/revision-history"] == "1,2"
    assert not set_new_replica_set_annotations(d, rs, 5, exists=True)


def test_calculate_status_counts_from_replica_sets() -> None:
    d = make_deployment(replicas=4)
    a = make_rs("a", replicas=3)
    a.status.replicas, a.status.readyReplicas, a.status.availableReplicas = 3, 3, 2
    b = make_rs("b", replicas=1)
    b.status.replicas, b.status.readyReplicas, b.status.availableReplicas = 1, 0, 0
    now = FakeCluster().clock.now()
    s = calculate_status([a, b], b, d, now)
    assert (s.replicas, s.updatedReplicas, s.readyReplicas, s.availableReplicas,
            s.unavailableReplicas) == (4, 1, 3, 2, 2)
    assert [(c.type, c.status) for c in s.conditions] == [("Available", "False")]
    assert now - timedelta(seconds=1) < now  # the clock is usable for conditions


def test_owned_by_builder_sets_controller_flags() -> None:
    ref = owned_by(make_rs(), "apps/v1", "ReplicaSet")
    assert ref.controller and ref.blockOwnerDeletion
