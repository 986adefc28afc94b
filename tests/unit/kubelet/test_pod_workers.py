"""The PLEG as the kubelet's shared runtime snapshot: a pod worker reuses its runtime view
while the relists agree with it (no CRI listing per sync), reads the runtime again once a
newer relist disagrees; updates that only echo the worker's own status wake nobody."""

from __future__ import annotations

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet.metrics import KubeletMetrics
from pilothouse.services.kubelet.pod_sync import PodState
from pilothouse.services.kubelet.pod_workers import PLEG, _Seen, status_echo
from pilothouse.services.kubelet.podstatus import ContainerRecord, RuntimePod, SandboxRecord

from .conftest import Harness, make_pod

READS = ("list_pod_sandbox", "list_containers", "container_status", "pod_sandbox_status")


def reads(harness: Harness) -> dict[str, float]:
    """CRI calls that read a pod's state, so far (the kubelet's own counter)."""
    counter = harness.runtime.metrics.runtime_operations
    return {op: counter.labels(op)._value.get() for op in READS}


def new_reads(before: dict[str, float], harness: Harness) -> dict[str, float]:
    return {op: n - before[op] for op, n in reads(harness).items() if n != before[op]}


async def test_a_worker_reuses_its_runtime_view_until_a_newer_relist_disagrees(
        harness: Harness) -> None:
    pleg = PLEG(harness.runtime, clock=harness.clock, period=1.0, metrics=KubeletMetrics(),
                on_change=lambda uid: None)
    harness.syncer.d.runtime_cache = pleg
    await pleg.relist()
    state = await harness.add(make_pod())
    state.fresh = True  # the runtime has nothing for it: no listing at all
    before = reads(harness)
    await harness.syncer.sync(state)
    # What it started is read back once: the sandbox's IP, the container's status.
    assert new_reads(before, harness) == {"pod_sandbox_status": 1, "container_status": 1}
    assert state.runtime is not None and state.runtime.ready_sandbox() is not None
    # Woken again (a pod update, a probe): the view is current, nothing is read.
    before = reads(harness)
    await harness.syncer.sync(state)
    assert new_reads(before, harness) == {}
    # The next relist shows what the worker started: it agrees, still nothing to read.
    await pleg.relist()
    assert pleg.agrees(state.uid, state.runtime, state.runtime_epoch)
    before = reads(harness)
    await harness.syncer.sync(state)
    assert new_reads(before, harness) == {}
    # The container dies behind the worker's back: a relist begun after the view
    # disagrees with it, so the next sync reads the runtime and restarts the container.
    dead = harness.running("main")
    harness.backend.exit(dead.id, 1)
    await pleg.relist()
    assert not pleg.agrees(state.uid, state.runtime, state.runtime_epoch)
    before = reads(harness)
    await harness.syncer.sync(state)
    got = new_reads(before, harness)
    assert got.get("list_containers") == 1 and got.get("list_pod_sandbox") == 1
    assert harness.running("main").id != dead.id
    stored = await harness.stored("web")
    assert stored.status.containerStatuses[0].restartCount == 1


async def test_a_relist_older_than_the_view_is_not_held_against_it(harness: Harness) -> None:
    pleg = PLEG(harness.runtime, clock=harness.clock, period=1.0, metrics=KubeletMetrics(),
                on_change=lambda uid: None)
    harness.syncer.d.runtime_cache = pleg
    await pleg.relist()  # before the pod exists: shows nothing for it
    state = await harness.add(make_pod())
    state.fresh = True
    await harness.syncer.sync(state)
    assert state.runtime is not None
    # That relist disagrees (it saw nothing) but is older than the view: reused.
    assert pleg.agrees(state.uid, state.runtime, state.runtime_epoch)
    before = reads(harness)
    await harness.syncer.sync(state)
    assert new_reads(before, harness) == {}


async def test_a_kill_drops_the_view(harness: Harness) -> None:
    pleg = PLEG(harness.runtime, clock=harness.clock, period=1.0, metrics=KubeletMetrics(),
                on_change=lambda uid: None)
    harness.syncer.d.runtime_cache = pleg
    state = await harness.add(make_pod())
    await harness.syncer.sync(state)
    assert state.runtime is not None
    rp = state.runtime
    await harness.syncer.kill_pod(state, rp, 0)
    assert state.runtime is None  # what the kill did is not in the view: read again
    before = reads(harness)
    await harness.syncer.sync(state)
    assert new_reads(before, harness).get("list_containers") == 1


def _written(pod: core_pb2.Pod) -> tuple[core_pb2.Pod, PodState]:
    state = PodState(pod=pod, first_seen=0.0)
    status = core_pb2.PodStatus(phase="Running", podIP="10.1.0.5")
    state.last_status = status
    echoed = core_pb2.Pod()
    echoed.CopyFrom(pod)
    echoed.status.CopyFrom(status)
    echoed.metadata.resourceVersion = "42"
    return echoed, state


def test_status_echo_is_only_the_workers_own_status_coming_back() -> None:
    pod = make_pod()
    pod.metadata.resourceVersion = "41"
    echoed, state = _written(pod)
    assert status_echo(pod, echoed, state)
    # A status the worker is still writing counts too (the watch can beat the reply).
    state.sending_status, state.last_status = state.last_status, None
    assert status_echo(pod, echoed, state)
    state.sending_status = None
    assert not status_echo(pod, echoed, state)  # nothing written yet: a real update
    cases = {
        "label": lambda p: p.metadata.labels.update({"tier": "web"}),
        "annotation": lambda p: p.metadata.annotations.update({"a": "b"}),
        "deletion": lambda p: setattr(p.metadata.deletionTimestamp, "seconds", 1),
        "image": lambda p: setattr(p.spec.containers[0], "image", "busybox:2"),
        "status by someone else": lambda p: setattr(p.status, "phase", "Failed"),
    }
    for what, change in cases.items():
        echoed, state = _written(pod)
        change(echoed)
        assert not status_echo(pod, echoed, state), what


def test_the_relist_snapshot_fingerprints_ids_and_states() -> None:
    rp = RuntimePod("u", [SandboxRecord("s1", True, 1)],
                    [ContainerRecord("c1", "main", cri.CONTAINER_RUNNING)])
    assert _Seen.of(rp) == _Seen({"s1": cri.SANDBOX_READY}, {"c1": cri.CONTAINER_RUNNING})
    rp.containers[0].state = cri.CONTAINER_EXITED
    assert _Seen.of(rp) != _Seen({"s1": cri.SANDBOX_READY}, {"c1": cri.CONTAINER_RUNNING})
