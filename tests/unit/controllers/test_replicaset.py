"""ReplicaSet controller: seed the caches, call sync(key), look at what was written."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from pilothouse.client import APIError
from pilothouse.client.clock import AsyncFakeClock
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.replicaset import ReplicaSetController
from pilothouse.services.controllers.replicaset_utils import (
    ControllerExpectations,
    adopt_patch,
    calculate_status,
    plan_claims,
    pod_from_template,
    pods_to_delete,
    release_patch,
    slow_start_batch,
)
from tests.unit.controllers.fake_cluster import FakeCluster
from tests.unit.controllers.workload_builders import make_pod, make_rs, owned_by

KEY = "default/web"


async def cluster_with_rs(**rs_args: Any) -> tuple[FakeCluster, ReplicaSetController,
                                                   apps_pb2.ReplicaSet]:
    cluster = FakeCluster()
    controller = ReplicaSetController(cluster.ctx)
    rs = await cluster.add(make_rs(**rs_args))
    return cluster, controller, rs


def pods(cluster: FakeCluster) -> list[core_pb2.Pod]:
    return cluster.objects(core_pb2.Pod)


# -- creating -------------------------------------------------------------------------------


async def test_creates_missing_pods_from_the_template() -> None:
    cluster, controller, rs = await cluster_with_rs(replicas=3)
    await controller.sync(KEY)
    created = pods(cluster)
    assert len(created) == 3
    for pod in created:
        assert pod.metadata.name.startswith("web-")
        assert dict(pod.metadata.labels) == {"app": "web"}
        (ref,) = pod.metadata.ownerReferences
        assert (ref.kind, ref.name, ref.uid, ref.controller, ref.blockOwnerDeletion) == (
            "ReplicaSet", "web", rs.metadata.uid, True, True)
        assert pod.spec.containers[0].image == "nginx:1"
    assert cluster.recorder.reasons() == ["SuccessfulCreate"] * 3


async def test_expectations_stop_a_second_round_of_creations_until_observed() -> None:
    cluster, controller, _ = await cluster_with_rs(replicas=3)
    await controller.sync(KEY)
    assert controller.expectations.pending(KEY) == (3, 0)
    await controller.sync(KEY)  # the cache has not seen the 3 pods yet
    assert len(pods(cluster)) == 3
    cluster.settle()  # the informer delivers the adds
    assert controller.expectations.pending(KEY) == (0, 0)
    await controller.sync(KEY)
    assert len(pods(cluster)) == 3
    assert len(cluster.writes("create", "pods")) == 3


async def test_slow_start_stops_after_the_first_failing_batch() -> None:
    cluster, controller, _ = await cluster_with_rs(replicas=10)
    calls = 0
    real_create = cluster.client.create

    async def flaky_create(obj: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise APIError(403, "Forbidden", 'pods "web-x" is forbidden: exceeded quota')
        return await real_create(obj, **kwargs)

    cluster.client.create = flaky_create  # type: ignore[method-assign]
    with pytest.raises(APIError):
        await controller.sync(KEY)
    # Batch 1 (1 pod) succeeded, batch 2 (2 pods) failed: 3 requests, not 10.
    assert calls == 3
    assert len(pods(cluster)) == 1
    # Only the successful creation is still expected.
    assert controller.expectations.pending(KEY) == (1, 0)
    rs = cluster.get(apps_pb2.ReplicaSet, "web")
    assert rs is not None
    (cond,) = rs.status.conditions
    assert (cond.type, cond.status, cond.reason) == ("ReplicaFailure", "True", "FailedCreate")
    assert "exceeded quota" in cond.message
    assert cluster.recorder.reasons().count("FailedCreate") == 2


async def test_replica_failure_condition_cleared_after_success() -> None:
    cluster, controller, _ = await cluster_with_rs(replicas=1)
    cluster.fake.fail_next("create", APIError(500, "InternalError", "boom"), "pods")
    with pytest.raises(APIError):
        await controller.sync(KEY)
    cluster.settle()
    await controller.sync(KEY)
    cluster.settle()
    rs = cluster.get(apps_pb2.ReplicaSet, "web")
    assert rs is not None and len(pods(cluster)) == 1
    assert [c.type for c in rs.status.conditions] == []


async def test_burst_caps_creations_per_sync() -> None:
    cluster = FakeCluster()
    controller = ReplicaSetController(cluster.ctx, burst_replicas=4)
    await cluster.add(make_rs(replicas=10))
    await controller.sync(KEY)
    assert len(pods(cluster)) == 4


# -- deleting -------------------------------------------------------------------------------


async def test_deletes_the_least_valuable_pods_first() -> None:
    cluster, controller, rs = await cluster_with_rs(replicas=2)
    now = cluster.clock.now()
    for pod in [
        make_pod("ready-old", owner=rs, node="n1", ready_since=now - timedelta(hours=5)),
        make_pod("unscheduled", owner=rs, node="", phase="Pending", ready=False),
        make_pod("pending", owner=rs, node="n1", phase="Pending", ready=False),
        make_pod("not-ready", owner=rs, node="n2", ready=False),
        make_pod("ready-new", owner=rs, node="n2", ready_since=now - timedelta(seconds=5)),
    ]:
        await cluster.add(pod)
    await controller.sync(KEY)
    left = sorted(p.metadata.name for p in pods(cluster))
    assert left == ["ready-new", "ready-old"]
    assert sorted(cluster.recorder.reasons()) == ["SuccessfulDelete"] * 3
    assert controller.expectations.pending(KEY) == (0, 3)
    await controller.sync(KEY)  # deletions not yet observed: nothing more happens
    assert len(cluster.writes("delete", "pods")) == 3
    cluster.settle()
    assert controller.expectations.pending(KEY) == (0, 0)


async def test_graceful_deletion_counts_as_observed_and_is_replaced() -> None:
    cluster, controller, rs = await cluster_with_rs(replicas=2)
    await cluster.add(make_pod("a", owner=rs, node="n1"))
    await cluster.add(make_pod("b", owner=rs, node="n1"))
    # The kubelet is stopping "b": it has a deletionTimestamp but is still stored.
    b = cluster.get(core_pb2.Pod, "b")
    assert b is not None
    b.metadata.deletionTimestamp.seconds = 100
    await cluster.put(b)
    await controller.sync(KEY)
    names = sorted(p.metadata.name for p in pods(cluster))
    assert len(names) == 3 and "a" in names and "b" in names  # one replacement created


# -- claiming -------------------------------------------------------------------------------


async def test_adopts_orphans_releases_strays_and_ignores_others() -> None:
    cluster, controller, rs = await cluster_with_rs(replicas=3)
    other = await cluster.add(make_rs("other", replicas=0, labels={"app": "web"}))
    await cluster.add(make_pod("orphan", owner=None))
    await cluster.add(make_pod("stray", owner=rs, labels={"app": "api"}))
    await cluster.add(make_pod("others", owner=other))
    await cluster.add(make_pod("mine", owner=rs))
    await cluster.add(make_pod("done", owner=None, phase="Succeeded"))
    await controller.sync(KEY)
    by_name = {p.metadata.name: p for p in pods(cluster)}
    assert [r.uid for r in by_name["orphan"].metadata.ownerReferences] == [rs.metadata.uid]
    assert list(by_name["stray"].metadata.ownerReferences) == []
    assert [r.uid for r in by_name["others"].metadata.ownerReferences] == [other.metadata.uid]
    assert list(by_name["done"].metadata.ownerReferences) == []
    # mine + orphan = 2 of 3: one created.
    created = [n for n in by_name if n.startswith("web-")]
    assert len(created) == 1


async def test_no_adoption_when_the_replicaset_is_being_deleted() -> None:
    cluster = FakeCluster()
    controller = ReplicaSetController(cluster.ctx)
    rs = make_rs(replicas=3)
    rs.metadata.deletionTimestamp.seconds = 10
    rs.metadata.finalizers.append("foregroundDeletion")
    await cluster.add(rs)
    await cluster.add(make_pod("orphan", owner=None))
    before = len(cluster.writes())
    await controller.sync(KEY)
    assert [p.metadata.name for p in pods(cluster)] == ["orphan"]
    assert list(pods(cluster)[0].metadata.ownerReferences) == []
    assert len(cluster.writes()) - before <= 1  # at most the status


async def test_missing_replicaset_is_a_no_op() -> None:
    cluster = FakeCluster()
    controller = ReplicaSetController(cluster.ctx)
    controller.expectations.expect_creations(KEY, 2)
    await controller.sync(KEY)
    assert cluster.writes() == []
    assert controller.expectations.pending(KEY) == (0, 0)


async def test_invalid_selector_is_not_retried() -> None:
    cluster = FakeCluster()
    controller = ReplicaSetController(cluster.ctx)
    rs = make_rs(replicas=1)
    rs.spec.selector.matchLabels["bad key!"] = "x"
    await cluster.add(rs)
    await controller.sync(KEY)  # logs, does not raise
    assert cluster.writes("create", "pods") == []


# -- status ---------------------------------------------------------------------------------


async def test_status_counts_ready_available_and_labels() -> None:
    cluster, controller, rs = await cluster_with_rs(replicas=3, min_ready=10)
    now = cluster.clock.now()
    await cluster.add(make_pod("long-ready", owner=rs, node="n", ready_since=now -
                               timedelta(seconds=60)))
    await cluster.add(make_pod("just-ready", owner=rs, node="n", ready_since=now -
                               timedelta(seconds=2)))
    extra = make_pod("not-ready", owner=rs, node="n", ready=False)
    extra.metadata.labels["extra"] = "x"
    await cluster.add(extra)
    await controller.sync(KEY)
    got = cluster.get(apps_pb2.ReplicaSet, "web")
    assert got is not None
    s = got.status
    assert (s.replicas, s.fullyLabeledReplicas, s.readyReplicas, s.availableReplicas) == (
        3, 3, 2, 1)
    assert s.observedGeneration == got.metadata.generation


async def test_status_is_not_rewritten_when_unchanged() -> None:
    cluster, controller, rs = await cluster_with_rs(replicas=1)
    await cluster.add(make_pod("p", owner=rs, node="n"))
    await controller.sync(KEY)
    cluster.settle()
    writes = len(cluster.writes())
    await controller.sync(KEY)
    assert len(cluster.writes()) == writes


async def test_min_ready_seconds_requeues_when_ready_but_not_available() -> None:
    cluster, controller, rs = await cluster_with_rs(replicas=1, min_ready=30)
    await cluster.add(make_pod("p", owner=rs, node="n", ready_since=cluster.clock.now()))
    await controller.sync(KEY)
    cluster.settle()
    assert controller.queue.waiting == 1  # re-checked when the pod becomes available


# -- pure helpers ------------------------------------------------------------------------------


def test_pod_from_template_copies_labels_annotations_spec_and_sets_owner() -> None:
    rs = make_rs("a" * 70)
    rs.spec.template.metadata.annotations["note"] = "x"
    rs.metadata.uid = "u1"
    from pilothouse.services.controllers.pod_utils import new_owner_reference
    pod = pod_from_template(rs.spec.template, "ns", rs.metadata.name,
                            new_owner_reference(rs, "apps/v1", "ReplicaSet"))
    assert len(pod.metadata.generateName) == 58  # leaves room for the random suffix
    assert pod.metadata.namespace == "ns"
    assert dict(pod.metadata.annotations) == {"note": "x"}
    assert pod.metadata.ownerReferences[0].uid == "u1"


@pytest.mark.parametrize(("count", "fail_from", "calls", "successes"), [
    (0, None, 0, 0),
    (1, None, 1, 1),
    (7, None, 7, 7),          # batches 1, 2, 4
    (10, None, 10, 10),       # 1, 2, 4, 3
    (10, 2, 3, 1),            # the 2nd call fails: batch 2 ends the run
    (10, 4, 7, 3),            # batch 3 (calls 4-7) fails
], ids=["none", "one", "seven", "ten", "fail-batch-2", "fail-batch-3"])
async def test_slow_start_batch(count: int, fail_from: int | None, calls: int,
                                successes: int) -> None:
    made = 0

    async def fn(_: int) -> None:
        nonlocal made
        made += 1
        if fail_from is not None and made >= fail_from:
            raise RuntimeError("no")

    got, error = await slow_start_batch(count, 1, fn)
    assert (made, got, error is not None) == (calls, successes, fail_from is not None)


def test_expectations_track_creations_deletions_and_expire() -> None:
    clock = AsyncFakeClock()
    exp = ControllerExpectations(clock, timeout=300)
    assert exp.satisfied("k")
    exp.expect_creations("k", 2)
    assert not exp.satisfied("k")
    exp.creation_observed("k")
    exp.creation_observed("k")
    assert exp.satisfied("k")
    exp.expect_deletions("k", ["ns/a", "ns/b"])
    exp.deletion_observed("k", "ns/a")
    exp.deletion_observed("k", "ns/a")  # the same pod twice counts once
    assert exp.pending("k") == (0, 1) and not exp.satisfied("k")
    clock.advance(301)
    assert exp.satisfied("k")  # a lost event never wedges the controller


def _ranked(*pods: core_pb2.Pod, count: int = 1, related: list[core_pb2.Pod] | None = None
            ) -> list[str]:
    clock = AsyncFakeClock()
    return [p.metadata.name for p in pods_to_delete(list(pods), related or list(pods), count,
                                                     clock.now())]


NOW = AsyncFakeClock().now()


@pytest.mark.parametrize(("pods", "first"), [
    ([make_pod("sched", node="n"), make_pod("unsched", node="")], "unsched"),
    ([make_pod("run", node="n"), make_pod("pend", node="n", phase="Pending")], "pend"),
    ([make_pod("unk", node="n", phase="Unknown"), make_pod("pend", node="n", phase="Pending")],
     "pend"),
    ([make_pod("ready", node="n"), make_pod("unready", node="n", ready=False)], "unready"),
    ([make_pod("cheap", node="n", deletion_cost=-5), make_pod("dear", node="n")], "cheap"),
    ([make_pod("young", node="n", ready_since=NOW - timedelta(seconds=10)),
      make_pod("old", node="n", ready_since=NOW - timedelta(hours=3))], "young"),
    ([make_pod("calm", node="n"), make_pod("crashy", node="n", restarts=4)], "crashy"),
], ids=["unscheduled", "pending-before-running", "pending-before-unknown", "not-ready",
        "deletion-cost", "ready-for-less-time", "restarts"])
def test_deletion_ranking(pods: list[core_pb2.Pod], first: str) -> None:
    assert _ranked(*pods) == [first]
    assert _ranked(*reversed(pods)) == [first]


def test_deletion_ranking_prefers_doubled_up_nodes() -> None:
    a = make_pod("alone", node="n1")
    b = make_pod("crowded", node="n2")
    sibling = make_pod("sibling", node="n2")  # another ReplicaSet's pod on n2
    assert _ranked(a, b, related=[a, b, sibling]) == ["crowded"]


def test_plan_claims() -> None:
    owner = make_rs()
    owner.metadata.uid = "me"
    other = make_rs("other")
    other.metadata.uid = "them"
    mine = make_pod("mine", owner=owner)
    stray = make_pod("stray", owner=owner, labels={"app": "x"})
    orphan = make_pod("orphan")
    foreign = make_pod("foreign", owner=other)
    dying = make_pod("dying", terminating=True)
    plan = plan_claims("me", False, [mine, stray, orphan, foreign, dying],
                       lambda p: p.metadata.labels.get("app") == "web")
    assert [p.metadata.name for p in plan.owned] == ["mine"]
    assert [p.metadata.name for p in plan.adopt] == ["orphan"]
    assert [p.metadata.name for p in plan.release] == ["stray"]
    plan = plan_claims("me", True, [mine, stray, orphan], lambda p: False)
    assert (plan.owned, plan.adopt, plan.release) == ([], [], [])


def test_adopt_and_release_patches_keep_other_references() -> None:
    owner = make_rs()
    owner.metadata.uid = "me"
    pod = make_pod("p")
    pod.metadata.resourceVersion = "7"
    pod.metadata.ownerReferences.append(owned_by(make_rs("x"), "v1", "ConfigMap",
                                                 controller=False))
    from pilothouse.services.controllers.pod_utils import new_owner_reference
    patch = adopt_patch(pod, new_owner_reference(owner, "apps/v1", "ReplicaSet"))
    refs = patch["metadata"]["ownerReferences"]
    assert [r["kind"] for r in refs] == ["ConfigMap", "ReplicaSet"]
    assert refs[1]["controller"] is True and patch["metadata"]["resourceVersion"] == "7"
    pod.metadata.ownerReferences.append(new_owner_reference(owner, "apps/v1", "ReplicaSet"))
    released = release_patch(pod, ["me"])["metadata"]["ownerReferences"]
    assert [r["kind"] for r in released] == ["ConfigMap"]
    only = make_pod("q")
    only.metadata.ownerReferences.append(new_owner_reference(owner, "apps/v1", "ReplicaSet"))
    assert release_patch(only, ["me"])["metadata"]["ownerReferences"] is None


def test_calculate_status_failure_condition_reasons() -> None:
    rs = make_rs(replicas=3)
    st = calculate_status(rs, [make_pod("a")], RuntimeError("quota"), NOW)
    assert [(c.reason, c.message) for c in st.conditions] == [("FailedCreate", "quota")]
    rs.spec.replicas = 0
    st = calculate_status(rs, [make_pod("a")], RuntimeError("x"), NOW)
    assert st.conditions[0].reason == "FailedDelete"
    rs.status.CopyFrom(st)
    assert list(calculate_status(rs, [], None, NOW).conditions) == []


async def test_handlers_enqueue_owner_and_matching_replicasets() -> None:
    cluster, controller, _ = await cluster_with_rs(replicas=0)
    await controller.queue.get()  # the RS add
    controller.queue.done(KEY)
    await cluster.add(make_pod("orphan"))  # an orphan: matching RSs are queued
    assert len(controller.queue) == 1
    key = await asyncio.wait_for(controller.queue.get(), 1)
    assert key == KEY


async def test_pod_facts_follow_new_versions_of_a_pod() -> None:
    cluster, controller, rs = await cluster_with_rs(replicas=1)
    pod = await cluster.add(make_pod("p", owner=rs, node="n", ready=False))
    await controller.sync(KEY)
    cluster.settle()
    assert cluster.get(apps_pb2.ReplicaSet, "web").status.readyReplicas == 0  # type: ignore[union-attr]
    ready = make_pod("p", owner=rs, node="n", ready=True)
    ready.metadata.uid = pod.metadata.uid
    await cluster.put(ready)
    await controller.sync(KEY)
    cluster.settle()
    assert cluster.get(apps_pb2.ReplicaSet, "web").status.readyReplicas == 1  # type: ignore[union-attr]
    await cluster.remove(core_pb2.Pod, "p", "default")
    assert len(controller._facts) == 0  # entries leave with their pods
