"""Garbage collector: ownership from the caches' indices, sync(key) per object."""

from __future__ import annotations

from pilothouse.client import APIError
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.garbagecollector import GarbageCollector, gc_key
from tests.unit.controllers.fake_cluster import FakeCluster
from tests.unit.controllers.workload_builders import make_deployment, make_pod, make_rs, owned_by

RS = apps_pb2.ReplicaSet


def key(cluster: FakeCluster, obj: object) -> str:
    return gc_key(cluster.client.kind_of(obj), obj)  # type: ignore[arg-type]


async def setup() -> tuple[FakeCluster, GarbageCollector]:
    cluster = FakeCluster()
    return cluster, GarbageCollector(cluster.ctx)


def names(cluster: FakeCluster, cls: type) -> list[str]:
    return sorted(o.metadata.name for o in cluster.objects(cls))


async def test_dependent_of_a_deleted_owner_is_deleted_in_the_background() -> None:
    cluster, gc = await setup()
    rs = await cluster.add(make_rs())
    pod = await cluster.add(make_pod("p", owner=rs))
    await cluster.remove(RS, "web", "default")
    assert key(cluster, pod) in [await gc.queue.get() for _ in range(len(gc.queue))]
    await gc.sync(key(cluster, pod))
    assert names(cluster, core_pb2.Pod) == []


async def test_owner_recreated_under_the_same_name_does_not_save_the_dependent() -> None:
    cluster, gc = await setup()
    rs = await cluster.add(make_rs())
    pod = await cluster.add(make_pod("p", owner=rs))
    await cluster.remove(RS, "web", "default")
    await cluster.add(make_rs())  # same name, new UID
    await gc.sync(key(cluster, pod))
    assert names(cluster, core_pb2.Pod) == []


async def test_owner_missing_from_the_cache_is_checked_live() -> None:
    cluster, gc = await setup()
    d = await cluster.client.create(make_deployment())
    rs = await cluster.add(make_rs(owner=d))
    gc.informers["deployments.apps"].indexer.remove("default/web")  # the cache lags
    await gc.sync(key(cluster, rs))
    assert names(cluster, RS) == ["web"]
    assert any(a.verb == "get" and a.resource == "deployments" for a in cluster.fake.actions)


async def test_one_solid_owner_keeps_the_dependent_and_drops_the_dangling_ref() -> None:
    cluster, gc = await setup()
    alive = await cluster.add(make_rs("alive"))
    gone = await cluster.add(make_rs("gone"))
    pod = make_pod("p")
    pod.metadata.ownerReferences.append(owned_by(alive, "apps/v1", "ReplicaSet",
                                                 controller=False))
    pod.metadata.ownerReferences.append(owned_by(gone, "apps/v1", "ReplicaSet",
                                                 controller=False))
    pod = await cluster.add(pod)
    await cluster.remove(RS, "gone", "default")
    await gc.sync(key(cluster, pod))
    (left,) = cluster.objects(core_pb2.Pod)
    assert [r.name for r in left.metadata.ownerReferences] == ["alive"]


async def test_foreground_deletion_deletes_blocking_dependents_then_the_finalizer() -> None:
    cluster, gc = await setup()
    rs = make_rs()
    rs.metadata.finalizers.append("foregroundDeletion")
    rs.metadata.deletionTimestamp.seconds = 100
    rs = await cluster.add(rs)
    blocking = await cluster.add(make_pod("blocking", owner=rs))
    loose = make_pod("loose")
    loose.metadata.ownerReferences.append(owned_by(rs, "apps/v1", "ReplicaSet",
                                                   controller=False, block=False))
    loose = await cluster.add(loose)
    await gc.sync(key(cluster, rs))
    # Not yet: a blocking dependent exists; both dependents are queued.
    assert list(cluster.get(RS, "web").metadata.finalizers) == ["foregroundDeletion"]  # type: ignore[union-attr]
    queued = {await gc.queue.get() for _ in range(len(gc.queue))}
    assert {key(cluster, blocking), key(cluster, loose)} <= queued
    await gc.sync(key(cluster, blocking))
    await gc.sync(key(cluster, loose))
    cluster.settle()
    assert names(cluster, core_pb2.Pod) == []
    await gc.sync(key(cluster, rs))
    assert list(cluster.get(RS, "web").metadata.finalizers) == []  # type: ignore[union-attr]


async def test_foreground_cascades_to_dependents_with_dependents() -> None:
    cluster, gc = await setup()
    d = make_deployment()
    d.metadata.finalizers.append("foregroundDeletion")
    d.metadata.deletionTimestamp.seconds = 100
    d = await cluster.add(d)
    rs = await cluster.add(make_rs(owner=d))
    await cluster.add(make_pod("p", owner=rs))
    calls: list[str] = []
    real_delete = cluster.client.delete

    async def spy(cls: type, name: str, **kwargs: object) -> object:
        calls.append(f"{name}:{kwargs.get('propagation_policy')}")
        return await real_delete(cls, name, **kwargs)  # type: ignore[arg-type]

    cluster.client.delete = spy  # type: ignore[method-assign,assignment]
    await gc.sync(key(cluster, rs))
    assert calls == ["web:Foreground"]  # the RS has pods: it goes in the foreground too


async def test_orphan_deletion_removes_references_then_the_finalizer() -> None:
    cluster, gc = await setup()
    rs = make_rs()
    rs.metadata.finalizers.append("orphan")
    rs.metadata.deletionTimestamp.seconds = 100
    rs = await cluster.add(rs)
    other = make_deployment("other")
    other.metadata.uid = "other-uid"
    pod = make_pod("p", owner=rs)
    pod.metadata.ownerReferences.append(owned_by(other, "apps/v1", "Deployment",
                                                 controller=False))
    await cluster.add(pod)
    await cluster.add(make_pod("q", owner=rs))
    await gc.sync(key(cluster, rs))
    by_name = {p.metadata.name: p for p in cluster.objects(core_pb2.Pod)}
    assert [r.uid for r in by_name["p"].metadata.ownerReferences] == ["other-uid"]
    assert list(by_name["q"].metadata.ownerReferences) == []
    assert list(cluster.get(RS, "web").metadata.finalizers) == []  # type: ignore[union-attr]


async def test_dependent_with_its_own_orphan_finalizer_is_deleted_with_orphan() -> None:
    cluster, gc = await setup()
    d = await cluster.add(make_deployment())
    rs = make_rs(owner=d)
    rs.metadata.finalizers.append("orphan")
    rs = await cluster.add(rs)
    await cluster.remove(apps_pb2.Deployment, "web", "default")
    seen: list[object] = []
    real_delete = cluster.client.delete

    async def spy(cls: type, name: str, **kwargs: object) -> object:
        seen.append(kwargs.get("propagation_policy"))
        return await real_delete(cls, name, **kwargs)  # type: ignore[arg-type]

    cluster.client.delete = spy  # type: ignore[method-assign,assignment]
    await gc.sync(key(cluster, rs))
    assert seen == ["Orphan"]


async def test_unknown_owner_kind_is_never_a_reason_to_delete() -> None:
    cluster, gc = await setup()
    pod = make_pod("p")
    pod.metadata.ownerReferences.add(apiVersion="example.com/v1", kind="Widget", name="w",
                                     uid="w-uid", controller=True)
    pod = await cluster.add(pod)
    await gc.sync(key(cluster, pod))
    assert names(cluster, core_pb2.Pod) == ["p"]


async def test_healthy_graph_queues_nothing() -> None:
    cluster, gc = await setup()
    d = await cluster.add(make_deployment())
    rs = await cluster.add(make_rs(owner=d))
    await cluster.add(make_pod("p", owner=rs))
    assert len(gc.queue) == 0


async def test_delete_conflict_means_a_new_object_took_the_name() -> None:
    cluster, gc = await setup()
    rs = await cluster.add(make_rs())
    pod = await cluster.add(make_pod("p", owner=rs))
    await cluster.remove(RS, "web", "default")
    cluster.fake.fail_next("delete", APIError(409, "Conflict", "Precondition failed: UID"))
    await gc.sync(key(cluster, pod))  # no exception: nothing of ours to delete


async def test_bad_key_is_logged_not_retried() -> None:
    _, gc = await setup()
    await gc.sync("nonsense")
    await gc.sync("widgets.example.com:default/x")
