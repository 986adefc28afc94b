"""The kubelet with a real apiserver and a real CRI runtime.

Every test runs once per runtime (``node``): our shim's process and containerd
backends, and containerd's own CRI."""

from __future__ import annotations

from pathlib import Path

import httpx

from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import cgroups

from .conftest import NODE, Node, busybox_pod, wait_for


def running(pod: core_pb2.Pod) -> bool:
    return pod.status.phase == "Running" and all(
        cs.state.HasField("running") for cs in pod.status.containerStatuses) and \
        len(pod.status.containerStatuses) == len(pod.spec.containers)


async def test_node_registers_with_capacity_lease_and_ready(node: Node) -> None:
    kubelet = await node.start_kubelet()
    n = await node.client.get(core_pb2.Node, NODE)
    cap = n.status.capacity
    assert int(cap["cpu"].string) >= 1
    assert int(cap["pods"].string) == min(110, 10 * int(cap["cpu"].string))
    assert cap["memory"].string.endswith("Ki")
    assert "ephemeral-storage" in n.status.allocatable
    assert n.metadata.labels["kubernetes.io/hostname"] == NODE
    assert n.metadata.labels["kubernetes.io/os"] == "linux"
    assert n.status.daemonEndpoints.kubeletEndpoint.Port == kubelet.server.port
    assert {a.type for a in n.status.addresses} == {"InternalIP", "Hostname"}
    assert n.status.nodeInfo.containerRuntimeVersion.startswith(f"{node.runtime_name}://")
    ready = {c.type: c.status for c in n.status.conditions}
    assert ready == {"Ready": "True", "MemoryPressure": "False", "DiskPressure": "False",
                     "PIDPressure": "False"}
    lease = await node.client.get(coordination_pb2.Lease, NODE, namespace="kube-node-lease")
    assert lease.spec.holderIdentity == NODE
    assert lease.spec.leaseDurationSeconds == 40
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{node.kubelet_url}/healthz")).text == "ok"
        metrics = (await http.get(f"{node.kubelet_url}/metrics")).text
    for name in ("kubelet_running_pods", "kubelet_running_containers",
                 "kubelet_pod_start_duration_seconds", "kubelet_pod_start_sli_duration_seconds",
                 "kubelet_runtime_operations_total", "kubelet_runtime_operations_duration_seconds",
                 "kubelet_runtime_operations_errors_total", "kubelet_pleg_relist_duration_seconds",
                 "kubelet_started_pods_total"):
        assert name in metrics, name


async def test_busybox_pod_runs_and_its_log_holds_its_output(node: Node) -> None:
    await node.start_kubelet()
    await node.run_pod(busybox_pod("web", "echo hello from $HOSTNAME; sleep 3600"))
    pod = await node.wait_pod("web", running, what="Running")
    assert pod.status.podIP.startswith("10.")
    assert pod.status.qosClass == "BestEffort"
    assert {c.type for c in pod.status.conditions} >= {"PodScheduled", "Initialized",
                                                      "ContainersReady", "Ready",
                                                      "PodReadyToStartContainers"}
    cs = pod.status.containerStatuses[0]
    assert cs.ready and cs.started and cs.containerID.startswith(f"{node.runtime_name}://")
    assert cs.imageID
    text = ""
    for _ in range(100):
        text = await node.logs("web", "main")
        if "hello" in text:
            break
    assert text == "hello from web\n"
    assert (await node.logs("web", "main", timestamps="true")).split(" ", 1)[1] == \
        "hello from web\n"
    reasons = [e.reason for e in await node.events("web")]
    for r in ("Pulled", "Created", "Started"):
        assert r in reasons
    async with httpx.AsyncClient() as http:
        pods = (await http.get(f"{node.kubelet_url}/pods")).json()
        assert [p["metadata"]["name"] for p in pods["items"]] == ["web"]
        out = await http.post(f"{node.kubelet_url}/run/default/web/main",
                              params={"cmd": "cat /etc/hostname"})
        assert out.text.strip() == "web"
        summary = (await http.get(f"{node.kubelet_url}/stats/summary")).json()
        assert summary["node"]["nodeName"] == NODE
        assert summary["pods"][0]["podRef"]["name"] == "web"
        missing = await http.get(f"{node.kubelet_url}/containerLogs/default/nope/main")
        assert missing.status_code == 404


async def test_exec_returns_output_and_exit_code(node: Node) -> None:
    await node.start_kubelet()
    await node.run_pod(busybox_pod("web", "sleep 3600"))
    await node.wait_pod("web", running, what="Running")
    async with httpx.AsyncClient(timeout=30) as http:
        ok = await http.post(f"{node.kubelet_url}/run/default/web/main",
                             params={"cmd": "echo hi"})
        assert (ok.text, ok.headers["x-exit-code"]) == ("hi\n", "0")
        failed = await http.post(f"{node.kubelet_url}/run/default/web/main",
                                 params={"cmd": "ls /nonexistent"})
        assert failed.headers["x-exit-code"] == "1"
        assert "nonexistent" in failed.text
        bad = await http.post(f"{node.kubelet_url}/run/default/web/nosuch",
                              params={"cmd": "true"})
        assert bad.status_code == 400


async def test_crashing_container_restarts_with_growing_back_off(node: Node) -> None:
    node.overrides = {"backoff_initial": 1.0, "backoff_max": 4.0}
    await node.start_kubelet()
    await node.run_pod(busybox_pod("crash", "echo crashing; exit 1"))
    seen: set[str] = set()

    def check(pod: core_pb2.Pod) -> bool:
        for cs in pod.status.containerStatuses:
            if cs.state.waiting.reason == "CrashLoopBackOff":
                seen.add(cs.state.waiting.message.split(" restarting")[0])
                assert cs.lastState.terminated.exitCode == 1
        return bool(pod.status.containerStatuses) and \
            pod.status.containerStatuses[0].restartCount >= 4
    pod = await node.wait_pod("crash", check, within=60, what="4 restarts")
    assert {"back-off 1s", "back-off 2s", "back-off 4s"} <= seen
    assert pod.status.phase == "Running"
    assert "BackOff" in [e.reason for e in await node.events("crash")]
    # logs --previous: the dead container's output.
    assert await node.logs("crash", "main", previous="true") == "crashing\n"


async def test_failing_liveness_probe_restarts_the_container(node: Node) -> None:
    await node.start_kubelet()
    pod = busybox_pod("live", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600")
    probe = pod.spec.containers[0].livenessProbe
    probe.handler.exec.command.extend(["cat", "/tmp/healthy"])
    probe.periodSeconds = 1
    probe.failureThreshold = 2
    await node.run_pod(pod)
    restarted = await node.wait_pod(
        "live", lambda p: bool(p.status.containerStatuses) and
        p.status.containerStatuses[0].restartCount >= 1, within=30, what="a restart")
    cs = restarted.status.containerStatuses[0]
    assert cs.lastState.terminated.exitCode != 0 or cs.lastState.HasField("terminated")
    events = await node.events("live")
    unhealthy = [e for e in events if e.reason == "Unhealthy"]
    assert unhealthy and unhealthy[0].message.startswith("Liveness probe failed")
    killing = [e for e in events if e.reason == "Killing"]
    assert killing and "failed liveness probe" in killing[0].message


async def test_readiness_probe_gates_ready(node: Node) -> None:
    await node.start_kubelet()
    pod = busybox_pod("ready", "sleep 2; touch /tmp/ready; sleep 3600")
    probe = pod.spec.containers[0].readinessProbe
    probe.handler.exec.command.extend(["cat", "/tmp/ready"])
    probe.periodSeconds = 1
    await node.run_pod(pod)
    first = await node.wait_pod("ready", running, what="Running")
    assert not first.status.containerStatuses[0].ready
    await node.wait_pod("ready", lambda p: p.status.containerStatuses[0].ready,
                        what="ready")


async def test_init_containers_run_in_order(node: Node) -> None:
    await node.start_kubelet()
    pod = busybox_pod("init", "cat /work/order; sleep 3600")
    pod.spec.volumes.add(name="work").volumeSource.emptyDir.SetInParent()
    pod.spec.containers[0].volumeMounts.add(name="work", mountPath="/work")
    for name in ("one", "two"):
        c = pod.spec.initContainers.add(name=name, image="busybox",
                                        imagePullPolicy="IfNotPresent")
        c.command.extend(["sh", "-c", f"echo {name} >> /work/order"])
        c.volumeMounts.add(name="work", mountPath="/work")
    await node.run_pod(pod)
    done = await node.wait_pod("init", running, what="Running")
    assert [s.state.terminated.reason for s in done.status.initContainerStatuses] == \
        ["Completed", "Completed"]
    out = ""
    for _ in range(100):
        out = await node.logs("init", "main")
        if out:
            break
    assert out == "one\ntwo\n"


async def test_configmap_and_secret_volumes_and_env(node: Node) -> None:
    await node.start_kubelet()
    cm = core_pb2.ConfigMap()
    cm.metadata.name, cm.metadata.namespace = "settings", "default"
    cm.data["color"] = "blue"
    cm.data["size"] = "large"
    await node.client.create(cm)
    secret = core_pb2.Secret()
    secret.metadata.name, secret.metadata.namespace = "creds", "default"
    secret.data["password"] = b"s3cret"
    await node.client.create(secret)
    pod = busybox_pod("cfg", 'echo "$COLOR $PASSWORD $GREETING $POD_NAME $MEM"; '
                      "cat /cfg/color; echo; cat /sec/password; echo; sleep 3600")
    c = pod.spec.containers[0]
    var = c.env.add(name="COLOR")
    var.valueFrom.configMapKeyRef.localObjectReference.name = "settings"
    var.valueFrom.configMapKeyRef.key = "color"
    var = c.env.add(name="PASSWORD")
    var.valueFrom.secretKeyRef.localObjectReference.name = "creds"
    var.valueFrom.secretKeyRef.key = "password"
    c.env.add(name="GREETING", value="hi-$(COLOR)")
    var = c.env.add(name="POD_NAME")
    var.valueFrom.fieldRef.fieldPath = "metadata.name"
    var = c.env.add(name="MEM")
    var.valueFrom.resourceFieldRef.resource = "limits.memory"
    var.valueFrom.resourceFieldRef.divisor.string = "1Mi"
    c.resources.limits["memory"].string = "64Mi"
    v = pod.spec.volumes.add(name="cfg")
    v.volumeSource.configMap.localObjectReference.name = "settings"
    v = pod.spec.volumes.add(name="sec")
    v.volumeSource.secret.secretName = "creds"
    c.volumeMounts.add(name="cfg", mountPath="/cfg")
    c.volumeMounts.add(name="sec", mountPath="/sec")
    await node.run_pod(pod)
    await node.wait_pod("cfg", running, what="Running")
    out = ""
    for _ in range(100):
        out = await node.logs("cfg", "main")
        if out.count("\n") >= 3:
            break
    assert out == "blue s3cret hi-blue cfg 64\nblue\ns3cret\n"


async def test_deletion_runs_pre_stop_within_the_grace_period(node: Node, tmp_path: Path) -> None:
    await node.start_kubelet()
    out = tmp_path / "out"
    out.mkdir()
    pod = busybox_pod("bye", "trap 'echo TERM >> /out/log; exit 0' TERM; "
                      "while true; do sleep 0.2; done", grace=30)
    v = pod.spec.volumes.add(name="out")
    v.volumeSource.hostPath.path = str(out)
    c = pod.spec.containers[0]
    c.volumeMounts.add(name="out", mountPath="/out")
    c.lifecycle.preStop.exec.command.extend(["sh", "-c", "echo preStop >> /out/log"])
    created = await node.run_pod(pod)
    running_pod = await node.wait_pod("bye", running, what="Running")
    cgroup = cgroups.pod_cgroup(node.cgroup_root, running_pod).strip("/")
    assert [h for h in Path("/sys/fs/cgroup").iterdir() if (h / cgroup).is_dir()]
    await node.client.delete(core_pb2.Pod, "bye", namespace="default")

    async def gone() -> bool:
        try:
            await node.pod("bye")
        except Exception:
            return True
        return False

    await wait_for(gone, within=25, what="the pod deleted before its 30s grace period ended")
    assert (out / "log").read_text().splitlines()[0] == "preStop"
    assert "TERM" in (out / "log").read_text()
    assert [e.reason for e in await node.events("bye")].count("Killing") == 1

    async def no_sandboxes() -> bool:
        return not await node.sandboxes()
    await wait_for(no_sandboxes, what="the sandbox removed")
    # The pod's cgroup (named by the kubelet, made by the runtime) went with it.
    cgroup = cgroups.pod_cgroup(node.cgroup_root, created).strip("/")
    assert cgroup.startswith(node.cgroup_root.strip("/") + "/kubepods/besteffort/pod")

    async def cgroup_removed() -> bool:
        return not [h for h in Path("/sys/fs/cgroup").iterdir() if (h / cgroup).exists()]
    await wait_for(cgroup_removed, what="the pod's cgroup removed")


async def test_kubelet_restart_leaves_pods_running(node: Node) -> None:
    await node.start_kubelet()
    await node.run_pod(busybox_pod("stay", "echo up; sleep 3600"))
    before = await node.wait_pod("stay", running, what="Running")
    cid = before.status.containerStatuses[0].containerID
    await node.stop_kubelet()
    containers = await node.containers()
    assert [c.state for c in containers] == [1]  # CONTAINER_RUNNING: the stop left it alone
    kubelet = await node.start_kubelet()
    # Several syncs of the adopted pod happen; nothing is restarted.
    state = next(s for s in kubelet.workers.states() if s.pod.metadata.name == "stay")

    async def synced_twice() -> bool:
        return kubelet.workers.syncs(state.uid) >= 2

    await wait_for(synced_twice, what="two syncs of the adopted pod")
    after = await node.pod("stay")
    assert after.status.containerStatuses[0].containerID == cid
    assert after.status.containerStatuses[0].restartCount == 0
    assert after.status.phase == "Running"
    assert await node.logs("stay", "main") == "up\n"
    assert len(await node.containers()) == 1


async def test_unknown_image_is_err_image_pull(node: Node) -> None:
    await node.start_kubelet()
    pod = busybox_pod("nopull", "true")
    pod.spec.containers[0].image = "example.invalid/nothing:1"
    await node.run_pod(pod)
    pod = await node.wait_pod(
        "nopull", lambda p: bool(p.status.containerStatuses) and
        p.status.containerStatuses[0].state.waiting.reason in ("ErrImagePull",
                                                               "ImagePullBackOff"),
        what="ErrImagePull")
    assert pod.status.phase == "Pending"


async def test_static_pod_runs_with_a_mirror_pod(node: Node) -> None:
    manifest = node.kubelet_root.parent / "manifests" / "static.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\nspec:\n  containers:\n"
        "  - name: main\n    image: busybox\n    imagePullPolicy: IfNotPresent\n"
        "    command: [sh, -c, 'echo static; sleep 3600']\n")
    await node.start_kubelet()
    mirror = await node.wait_pod(f"static-web-{NODE}", running, what="mirror pod Running")
    assert mirror.metadata.annotations["kubernetes.io/config.source"] == "file"
    assert "kubernetes.io/config.mirror" in mirror.metadata.annotations
    assert mirror.metadata.ownerReferences[0].kind == "Node"
    assert await node.logs(f"static-web-{NODE}", "main") in ("", "static\n")
    manifest.unlink()

    async def mirror_gone() -> bool:
        try:
            await node.pod(f"static-web-{NODE}")
        except Exception:
            return True
        return False

    await wait_for(mirror_gone, what="the mirror pod deleted with its manifest")

    async def no_sandboxes() -> bool:
        return not await node.sandboxes()
    await wait_for(no_sandboxes, what="the static pod's sandbox removed")


async def test_http_and_tcp_probes_reach_the_pod_ip(node: Node) -> None:
    await node.start_kubelet()
    pod = busybox_pod("httpd", "mkdir -p /www && echo ok > /www/index.html && "
                      "exec httpd -f -p 8080 -h /www")
    c = pod.spec.containers[0]
    c.readinessProbe.handler.httpGet.path = "/index.html"
    c.readinessProbe.handler.httpGet.port.intVal = 8080
    c.readinessProbe.periodSeconds = 1
    c.livenessProbe.handler.tcpSocket.port.intVal = 8080
    c.livenessProbe.periodSeconds = 1
    c.livenessProbe.initialDelaySeconds = 1
    c.livenessProbe.failureThreshold = 3
    await node.run_pod(pod)
    ready = await node.wait_pod("httpd", lambda p: running(p) and
                                p.status.containerStatuses[0].ready, what="Ready")
    assert {c.type: c.status for c in ready.status.conditions}["Ready"] == "True"
    # A while later (several liveness periods) the tcpSocket probe has not failed three times
    # in a row: still the first container. (Readiness may have failed before httpd listened.)
    kubelet = node.kubelet
    assert kubelet is not None
    uid = ready.metadata.uid
    syncs_at_ready = kubelet.workers.syncs(uid)

    async def probed_a_few_times() -> bool:  # resyncs every 2 s: > 4 liveness periods
        return kubelet.workers.syncs(uid) >= syncs_at_ready + 3

    await wait_for(probed_a_few_times, what="a few more syncs")
    assert (await node.pod("httpd")).status.containerStatuses[0].restartCount == 0
    assert not [e for e in await node.events("httpd") if e.reason == "Killing"]
