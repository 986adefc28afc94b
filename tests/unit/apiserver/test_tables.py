"""Server-side Table output: Kubernetes' printer columns and cell rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pilothouse.api.kinds import BUILTIN_KINDS, Kind
from pilothouse.services.apiserver import tables
from pilothouse.services.apiserver.tables import TableError, table_for, table_for_custom

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
KINDS = {(k.group, k.kind): k for k in BUILTIN_KINDS}


def ts(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def kind(group: str, name: str) -> Kind:
    return KINDS[(group, name)]


def meta(name: str = "x", *, age: timedelta = timedelta(minutes=5), **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "creationTimestamp": ts(age), **extra}


def running(ready: bool = True, restarts: int = 0, last_exit: timedelta | None = None,
            name: str = "app") -> dict[str, Any]:
    status: dict[str, Any] = {"name": name, "ready": ready, "restartCount": restarts,
                              "image": "nginx", "imageID": "", "state": {"running": {}}}
    if last_exit is not None:
        status["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": ts(last_exit)}}
    return status


def waiting(reason: str, restarts: int = 0, name: str = "app") -> dict[str, Any]:
    return {"name": name, "ready": False, "restartCount": restarts, "image": "nginx",
            "imageID": "", "state": {"waiting": {"reason": reason}}}


def terminated(exit_code: int = 0, reason: str = "", signal: int = 0,
               name: str = "app") -> dict[str, Any]:
    state: dict[str, Any] = {"exitCode": exit_code}
    if reason:
        state["reason"] = reason
    if signal:
        state["signal"] = signal
    return {"name": name, "ready": False, "restartCount": 0, "image": "nginx", "imageID": "",
            "state": {"terminated": state}}


def make_pod(*, phase: str = "Running", containers: int = 1,
             container_statuses: list[dict[str, Any]] | None = None,
             init_containers: list[dict[str, Any]] | None = None,
             init_statuses: list[dict[str, Any]] | None = None,
             conditions: list[dict[str, Any]] | None = None, reason: str = "",
             deleting: bool = False, node: str = "", ip: str = "",
             readiness_gates: list[str] | None = None) -> dict[str, Any]:
    metadata = meta("web")
    if deleting:
        metadata["deletionTimestamp"] = ts(timedelta(seconds=1))
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": "nginx"}
                                           for i in range(containers)]}
    if init_containers:
        spec["initContainers"] = init_containers
    if node:
        spec["nodeName"] = node
    if readiness_gates:
        spec["readinessGates"] = [{"conditionType": g} for g in readiness_gates]
    status: dict[str, Any] = {"phase": phase}
    if container_statuses is not None:
        status["containerStatuses"] = container_statuses
    if init_statuses is not None:
        status["initContainerStatuses"] = init_statuses
    if conditions:
        status["conditions"] = conditions
    if reason:
        status["reason"] = reason
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
            "status": status}


def cells(k: Kind, obj: dict[str, Any], *, wide: bool = True) -> list[Any]:
    table = table_for(k, [obj], now=NOW, wide=wide)
    row: list[Any] = table["rows"][0]["cells"]
    return row


def columns(k: Kind, *, wide: bool = True) -> list[str]:
    return [c["name"] for c in table_for(k, [], now=NOW, wide=wide)["columnDefinitions"]]


# -- durations -----------------------------------------------------------------


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(seconds=-5), "<invalid>"),
    (timedelta(seconds=-1), "0s"),
    (timedelta(seconds=5), "5s"),
    (timedelta(seconds=119), "119s"),
    (timedelta(seconds=120), "2m"),
    (timedelta(minutes=3, seconds=2), "3m2s"),
    (timedelta(minutes=10, seconds=30), "10m"),
    (timedelta(minutes=179), "179m"),
    (timedelta(hours=3), "3h"),
    (timedelta(hours=5, minutes=20), "5h20m"),
    (timedelta(hours=30), "30h"),
    (timedelta(days=2, hours=3), "2d3h"),
    (timedelta(days=3), "3d"),
    (timedelta(days=100), "100d"),
    (timedelta(days=365 * 3 + 10), "3y10d"),
    (timedelta(days=365 * 3), "3y"),
    (timedelta(days=365 * 9), "9y"),
], ids=lambda v: str(v))
def test_human_duration(delta: timedelta, text: str) -> None:
    assert tables.human_duration(int(delta.total_seconds()) * 10**9) == text


def test_since_unknown_for_missing_time() -> None:
    assert tables.since(None, NOW) == "<unknown>"
    assert tables.since("yesterday", NOW) == "<unknown>"
    assert tables.since(ts(timedelta(minutes=5)), NOW) == "5m"


# -- pods ----------------------------------------------------------------------


def test_pod_columns_match_kubectl() -> None:
    assert columns(kind("", "Pod")) == ["Name", "Ready", "Status", "Restarts", "Age", "IP",
                                        "Node", "Nominated Node", "Readiness Gates"]
    assert columns(kind("", "Pod"), wide=False) == ["Name", "Ready", "Status", "Restarts",
                                                    "Age"]
    defs = table_for(kind("", "Pod"), [], now=NOW)["columnDefinitions"]
    assert defs[0]["format"] == "name"
    assert [d["priority"] for d in defs] == [0, 0, 0, 0, 0, 1, 1, 1, 1]


POD_CASES = [
    ("pending", make_pod(phase="Pending"), "0/1", "Pending", "0"),
    ("running-ready", make_pod(container_statuses=[running()]), "1/1", "Running", "0"),
    ("running-not-ready", make_pod(container_statuses=[running(ready=False)]), "0/1",
     "Running", "0"),
    ("two-containers", make_pod(containers=2, container_statuses=[
        running(name="a"), running(ready=False, name="b")]), "1/2", "Running", "0"),
    ("crashloop", make_pod(container_statuses=[waiting("CrashLoopBackOff", restarts=5)]),
     "0/1", "CrashLoopBackOff", "5"),
    ("image-pull", make_pod(phase="Pending", container_statuses=[waiting("ErrImagePull")]),
     "0/1", "ErrImagePull", "0"),
    ("container-creating", make_pod(phase="Pending",
                                    container_statuses=[waiting("ContainerCreating")]),
     "0/1", "ContainerCreating", "0"),
    ("completed", make_pod(phase="Succeeded", container_statuses=[
        terminated(reason="Completed")]), "0/1", "Completed", "0"),
    ("error", make_pod(phase="Failed", container_statuses=[terminated(1, "Error")]), "0/1",
     "Error", "0"),
    ("exit-code", make_pod(phase="Failed", container_statuses=[terminated(3)]), "0/1",
     "ExitCode:3", "0"),
    ("signal", make_pod(phase="Failed", container_statuses=[terminated(137, signal=9)]), "0/1",
     "Signal:9", "0"),
    ("completed-but-one-running-ready", make_pod(
        containers=2, conditions=[{"type": "Ready", "status": "True"}],
        container_statuses=[terminated(reason="Completed", name="a"), running(name="b")]),
     "1/2", "Running", "0"),
    ("completed-but-one-running-not-ready", make_pod(
        containers=2, container_statuses=[terminated(reason="Completed", name="a"),
                                           running(name="b")]),
     "1/2", "NotReady", "0"),
    ("terminating", make_pod(deleting=True, container_statuses=[running()]), "1/1",
     "Terminating", "0"),
    ("terminated-pod-deleting-keeps-reason", make_pod(
        phase="Succeeded", deleting=True, container_statuses=[terminated(reason="Completed")]),
     "0/1", "Completed", "0"),
    ("node-lost", make_pod(deleting=True, reason="NodeLost"), "0/1", "Unknown", "0"),
    ("evicted", make_pod(phase="Failed", reason="Evicted"), "0/1", "Evicted", "0"),
    ("scheduling-gated", make_pod(phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]),
     "0/1", "SchedulingGated", "0"),
    ("init-waiting", make_pod(
        phase="Pending", init_containers=[{"name": "i1"}, {"name": "i2"}],
        init_statuses=[terminated(name="i1"), waiting("PodInitializing", name="i2")],
        container_statuses=[waiting("PodInitializing")]), "0/1", "Init:1/2", "0"),
    ("init-first", make_pod(
        phase="Pending", init_containers=[{"name": "i1"}],
        init_statuses=[{"name": "i1", "restartCount": 0, "state": {}}]),
     "0/1", "Init:0/1", "0"),
    ("init-crashloop", make_pod(
        phase="Pending", init_containers=[{"name": "i1"}],
        init_statuses=[waiting("CrashLoopBackOff", restarts=2, name="i1")]),
     "0/1", "Init:CrashLoopBackOff", "2"),
    ("init-error", make_pod(
        phase="Pending", init_containers=[{"name": "i1"}],
        init_statuses=[terminated(1, "Error", name="i1")]), "0/1", "Init:Error", "0"),
    ("init-exit-code", make_pod(
        phase="Pending", init_containers=[{"name": "i1"}],
        init_statuses=[terminated(2, name="i1")]), "0/1", "Init:ExitCode:2", "0"),
    ("init-signal", make_pod(
        phase="Pending", init_containers=[{"name": "i1"}],
        init_statuses=[terminated(137, signal=9, name="i1")]), "0/1", "Init:Signal:9", "0"),
    ("init-done-pod-initializing", make_pod(
        phase="Pending", init_containers=[{"name": "i1"}],
        init_statuses=[terminated(name="i1")],
        container_statuses=[waiting("PodInitializing")]), "0/1", "PodInitializing", "0"),
    ("sidecar-started-counts", make_pod(
        init_containers=[{"name": "side", "restartPolicy": "Always"}],
        init_statuses=[{**running(name="side"), "started": True}],
        container_statuses=[running()],
        conditions=[{"type": "Initialized", "status": "True"}]), "2/2", "Running", "0"),
]


@pytest.mark.parametrize(("pod", "ready", "status", "restarts"),
                         [c[1:] for c in POD_CASES], ids=[c[0] for c in POD_CASES])
def test_pod_ready_status_restarts(pod: dict[str, Any], ready: str, status: str,
                                   restarts: str) -> None:
    row = cells(kind("", "Pod"), pod)
    assert row[:4] == ["web", ready, status, restarts]
    assert row[4] == "5m"


def test_pod_restarts_show_when_last_restarted() -> None:
    pod = make_pod(container_statuses=[running(restarts=3, last_exit=timedelta(minutes=5))])
    assert cells(kind("", "Pod"), pod)[3] == "3 (5m ago)"


def test_pod_wide_cells() -> None:
    pod = make_pod(container_statuses=[running()], node="node-1", ip="10.0.0.5",
                   readiness_gates=["example.com/ready", "example.com/other"],
                   conditions=[{"type": "example.com/ready", "status": "True"}])
    assert cells(kind("", "Pod"), pod)[5:] == ["10.0.0.5", "node-1", "<none>", "1/2"]
    assert cells(kind("", "Pod"), make_pod())[5:] == ["<none>", "<none>", "<none>", "<none>"]
    assert cells(kind("", "Pod"), make_pod(), wide=False) == ["web", "0/1", "Running", "0",
                                                              "5m"]


def test_finished_pods_carry_completed_condition() -> None:
    table = table_for(kind("", "Pod"), [make_pod(phase="Succeeded"), make_pod()], now=NOW)
    assert table["rows"][0]["conditions"][0]["reason"] == "PodCompleted"
    assert "conditions" not in table["rows"][1]


# -- include object ------------------------------------------------------------------


def test_include_object_modes() -> None:
    pod = make_pod()
    pods = kind("", "Pod")
    metadata = table_for(pods, [pod], now=NOW)
    assert metadata["kind"] == "Table" and metadata["apiVersion"] == "meta.k8s.io/v1"
    assert metadata["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": pod["metadata"]}
    assert table_for(pods, [pod], now=NOW, include_object="Object")["rows"][0]["object"] is pod
    assert "object" not in table_for(pods, [pod], now=NOW, include_object="None")["rows"][0]
    listed = table_for(pods, [], now=NOW, list_meta={"resourceVersion": "7"})
    assert listed["metadata"] == {"resourceVersion": "7"} and listed["rows"] == []
    with pytest.raises(TableError, match="includeObject"):
        table_for(pods, [pod], now=NOW, include_object="Everything")


# -- other kinds ----------------------------------------------------------------------

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"},
                                    {"name": "side", "image": "busybox"}]}}
SELECTOR = {"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]}

KIND_CASES: list[tuple[str, tuple[str, str], dict[str, Any], list[str], list[Any]]] = [
    ("deployment", ("apps", "Deployment"),
     {"metadata": meta("web"), "spec": {"replicas": 3, "selector": SELECTOR,
                                        "template": TEMPLATE},
      "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}},
     ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"],
     ["web", "2/3", 3, 2, "5m", "nginx,side", "nginx:1.27,busybox", "app=web,tier in (a,b)"]),
    ("replicaset", ("apps", "ReplicaSet"),
     {"metadata": meta("web-1"), "spec": {"replicas": 3, "selector": {"matchLabels": {
         "app": "web"}}, "template": TEMPLATE}, "status": {"replicas": 3, "readyReplicas": 1}},
     ["Name", "Desired", "Current", "Ready", "Age", "Containers", "Images", "Selector"],
     ["web-1", 3, 3, 1, "5m", "nginx,side", "nginx:1.27,busybox", "app=web"]),
    ("statefulset", ("apps", "StatefulSet"),
     {"metadata": meta("db"), "spec": {"replicas": 2, "template": TEMPLATE},
      "status": {"readyReplicas": 2}},
     ["Name", "Ready", "Age", "Containers", "Images"],
     ["db", "2/2", "5m", "nginx,side", "nginx:1.27,busybox"]),
    ("daemonset", ("apps", "DaemonSet"),
     {"metadata": meta("agent"), "spec": {"selector": {"matchLabels": {"app": "a"}},
                                          "template": {"spec": {
                                              "nodeSelector": {"kubernetes.io/os": "linux"},
                                              "containers": [{"name": "a", "image": "a"}]}}},
      "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                 "updatedNumberScheduled": 2, "numberAvailable": 1}},
     ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age",
      "Containers", "Images", "Selector"],
     ["agent", 2, 2, 1, 2, 1, "kubernetes.io/os=linux", "5m", "a", "a", "app=a"]),
    ("job-complete", ("batch", "Job"),
     {"metadata": meta("pi"), "spec": {"completions": 1, "template": TEMPLATE},
      "status": {"succeeded": 1, "startTime": ts(timedelta(minutes=4)),
                 "completionTime": ts(timedelta(minutes=3, seconds=50)),
                 "conditions": [{"type": "Complete", "status": "True"}]}},
     ["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"],
     ["pi", "Complete", "1/1", "10s", "5m", "nginx,side", "nginx:1.27,busybox", "<none>"]),
    ("job-running-parallel", ("batch", "Job"),
     {"metadata": meta("work"), "spec": {"parallelism": 3, "template": TEMPLATE},
      "status": {"startTime": ts(timedelta(seconds=30))}},
     ["Name", "Status", "Completions", "Duration"],
     ["work", "Running", "0/1 of 3", "30s"]),
    ("cronjob", ("batch", "CronJob"),
     {"metadata": meta("hello"), "spec": {"schedule": "*/1 * * * *", "suspend": False,
                                          "jobTemplate": {"spec": {"template": TEMPLATE}}},
      "status": {"active": [{"name": "hello-1"}],
                 "lastScheduleTime": ts(timedelta(seconds=20))}},
     ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age"],
     ["hello", "*/1 * * * *", "<none>", "False", 1, "20s", "5m"]),
    ("service-clusterip", ("", "Service"),
     {"metadata": meta("web"), "spec": {
         "type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
         "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
         "selector": {"app": "web"}}},
     ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"],
     ["web", "ClusterIP", "10.96.0.10", "<none>", "80/TCP,53/UDP", "5m", "app=web"]),
    ("service-nodeport", ("", "Service"),
     {"metadata": meta("np"), "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.11"],
                                       "ports": [{"port": 80, "nodePort": 30080,
                                                  "protocol": "TCP"}]}},
     ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"],
     ["np", "NodePort", "10.96.0.11", "<none>", "80:30080/TCP", "5m", "<none>"]),
    ("service-lb-pending", ("", "Service"),
     {"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"],
                                       "ports": []}},
     ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)"],
     ["lb", "LoadBalancer", "10.96.0.12", "<pending>", "<none>"]),
    ("service-lb", ("", "Service"),
     {"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"],
                                       "ports": [{"port": 443, "protocol": "TCP"}]},
      "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}},
     ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)"],
     ["lb", "LoadBalancer", "10.96.0.12", "192.0.2.1", "443/TCP"]),
    ("service-externalname", ("", "Service"),
     {"metadata": meta("ext"), "spec": {"type": "ExternalName",
                                        "externalName": "example.com"}},
     ["Name", "Type", "Cluster-IP", "External-IP"],
     ["ext", "ExternalName", "<none>", "example.com"]),
    ("endpoints", ("", "Endpoints"),
     {"metadata": meta("web"), "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"}
                                                          for i in range(1, 5)],
                                            "ports": [{"port": 80}]}]},
     ["Name", "Endpoints", "Age"],
     ["web", "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more...", "5m"]),
    ("endpoints-none", ("", "Endpoints"), {"metadata": meta("web")},
     ["Name", "Endpoints", "Age"], ["web", "<none>", "5m"]),
    ("endpointslice", ("discovery.k8s.io", "EndpointSlice"),
     {"metadata": meta("web-abc"), "addressType": "IPv4", "ports": [{"port": 80}],
      "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]},
     ["Name", "AddressType", "Ports", "Endpoints", "Age"],
     ["web-abc", "IPv4", "80", "10.0.0.1,10.0.0.2", "5m"]),
    ("node-ready", ("", "Node"),
     {"metadata": meta("n1", labels={"node-role.kubernetes.io/control-plane": "",
                                     "node-role.kubernetes.io/worker": ""}),
      "spec": {"unschedulable": True},
      "status": {"conditions": [{"type": "Ready", "status": "True"}],
                 "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                 "nodeInfo": {"kubeletVersion": "v1.32.4", "osImage": "Debian",
                              "kernelVersion": "6.1", "containerRuntimeVersion": "pilothouse://0.1"}}},
     ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image",
      "Kernel-Version", "Container-Runtime"],
     ["n1", "Ready,SchedulingDisabled", "control-plane,worker", "5m", "v1.32.4",
      "192.168.1.10", "<none>", "Debian", "6.1", "pilothouse://0.1"]),
    ("node-not-ready", ("", "Node"),
     {"metadata": meta("n2"), "status": {"conditions": [{"type": "Ready", "status": "False"}]}},
     ["Name", "Status", "Roles"], ["n2", "NotReady", "<none>"]),
    ("node-unknown", ("", "Node"), {"metadata": meta("n3")},
     ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image"],
     ["n3", "Unknown", "<none>", "5m", "", "<none>", "<none>", "<unknown>"]),
    ("namespace", ("", "Namespace"), {"metadata": meta("dev"), "status": {"phase": "Active"}},
     ["Name", "Status", "Age"], ["dev", "Active", "5m"]),
    ("configmap", ("", "ConfigMap"),
     {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}},
     ["Name", "Data", "Age"], ["cfg", 3, "5m"]),
    ("secret", ("", "Secret"), {"metadata": meta("s"), "type": "Opaque", "data": {"a": "MQ=="}},
     ["Name", "Type", "Data", "Age"], ["s", "Opaque", 1, "5m"]),
    ("serviceaccount", ("", "ServiceAccount"), {"metadata": meta("default")},
     ["Name", "Secrets", "Age"], ["default", 0, "5m"]),
    ("event", ("", "Event"),
     {"metadata": meta("web.1"), "type": "Normal", "reason": "Scheduled",
      "message": "Successfully assigned default/web to n1\n",
      "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
      "source": {"component": "default-scheduler"}, "firstTimestamp": ts(timedelta(minutes=3)),
      "lastTimestamp": ts(timedelta(seconds=40)), "count": 2},
     ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen",
      "Count", "Name"],
     ["40s", "Normal", "Scheduled", "pod/web", "spec.containers{app}", "default-scheduler",
      "Successfully assigned default/web to n1", "3m", 2, "web.1"]),
    ("events-k8s-io", ("events.k8s.io", "Event"),
     {"apiVersion": "events.k8s.io/v1", "metadata": meta("web.2"), "type": "Warning",
      "reason": "BackOff", "note": "Back-off restarting", "regarding": {"kind": "Pod",
                                                                       "name": "web"},
      "reportingController": "kubelet", "reportingInstance": "n1",
      "eventTime": "2025-06-01T11:58:00.000000Z",
      "series": {"count": 4, "lastObservedTime": "2025-06-01T11:59:50.000000Z"}},
     ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen",
      "Count"],
     ["10s", "Warning", "BackOff", "pod/web", "", "kubelet, n1", "Back-off restarting", "2m",
      4]),
    ("lease", ("coordination.k8s.io", "Lease"),
     {"metadata": meta("n1"), "spec": {"holderIdentity": "n1"}},
     ["Name", "Holder", "Age"], ["n1", "n1", "5m"]),
    ("priorityclass", ("scheduling.k8s.io", "PriorityClass"),
     {"metadata": meta("high"), "value": 1000, "globalDefault": False},
     ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"],
     ["high", 1000, False, "5m", "PreemptLowerPriority"]),
    ("pv", ("", "PersistentVolume"),
     {"metadata": meta("pv1"), "spec": {"capacity": {"storage": "10Gi"},
                                        "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                                        "persistentVolumeReclaimPolicy": "Retain",
                                        "storageClassName": "local",
                                        "claimRef": {"namespace": "default", "name": "data"}},
      "status": {"phase": "Bound"}},
     ["Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass",
      "VolumeAttributesClass", "Reason", "Age", "VolumeMode"],
     ["pv1", "10Gi", "RWO,RWX", "Retain", "Bound", "default/data", "local", "<unset>", "",
      "5m", "<unset>"]),
    ("pvc-bound", ("", "PersistentVolumeClaim"),
     {"metadata": meta("data"), "spec": {"volumeName": "pv1", "storageClassName": "local",
                                         "volumeMode": "Filesystem"},
      "status": {"phase": "Bound", "capacity": {"storage": "10Gi"},
                 "accessModes": ["ReadWriteOnce"]}},
     ["Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass",
      "VolumeAttributesClass", "Age", "VolumeMode"],
     ["data", "Bound", "pv1", "10Gi", "RWO", "local", "<unset>", "5m", "Filesystem"]),
    ("pvc-pending", ("", "PersistentVolumeClaim"),
     {"metadata": meta("data"), "spec": {"resources": {"requests": {"storage": "1Gi"}}},
      "status": {"phase": "Pending"}},
     ["Name", "Status", "Volume", "Capacity", "Access Modes"],
     ["data", "Pending", "", "", ""]),
    ("ingress", ("networking.k8s.io", "Ingress"),
     {"metadata": meta("web"), "spec": {"ingressClassName": "nginx",
                                        "rules": [{"host": "a.example.com"},
                                                  {"host": "b.example.com"}],
                                        "tls": [{"hosts": ["a.example.com"]}]},
      "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.5"}]}}},
     ["Name", "Class", "Hosts", "Address", "Ports", "Age"],
     ["web", "nginx", "a.example.com,b.example.com", "192.0.2.5", "80, 443", "5m"]),
    ("ingress-defaults", ("networking.k8s.io", "Ingress"), {"metadata": meta("any")},
     ["Name", "Class", "Hosts", "Address", "Ports"], ["any", "<none>", "*", "", "80"]),
    ("networkpolicy", ("networking.k8s.io", "NetworkPolicy"),
     {"metadata": meta("deny"), "spec": {"podSelector": {}}},
     ["Name", "Pod-Selector", "Age"], ["deny", "<none>", "5m"]),
    ("hpa", ("autoscaling", "HorizontalPodAutoscaler"),
     {"metadata": meta("web"), "spec": {
         "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1,
         "maxReplicas": 5, "metrics": [{"type": "Resource", "resource": {
             "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]},
      "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {
          "name": "cpu", "current": {"averageUtilization": 35}}}]}},
     ["Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"],
     ["web", "Deployment/web", "cpu: 35%/80%", "1", 5, 2, "5m"]),
    ("pdb", ("policy", "PodDisruptionBudget"),
     {"metadata": meta("web"), "spec": {"minAvailable": "50%"},
      "status": {"disruptionsAllowed": 1}},
     ["Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"],
     ["web", "50%", "N/A", 1, "5m"]),
    ("crd", ("apiextensions.k8s.io", "CustomResourceDefinition"),
     {"metadata": meta("crontabs.stable.example.com")},
     ["Name", "Created At"], ["crontabs.stable.example.com", "2025-06-01T11:55:00Z"]),
    ("role", ("rbac.authorization.k8s.io", "ClusterRole"), {"metadata": meta("view")},
     ["Name", "Created At"], ["view", "2025-06-01T11:55:00Z"]),
    ("rolebinding", ("rbac.authorization.k8s.io", "RoleBinding"),
     {"metadata": meta("rb"), "roleRef": {"kind": "Role", "name": "pod-reader"},
      "subjects": [{"kind": "User", "name": "jane"}, {"kind": "Group", "name": "devs"},
                   {"kind": "ServiceAccount", "namespace": "ci", "name": "bot"}]},
     ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"],
     ["rb", "Role/pod-reader", "5m", "jane", "devs", "ci/bot"]),
    ("storageclass", ("storage.k8s.io", "StorageClass"),
     {"metadata": meta("local", annotations={
         "storageclass.kubernetes.io/is-default-class": "true"}),
      "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"},
     ["Name", "Provisioner", "ReclaimPolicy", "VolumeBindingMode", "AllowVolumeExpansion",
      "Age"],
     ["local (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", False,
      "5m"]),
    ("controllerrevision", ("apps", "ControllerRevision"),
     {"metadata": meta("agent-5d8", ownerReferences=[
         {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "u",
          "controller": True}]), "revision": 2},
     ["Name", "Controller", "Revision", "Age"], ["agent-5d8", "daemonset.apps/agent", 2, "5m"]),
    ("resourcequota", ("", "ResourceQuota"),
     {"metadata": meta("q"), "spec": {"hard": {"pods": "10", "limits.cpu": "4",
                                               "requests.cpu": "2"}},
      "status": {"used": {"pods": "3", "limits.cpu": "1"}}},
     ["Name", "Age", "Request", "Limit"],
     ["q", "5m", "pods: 3/10, requests.cpu: 0/2", "limits.cpu: 1/4"]),
    ("default-columns", ("storage.k8s.io", "CSIDriver"), {"metadata": meta("csi")},
     ["Name", "Age"], ["csi", "5m"]),
]


@pytest.mark.parametrize(("key", "obj", "names", "expected"), [c[1:] for c in KIND_CASES],
                         ids=[c[0] for c in KIND_CASES])
def test_kind_columns_and_cells(key: tuple[str, str], obj: dict[str, Any], names: list[str],
                                expected: list[Any]) -> None:
    k = kind(*key)
    table = table_for(k, [obj], now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]][:len(names)] == names
    assert table["rows"][0]["cells"][:len(expected)] == expected
    assert len(table["rows"][0]["cells"]) == len(table["columnDefinitions"])


@pytest.mark.parametrize("k", BUILTIN_KINDS, ids=lambda k: f"{k.group or 'core'}.{k.plural}")
def test_every_kind_prints_an_empty_object(k: Kind) -> None:
    # Printers must cope with objects missing every optional field.
    table = table_for(k, [{"metadata": {"name": "x"}}], now=NOW)
    row = table["rows"][0]["cells"]
    assert len(row) == len(table["columnDefinitions"])
    name_columns = [i for i, c in enumerate(table["columnDefinitions"]) if c["name"] == "Name"]
    assert name_columns and row[name_columns[0]] == "x"


def test_selectors_format_like_kubernetes() -> None:
    assert tables.format_label_selector(None) == "<none>"
    assert tables.format_label_selector({}) == "<none>"
    assert tables.selector_string({"matchExpressions": [
        {"key": "b", "operator": "Exists"}, {"key": "a", "operator": "DoesNotExist"},
        {"key": "c", "operator": "NotIn", "values": ["y", "x"]}]}) == "!a,b,c notin (x,y)"
    assert tables.format_labels({"b": "2", "a": "1"}) == "a=1,b=2"


# -- custom resources ------------------------------------------------------------------

CRONTAB = {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
           "metadata": meta("tab", labels={"app.kubernetes.io/name": "tabby"}),
           "spec": {"cronSpec": "* * * * */5", "replicas": 3, "image": "my-cron",
                    "suspended": True},
           "status": {"conditions": [{"type": "Ready", "status": "True"}],
                      "lastRun": ts(timedelta(hours=2))}}

CUSTOM_COLUMNS = [
    {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[0].status"},
    {"name": "Last Run", "type": "date", "jsonPath": ".status.lastRun"},
    {"name": "Suspended", "type": "boolean", "jsonPath": ".spec.suspended", "priority": 1},
    {"name": "App", "type": "string", "jsonPath": ".metadata.labels['app.kubernetes.io/name']"},
    {"name": "App2", "type": "string",
     "jsonPath": ".metadata.labels.app\\.kubernetes\\.io/name"},
    {"name": "Missing", "type": "string", "jsonPath": ".spec.nothing[3]"},
    {"name": "Spec JSON", "type": "string", "jsonPath": ".status.conditions[0]"},
]


def test_custom_columns() -> None:
    table = table_for_custom(CUSTOM_COLUMNS, [CRONTAB], now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", *(c["name"] for c in CUSTOM_COLUMNS)]
    assert table["columnDefinitions"][5]["priority"] == 1
    assert table["rows"][0]["cells"] == [
        "tab", "* * * * */5", 3, "True", "120m", True, "tabby", "tabby", None,
        '{"type":"Ready","status":"True"}']
    narrow = table_for_custom(CUSTOM_COLUMNS, [CRONTAB], now=NOW, wide=False)
    assert "Suspended" not in [c["name"] for c in narrow["columnDefinitions"]]


def test_custom_default_age_column() -> None:
    table = table_for_custom([], [CRONTAB], now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert table["rows"][0]["cells"] == ["tab", "5m"]


def test_custom_type_mismatch_and_invalid_date() -> None:
    columns = [{"name": "N", "type": "integer", "jsonPath": ".spec.image"},
               {"name": "D", "type": "date", "jsonPath": ".spec.image"}]
    assert table_for_custom(columns, [CRONTAB], now=NOW)["rows"][0]["cells"] == [
        "tab", None, "<invalid>"]


@pytest.mark.parametrize("path", ["spec.x", ".spec[", ".spec..x", "", ".a[?(@.x)]"])
def test_bad_json_path_is_a_clear_error(path: str) -> None:
    with pytest.raises(TableError, match="JSONPath"):
        table_for_custom([{"name": "X", "type": "string", "jsonPath": path}], [], now=NOW)


def test_json_path_forms() -> None:
    assert tables.parse_json_path("{.status.conditions[0].type}") == [
        "status", "conditions", 0, "type"]
    assert tables.parse_json_path('.metadata.annotations["a.b/c"]') == [
        "metadata", "annotations", "a.b/c"]
