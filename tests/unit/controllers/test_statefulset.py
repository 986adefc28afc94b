"""StatefulSet: ordered and parallel pods, stable identity, claims, partitioned rollout."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.statefulset import StatefulSetController
from pilothouse.services.controllers.statefulset_utils import (
    POD_INDEX_LABEL,
    POD_NAME_LABEL,
    ordinal_of,
    uses_current_revision,
)
from tests.unit.controllers.fake_cluster import FakeCluster

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def make_sts(replicas: int = 3, *, parallel: bool = False, image: str = "nginx:1",
             partition: int = 0, claims: bool = False, when_scaled: str = "Retain",
             when_deleted: str = "Retain") -> apps_pb2.StatefulSet:
    sts = apps_pb2.StatefulSet()
    sts.metadata.name = "web"
    sts.metadata.namespace = "default"
    sts.spec.replicas = replicas
    sts.spec.serviceName = "nginx"
    sts.spec.podManagementPolicy = "Parallel" if parallel else "OrderedReady"
    sts.spec.selector.matchLabels["app"] = "nginx"
    sts.spec.template.metadata.labels["app"] = "nginx"
    sts.spec.template.spec.containers.add(name="nginx", image=image)
    sts.spec.updateStrategy.type = "RollingUpdate"
    sts.spec.updateStrategy.rollingUpdate.partition = partition
    sts.spec.persistentVolumeClaimRetentionPolicy.whenScaled = when_scaled
    sts.spec.persistentVolumeClaimRetentionPolicy.whenDeleted = when_deleted
    if claims:
        claim = sts.spec.volumeClaimTemplates.add()
        claim.metadata.name = "www"
        claim.spec.accessModes.append("ReadWriteOnce")
        claim.spec.resources.requests["storage"].string = "1Gi"
        sts.spec.template.spec.containers[0].volumeMounts.add(name="www", mountPath="/data")
    sts.spec.revisionHistoryLimit = 10
    return sts


@pytest.mark.parametrize(("pod", "expected"), [
    ("web-0", 0), ("web-12", 12), ("web", None), ("webx-1", None), ("web-a", None),
    ("web-web-1", None),
])
def test_ordinal_of(pod: str, expected: int | None) -> None:
    assert ordinal_of("web", pod) == expected


def test_partition_picks_revision() -> None:
    sts = make_sts(partition=2)
    assert [uses_current_revision(sts, o) for o in range(4)] == [True, True, False, False]
    sts.spec.updateStrategy.type = "OnDelete"
    assert not uses_current_revision(sts, 0)


async def setup(sts: apps_pb2.StatefulSet) -> tuple[FakeCluster, StatefulSetController]:
    cluster = FakeCluster(start=T0)
    controller = StatefulSetController(cluster.ctx)
    await cluster.add(sts)
    return cluster, controller


async def step(cluster: FakeCluster, controller: StatefulSetController) -> None:
    await controller.sync("default/web")
    cluster.settle()


def names(cluster: FakeCluster) -> list[str]:
    return sorted(p.metadata.name for p in cluster.objects(core_pb2.Pod))


async def run(cluster: FakeCluster, only: str = "") -> None:
    """Play kubelet: every pod (or one) Running and Ready."""
    for pod in cluster.objects(core_pb2.Pod):
        if pod.status.phase == "Running" or (only and pod.metadata.name != only):
            continue
        pod.status.phase = "Running"
        cond = pod.status.conditions.add(type="Ready", status="True")
        cond.lastTransitionTime.seconds = int(T0.timestamp())
        await cluster.put(pod)


def sts_of(cluster: FakeCluster) -> apps_pb2.StatefulSet:
    sts = cluster.get(apps_pb2.StatefulSet, "web")
    assert sts is not None
    return sts


async def test_ordered_ready_creation_and_identity() -> None:
    cluster, controller = await setup(make_sts(claims=True, when_deleted="Delete"))
    await step(cluster, controller)
    assert names(cluster) == ["web-0"]
    await step(cluster, controller)
    assert names(cluster) == ["web-0"]  # web-0 not ready yet: wait
    await run(cluster)
    await step(cluster, controller)
    assert names(cluster) == ["web-0", "web-1"]
    await run(cluster)
    await step(cluster, controller)
    await run(cluster)
    await step(cluster, controller)
    assert names(cluster) == ["web-0", "web-1", "web-2"]
    pod = cluster.get(core_pb2.Pod, "web-1")
    assert pod is not None
    assert pod.metadata.labels[POD_NAME_LABEL] == "web-1"
    assert pod.metadata.labels[POD_INDEX_LABEL] == "1"
    assert (pod.spec.hostname, pod.spec.subdomain) == ("web-1", "nginx")
    [volume] = pod.spec.volumes
    source = volume.volumeSource.persistentVolumeClaim
    assert (volume.name, source.claimName) == ("www", "www-web-1")
    claims = cluster.objects(core_pb2.PersistentVolumeClaim)
    assert [c.metadata.name for c in claims] == ["www-web-0", "www-web-1", "www-web-2"]
    assert claims[0].metadata.labels["app"] == "nginx"
    assert claims[0].metadata.ownerReferences[0].kind == "StatefulSet"
    status = sts_of(cluster).status
    assert (status.replicas, status.readyReplicas, status.currentReplicas,
            status.updatedReplicas) == (3, 3, 3, 3)
    assert status.currentRevision == status.updateRevision
    assert status.currentRevision.startswith("web-")


async def test_parallel_creation_and_scale_down() -> None:
    cluster, controller = await setup(make_sts(parallel=True))
    await step(cluster, controller)
    assert names(cluster) == ["web-0", "web-1", "web-2"]
    sts = sts_of(cluster)
    sts.spec.replicas = 1
    await cluster.put(sts)
    await step(cluster, controller)
    assert names(cluster) == ["web-0"]


async def test_ordered_scale_down_one_at_a_time_highest_first() -> None:
    cluster, controller = await setup(make_sts(parallel=True))
    await step(cluster, controller)
    await run(cluster)
    sts = sts_of(cluster)
    sts.spec.replicas = 1
    sts.spec.podManagementPolicy = "OrderedReady"
    await cluster.put(sts)
    await step(cluster, controller)
    assert names(cluster) == ["web-0", "web-1"]
    await step(cluster, controller)
    assert names(cluster) == ["web-0"]


async def test_scale_down_claim_retention() -> None:
    cluster, controller = await setup(make_sts(replicas=2, parallel=True, claims=True,
                                               when_scaled="Delete"))
    await step(cluster, controller)
    sts = sts_of(cluster)
    sts.spec.replicas = 1
    await cluster.put(sts)
    await step(cluster, controller)
    claim = cluster.get(core_pb2.PersistentVolumeClaim, "www-web-1")
    assert claim is not None
    assert [r.kind for r in claim.metadata.ownerReferences] == ["Pod"]
    kept = cluster.get(core_pb2.PersistentVolumeClaim, "www-web-0")
    assert kept is not None and not kept.metadata.ownerReferences


async def test_failed_pod_recreated_same_name() -> None:
    cluster, controller = await setup(make_sts(replicas=1))
    await step(cluster, controller)
    pod = cluster.get(core_pb2.Pod, "web-0")
    assert pod is not None
    pod.status.phase = "Failed"
    await cluster.put(pod)
    await step(cluster, controller)
    await step(cluster, controller)
    again = cluster.get(core_pb2.Pod, "web-0")
    assert again is not None and again.metadata.uid != pod.metadata.uid


async def roll(cluster: FakeCluster, controller: StatefulSetController, rounds: int = 12) -> None:
    for _ in range(rounds):
        await step(cluster, controller)
        await run(cluster)


async def test_rolling_update_with_partition() -> None:
    cluster, controller = await setup(make_sts(partition=1))
    await roll(cluster, controller, 4)
    old_rev = sts_of(cluster).status.currentRevision
    sts = sts_of(cluster)
    sts.spec.template.spec.containers[0].image = "nginx:2"
    await cluster.put(sts)
    # One at a time from the highest ordinal; ordinal 0 is below the partition.
    await step(cluster, controller)
    assert names(cluster) == ["web-0", "web-1"]
    await roll(cluster, controller, 6)
    images = {p.metadata.name: p.spec.containers[0].image for p in cluster.objects(core_pb2.Pod)}
    assert images == {"web-0": "nginx:1", "web-1": "nginx:2", "web-2": "nginx:2"}
    status = sts_of(cluster).status
    assert status.currentRevision == old_rev != status.updateRevision
    assert (status.updatedReplicas, status.currentReplicas) == (2, 1)
    # Deleting web-0 recreates it from the current (old) revision.
    await cluster.remove(core_pb2.Pod, "web-0", "default")
    await roll(cluster, controller, 2)
    pod = cluster.get(core_pb2.Pod, "web-0")
    assert pod is not None and pod.spec.containers[0].image == "nginx:1"
    # Partition 0 finishes the rollout and moves currentRevision.
    sts = sts_of(cluster)
    sts.spec.updateStrategy.rollingUpdate.partition = 0
    await cluster.put(sts)
    await roll(cluster, controller, 6)
    images = {p.metadata.name: p.spec.containers[0].image for p in cluster.objects(core_pb2.Pod)}
    assert set(images.values()) == {"nginx:2"}
    status = sts_of(cluster).status
    assert status.currentRevision == status.updateRevision
    assert "SuccessfulDelete" in cluster.recorder.reasons()
