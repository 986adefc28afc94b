"""DaemonSet: eligible nodes, pinned pods, revisions, rolling update, OnDelete, status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.intstr.intstr_pb2 import IntOrString
from pilothouse.services.controllers.daemonset import DaemonSetController
from pilothouse.services.controllers.daemonset_utils import (
    daemon_tolerations,
    node_fit,
    pod_node_name,
    rolling_budgets,
)
from pilothouse.services.controllers.pod_utils import TAINT_UNREACHABLE
from pilothouse.services.controllers.revisions import REVISION_HASH_LABEL, revision_template
from tests.unit.controllers.fake_cluster import FakeCluster, make_node

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def make_ds(*, image: str = "agent:1", node_selector: dict[str, str] | None = None,
            strategy: str = "RollingUpdate", max_unavailable: int | str = 1,
            max_surge: int | str = 0, tolerations: list[core_pb2.Toleration] | None = None,
            ) -> apps_pb2.DaemonSet:
    ds = apps_pb2.DaemonSet()
    ds.metadata.name = "agent"
    ds.metadata.namespace = "default"
    ds.spec.selector.matchLabels["app"] = "agent"
    ds.spec.template.metadata.labels["app"] = "agent"
    ds.spec.template.spec.containers.add(name="agent", image=image)
    ds.spec.template.spec.nodeSelector.update(node_selector or {})
    ds.spec.template.spec.tolerations.extend(tolerations or [])
    ds.spec.updateStrategy.type = strategy
    if strategy == "RollingUpdate":
        for field, value in (("maxUnavailable", max_unavailable), ("maxSurge", max_surge)):
            getattr(ds.spec.updateStrategy.rollingUpdate, field).CopyFrom(
                IntOrString(type=0, intVal=value) if isinstance(value, int)
                else IntOrString(type=1, strVal=value))
    ds.spec.revisionHistoryLimit = 10
    return ds


def taint(key: str, effect: str, value: str = "") -> core_pb2.Taint:
    return core_pb2.Taint(key=key, effect=effect, value=value)


@pytest.mark.parametrize(("ds", "node", "expected"), [
    pytest.param(make_ds(), make_node("n"), (True, True), id="plain"),
    pytest.param(make_ds(node_selector={"disk": "ssd"}), make_node("n"), (False, False),
                 id="selector-mismatch"),
    pytest.param(make_ds(node_selector={"disk": "ssd"}), make_node("n", labels={"disk": "ssd"}),
                 (True, True), id="selector-match"),
    pytest.param(make_ds(), make_node("n", taints=[taint("gpu", "NoSchedule")]),
                 (False, True), id="noschedule-keeps-existing"),
    pytest.param(make_ds(), make_node("n", taints=[taint("gpu", "NoExecute")]),
                 (False, False), id="noexecute-evicts"),
    pytest.param(make_ds(), make_node("n", taints=[taint("gpu", "PreferNoSchedule")]),
                 (True, True), id="prefer-ignored"),
    pytest.param(make_ds(), make_node("n", taints=[taint(TAINT_UNREACHABLE, "NoExecute")]),
                 (True, True), id="auto-toleration-unreachable"),
    pytest.param(make_ds(tolerations=[core_pb2.Toleration(key="gpu", operator="Exists")]),
                 make_node("n", taints=[taint("gpu", "NoExecute")]), (True, True),
                 id="template-toleration"),
])
def test_node_fit(ds: apps_pb2.DaemonSet, node: core_pb2.Node,
                  expected: tuple[bool, bool]) -> None:
    fit = node_fit(ds, node)
    assert (fit.should_run, fit.should_continue) == expected


def test_required_affinity_and_budgets() -> None:
    ds = make_ds()
    term = ds.spec.template.spec.affinity.nodeAffinity \
        .requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms.add()
    term.matchExpressions.add(key="zone", operator="In", values=["a"])
    assert node_fit(ds, make_node("n", labels={"zone": "a"})).should_run
    assert not node_fit(ds, make_node("n", labels={"zone": "b"})).should_run
    assert rolling_budgets(make_ds(max_unavailable="25%"), 10) == (0, 3)
    assert rolling_budgets(make_ds(max_unavailable=0, max_surge=0), 10) == (0, 1)
    assert rolling_budgets(make_ds(max_unavailable=0, max_surge="10%"), 10) == (1, 0)
    keys = {(t.key, t.effect) for t in daemon_tolerations(ds.spec.template.spec)}
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys


async def setup(ds: apps_pb2.DaemonSet, nodes: int = 3,
                ) -> tuple[FakeCluster, DaemonSetController]:
    cluster = FakeCluster(start=T0)
    controller = DaemonSetController(cluster.ctx)
    for i in range(nodes):
        await cluster.add(make_node(f"n{i}"))
    await cluster.add(ds)
    return cluster, controller


async def step(cluster: FakeCluster, controller: DaemonSetController) -> None:
    await controller.sync("default/agent")
    cluster.settle()


def pods(cluster: FakeCluster) -> list[core_pb2.Pod]:
    return cluster.objects(core_pb2.Pod)


async def run_pods(cluster: FakeCluster, ready: bool = True) -> None:
    """Play scheduler and kubelet: bind every pod to its pinned node, mark it ready."""
    for pod in pods(cluster):
        if pod.spec.nodeName and pod.status.phase:
            continue
        pod.spec.nodeName = pod_node_name(pod)
        pod.status.phase = "Running"
        cond = pod.status.conditions.add(type="Ready", status="True" if ready else "False")
        cond.lastTransitionTime.seconds = int(T0.timestamp())
        await cluster.put(pod)


def ds_status(cluster: FakeCluster) -> apps_pb2.DaemonSetStatus:
    ds = cluster.get(apps_pb2.DaemonSet, "agent")
    assert ds is not None
    return ds.status


async def test_one_pinned_pod_per_node_and_status() -> None:
    cluster, controller = await setup(make_ds())
    await step(cluster, controller)
    created = pods(cluster)
    assert sorted(pod_node_name(p) for p in created) == ["n0", "n1", "n2"]
    [rev] = cluster.objects(apps_pb2.ControllerRevision)
    hash_ = rev.metadata.labels[REVISION_HASH_LABEL]
    assert rev.metadata.name == f"agent-{hash_}" and rev.revision == 1
    template = revision_template(rev)
    assert template is not None and template.spec.containers[0].image == "agent:1"
    for pod in created:
        assert pod.metadata.labels[REVISION_HASH_LABEL] == hash_
        term = pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution \
            .nodeSelectorTerms[0]
        assert term.matchFields[0].key == "metadata.name"
        assert any(t.key == "node.kubernetes.io/unreachable" for t in pod.spec.tolerations)
    await step(cluster, controller)
    assert len(pods(cluster)) == 3  # idempotent
    await run_pods(cluster)
    await step(cluster, controller)
    st = ds_status(cluster)
    assert (st.desiredNumberScheduled, st.currentNumberScheduled, st.numberReady,
            st.numberAvailable, st.updatedNumberScheduled, st.numberUnavailable) == \
        (3, 3, 3, 3, 3, 0)


async def test_node_changes() -> None:
    cluster, controller = await setup(make_ds(), nodes=2)
    await step(cluster, controller)
    await run_pods(cluster)
    await cluster.add(make_node("n9"))
    await step(cluster, controller)
    assert sorted(pod_node_name(p) for p in pods(cluster)) == ["n0", "n1", "n9"]
    # An untolerated NoExecute taint evicts the daemon pod from that node.
    node = cluster.get(core_pb2.Node, "n0")
    assert node is not None
    node.spec.taints.append(taint("maintenance", "NoExecute"))
    await cluster.put(node)
    await step(cluster, controller)
    assert sorted(pod_node_name(p) for p in pods(cluster)) == ["n1", "n9"]
    # A deleted node's pod goes too.
    await cluster.remove(core_pb2.Node, "n9")
    await step(cluster, controller)
    assert [pod_node_name(p) for p in pods(cluster)] == ["n1"]
    assert ds_status(cluster).desiredNumberScheduled == 1


async def test_failed_pod_replaced() -> None:
    cluster, controller = await setup(make_ds(), nodes=1)
    await step(cluster, controller)
    [pod] = pods(cluster)
    pod.status.phase = "Failed"
    await cluster.put(pod)
    await step(cluster, controller)
    await step(cluster, controller)
    [new] = pods(cluster)
    assert new.metadata.name != pod.metadata.name
    assert "FailedDaemonPod" in cluster.recorder.reasons()


async def update_image(cluster: FakeCluster, image: str) -> None:
    ds = cluster.get(apps_pb2.DaemonSet, "agent")
    assert ds is not None
    ds.spec.template.spec.containers[0].image = image
    await cluster.put(ds)


async def test_rolling_update_max_unavailable() -> None:
    cluster, controller = await setup(make_ds(max_unavailable=1))
    await step(cluster, controller)
    await run_pods(cluster)
    await update_image(cluster, "agent:2")
    images = []
    for _ in range(12):
        await step(cluster, controller)
        current = pods(cluster)
        # Never more than one node without an available pod.
        available = [p for p in current if p.status.phase == "Running"]
        assert len(available) >= 2
        images.append(sorted(p.spec.containers[0].image for p in current))
        await run_pods(cluster)
        if all(p.spec.containers[0].image == "agent:2" for p in pods(cluster)) \
                and len(pods(cluster)) == 3:
            break
    assert sorted(p.spec.containers[0].image for p in pods(cluster)) == ["agent:2"] * 3
    revisions = cluster.objects(apps_pb2.ControllerRevision)
    assert sorted(r.revision for r in revisions) == [1, 2]
    await step(cluster, controller)
    assert ds_status(cluster).updatedNumberScheduled == 3


async def test_rolling_update_max_surge() -> None:
    cluster, controller = await setup(make_ds(max_unavailable=0, max_surge=1), nodes=2)
    await step(cluster, controller)
    await run_pods(cluster)
    await update_image(cluster, "agent:2")
    await step(cluster, controller)
    current = pods(cluster)
    assert len(current) == 3  # one node surges: old and new side by side
    await run_pods(cluster)
    await step(cluster, controller)  # the new one is available: its old one goes
    assert sorted(p.spec.containers[0].image for p in pods(cluster)) == ["agent:1", "agent:2"]
    for _ in range(6):
        await run_pods(cluster)
        await step(cluster, controller)
    assert sorted(p.spec.containers[0].image for p in pods(cluster)) == ["agent:2"] * 2


async def test_on_delete_waits_for_deletion() -> None:
    cluster, controller = await setup(make_ds(strategy="OnDelete"), nodes=2)
    await step(cluster, controller)
    await run_pods(cluster)
    await update_image(cluster, "agent:2")
    await step(cluster, controller)
    assert sorted(p.spec.containers[0].image for p in pods(cluster)) == ["agent:1"] * 2
    victim = pods(cluster)[0]
    await cluster.remove(core_pb2.Pod, victim.metadata.name, "default")
    await step(cluster, controller)
    assert sorted(p.spec.containers[0].image for p in pods(cluster)) == ["agent:1", "agent:2"]


async def test_rollback_reuses_revision() -> None:
    cluster, controller = await setup(make_ds(), nodes=1)
    await step(cluster, controller)
    await update_image(cluster, "agent:2")
    await step(cluster, controller)
    await update_image(cluster, "agent:1")
    await step(cluster, controller)
    revisions = sorted(cluster.objects(apps_pb2.ControllerRevision), key=lambda r: r.revision)
    assert len(revisions) == 2
    template = revision_template(revisions[-1])
    assert template is not None and template.spec.containers[0].image == "agent:1"
    assert revisions[-1].revision == 3
