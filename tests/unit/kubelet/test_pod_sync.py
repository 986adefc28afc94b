"""The pod worker's state machine: sandbox, images, init containers, containers, restarts,
back-off, termination and adoption, against the fake CRI runtime and a fake clock."""

from __future__ import annotations

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet.pod_sync import PodState

from .conftest import NODE_IP, Harness, make_pod


def cstatus(pod: core_pb2.Pod, name: str) -> core_pb2.ContainerStatus:
    for cs in list(pod.status.containerStatuses) + list(pod.status.initContainerStatuses):
        if cs.name == name:
            return cs
    raise AssertionError(f"no status for {name}")


def condition(pod: core_pb2.Pod, type_: str) -> core_pb2.PodCondition:
    for c in pod.status.conditions:
        if c.type == type_:
            return c
    raise AssertionError(f"no {type_} condition")


async def test_a_pod_reaches_running_with_kubernetes_status(harness: Harness) -> None:
    state = await harness.add(make_pod("web"))
    assert await harness.syncer.sync(state) is None
    calls = harness.backend.calls
    assert calls.index("RunPodSandbox") < calls.index("CreateContainer") < \
        calls.index("StartContainer")
    pod = await harness.stored("web")
    assert pod.status.phase == "Running"
    assert pod.status.hostIP == NODE_IP
    assert pod.status.podIP.startswith("10.88.")
    assert [ip.ip for ip in pod.status.podIPs] == [pod.status.podIP]
    assert pod.status.qosClass == "BestEffort"
    assert pod.status.HasField("startTime")
    for t in ("PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady",
              "Ready"):
        assert condition(pod, t).status == "True", t
    cs = cstatus(pod, "main")
    assert cs.state.HasField("running") and cs.ready and cs.started
    assert cs.restartCount == 0
    assert cs.containerID == f"fake://{harness.running('main').id}"
    assert cs.imageID.startswith("sha256:")
    assert harness.reasons() == ["Pulled", "Created", "Started"]
    # The next sync finds everything in place and does nothing.
    before = len(harness.backend.calls)
    await harness.syncer.sync(state)
    assert harness.backend.calls[before:] == []


async def test_image_pull_policy_always_pulls_and_reports_it(harness: Harness) -> None:
    state = await harness.add(make_pod(containers=[{"name": "main", "pull": "Always"}]))
    await harness.syncer.sync(state)
    assert "PullImage" in harness.backend.calls
    assert harness.reasons()[:2] == ["Pulling", "Pulled"]


async def test_image_pull_failure_backs_off(harness: Harness) -> None:
    harness.backend.unpullable.add("nosuch:1")
    state = await harness.add(make_pod(containers=[{"name": "main", "image": "nosuch:1"}]))
    wake = await harness.syncer.sync(state)
    pod = await harness.stored("web")
    waiting = cstatus(pod, "main").state.waiting
    assert waiting.reason == "ErrImagePull"
    assert "pull access denied" in waiting.message
    assert pod.status.phase == "Pending"
    assert wake == harness.clock.monotonic() + 10
    pulls = harness.backend.calls.count("PullImage")
    # Within the back-off: no pull, ImagePullBackOff.
    harness.clock.advance(5)
    await harness.syncer.sync(state)
    pod = await harness.stored("web")
    assert cstatus(pod, "main").state.waiting.reason == "ImagePullBackOff"
    assert harness.backend.calls.count("PullImage") == pulls
    # After it: pulled again (and failing again doubles the back-off).
    harness.clock.advance(5)
    wake = await harness.syncer.sync(state)
    assert harness.backend.calls.count("PullImage") == pulls + 1
    assert wake == harness.clock.monotonic() + 20
    # Once the image can be pulled, the container starts.
    harness.backend.unpullable.clear()
    harness.clock.advance(20)
    await harness.syncer.sync(state)
    assert (await harness.stored("web")).status.phase == "Running"


async def test_crash_loop_back_off_grows_and_resets(harness: Harness) -> None:
    state = await harness.add(make_pod(containers=[{"name": "main", "command": ["false"]}]))
    await harness.syncer.sync(state)
    # First exit: restarted at once.
    harness.backend.exit(harness.running("main").id, 1)
    await harness.syncer.sync(state)
    assert len(harness.containers("main")) == 2
    assert cstatus(await harness.stored("web"), "main").restartCount == 1
    delays = []
    for expected in (10, 20, 40, 80, 160, 300, 300):
        harness.backend.exit(harness.running("main").id, 1)
        exited_at = harness.clock.monotonic()
        wake = await harness.syncer.sync(state)
        pod = await harness.stored("web")
        cs = cstatus(pod, "main")
        assert cs.state.waiting.reason == "CrashLoopBackOff"
        assert cs.lastState.terminated.exitCode == 1
        assert pod.status.phase == "Running"  # restartPolicy Always: still running
        assert condition(pod, "Ready").status == "False"
        assert wake is not None
        delays.append(wake - exited_at)
        # Not a moment before the back-off ends...
        harness.clock.advance(wake - harness.clock.monotonic() - 0.5)
        await harness.syncer.sync(state)
        assert not [c for c in harness.containers("main") if c.state == cri.CONTAINER_RUNNING]
        harness.clock.advance(0.5)
        await harness.syncer.sync(state)
        harness.running("main")
        del expected
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    assert "BackOff" in harness.reasons()
    # Only the newest dead container is kept (for lastState and logs --previous).
    assert len(harness.containers("main")) == 2
    # A container that ran 10 minutes starts its back-off afresh: restarted at once.
    harness.clock.advance(601)
    harness.backend.exit(harness.running("main").id, 1)
    await harness.syncer.sync(state)
    harness.running("main")


async def test_restart_policy_never_fails_the_pod_and_stops_the_sandbox(
        harness: Harness) -> None:
    state = await harness.add(make_pod(restart_policy="Never"))
    await harness.syncer.sync(state)
    harness.backend.exit(harness.running("main").id, 3)
    await harness.syncer.sync(state)
    pod = await harness.stored("web")
    assert pod.status.phase == "Failed"
    assert cstatus(pod, "main").state.terminated.exitCode == 3
    assert cstatus(pod, "main").state.terminated.reason == "Error"
    assert condition(pod, "Ready").reason == "PodCompleted"
    assert all(s.state == cri.SANDBOX_NOTREADY for s in harness.backend.sandboxes.values())
    assert len(harness.containers("main")) == 1


async def test_restart_policy_on_failure(harness: Harness) -> None:
    state = await harness.add(make_pod(restart_policy="OnFailure"))
    await harness.syncer.sync(state)
    harness.backend.exit(harness.running("main").id, 1)
    await harness.syncer.sync(state)
    assert len(harness.containers("main")) == 2  # failed: restarted
    harness.backend.exit(harness.running("main").id, 0)
    await harness.syncer.sync(state)
    pod = await harness.stored("web")
    assert pod.status.phase == "Succeeded"
    assert cstatus(pod, "main").state.terminated.reason == "Completed"


async def test_init_containers_run_in_order(harness: Harness) -> None:
    pod = make_pod(init=[{"name": "one"}, {"name": "two"}])
    state = await harness.add(pod)
    await harness.syncer.sync(state)
    assert harness.containers("two") == [] and harness.containers("main") == []
    stored = await harness.stored("web")
    assert stored.status.phase == "Pending"
    assert condition(stored, "Initialized").status == "False"
    assert condition(stored, "Initialized").message == \
        "containers with incomplete status: [one two]"
    assert cstatus(stored, "main").state.waiting.reason == "PodInitializing"
    harness.backend.exit(harness.running("one").id, 0)
    await harness.syncer.sync(state)
    assert harness.containers("main") == []
    harness.backend.exit(harness.running("two").id, 0)
    await harness.syncer.sync(state)
    harness.running("main")
    stored = await harness.stored("web")
    assert stored.status.phase == "Running"
    assert condition(stored, "Initialized").status == "True"
    assert cstatus(stored, "one").state.terminated.reason == "Completed"


async def test_failing_init_container_blocks_and_restarts(harness: Harness) -> None:
    state = await harness.add(make_pod(init=[{"name": "one"}], restart_policy="Always"))
    await harness.syncer.sync(state)
    harness.backend.exit(harness.running("one").id, 1)
    await harness.syncer.sync(state)
    assert len(harness.containers("one")) == 2
    assert harness.containers("main") == []


async def test_failing_init_container_fails_a_never_pod(harness: Harness) -> None:
    state = await harness.add(make_pod(init=[{"name": "one"}], restart_policy="Never"))
    await harness.syncer.sync(state)
    harness.backend.exit(harness.running("one").id, 1)
    await harness.syncer.sync(state)
    stored = await harness.stored("web")
    assert stored.status.phase == "Failed"
    assert harness.containers("main") == []


async def test_sidecar_keeps_running_beside_the_containers(harness: Harness) -> None:
    state = await harness.add(make_pod(init=[{"name": "proxy", "restartPolicy": "Always"}]))
    await harness.syncer.sync(state)
    await harness.syncer.sync(state)
    harness.running("proxy")
    harness.running("main")
    harness.backend.exit(harness.running("proxy").id, 1)
    await harness.syncer.sync(state)
    harness.running("proxy")  # restarted although init is done


async def test_deletion_stops_with_the_grace_period_then_deletes(harness: Harness) -> None:
    state = await harness.add(make_pod(grace=7))
    await harness.syncer.sync(state)
    stops: list[int] = []
    original = harness.backend.stop_container

    async def stop(req: cri.StopContainerRequest) -> cri.StopContainerResponse:
        stops.append(req.timeout)
        return await original(req)

    harness.backend.stop_container = stop  # type: ignore[method-assign]
    state.pod.metadata.deletionTimestamp.seconds = 1
    state.pod.metadata.deletionGracePeriodSeconds = 7
    assert await harness.syncer.sync(state) is None
    assert stops == [7]
    assert "Killing" in harness.reasons()
    assert state.finished
    assert harness.backend.sandboxes == {}
    deletes = [a for a in harness.transport.actions if a.verb == "delete"]
    assert [(a.resource, a.name) for a in deletes] == [("pods", "web")]
    assert not (harness.root / "pods" / state.uid).exists()


async def test_a_new_kubelet_adopts_running_containers(harness: Harness) -> None:
    state = await harness.add(make_pod("web"))
    await harness.syncer.sync(state)
    before = list(harness.backend.calls)
    # A fresh worker (as after a kubelet restart) with the pod as the apiserver has it.
    adopted = PodState(pod=await harness.stored("web"), first_seen=0)
    await harness.syncer.sync(adopted)
    new_calls = harness.backend.calls[len(before):]
    assert "CreateContainer" not in new_calls and "RunPodSandbox" not in new_calls
    assert cstatus(await harness.stored("web"), "main").state.HasField("running")


async def test_dead_sandbox_is_recreated(harness: Harness) -> None:
    state = await harness.add(make_pod("web"))
    await harness.syncer.sync(state)
    sandbox_id = next(iter(harness.backend.sandboxes))
    harness.backend.sandboxes[sandbox_id].state = cri.SANDBOX_NOTREADY
    harness.backend.exit(harness.running("main").id, 137)
    await harness.syncer.sync(state)
    ready = [s for s in harness.backend.sandboxes.values() if s.state == cri.SANDBOX_READY]
    assert len(ready) == 1 and ready[0].metadata.attempt == 1
    assert "SandboxChanged" in harness.reasons()
    harness.running("main")


async def test_missing_configmap_is_a_config_error(harness: Harness) -> None:
    pod = make_pod()
    var = pod.spec.containers[0].env.add(name="X")
    var.valueFrom.configMapKeyRef.localObjectReference.name = "absent"
    var.valueFrom.configMapKeyRef.key = "k"
    state = await harness.add(pod)
    await harness.syncer.sync(state)
    waiting = cstatus(await harness.stored("web"), "main").state.waiting
    assert waiting.reason == "CreateContainerConfigError"
    assert waiting.message == 'configmap "absent" not found'
