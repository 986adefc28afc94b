"""Per-kind strategies: defaults as Kubernetes applies them, validation causes with
Kubernetes' field paths and messages, immutable fields on update."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf.message import Message

import pilothouse.services.apiserver.strategies  # noqa: F401  (registers every strategy)
from pilothouse.api.codec import dict_to_message, message_to_dict
from pilothouse.api.kinds import KindRegistry
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.apiserver.errors import Cause, StatusError
from pilothouse.services.apiserver.strategies import pods
from pilothouse.services.apiserver.strategies.allocators import (
    IPRangeAllocator,
    PortRangeAllocator,
)
from pilothouse.services.apiserver.strategy import Strategy, StrategyContext, strategy_for

KINDS = KindRegistry.builtin()
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def make_ctx() -> StrategyContext:
    return StrategyContext(
        now=lambda: NOW,
        allocators={"service-ip": IPRangeAllocator("10.96.0.0/12"),
                     "node-port": PortRangeAllocator("30000-32767")},
    )


def strategy(resource: str) -> Strategy:
    plural, _, group = resource.partition(".")
    for kind in KINDS:
        if kind.plural == plural and kind.group == group:
            return strategy_for(kind)
    raise KeyError(resource)


def decode(resource: str, data: dict[str, Any]) -> Message:
    s = strategy(resource)
    return dict_to_message(s.kind.new().__class__, data)


def create(resource: str, data: dict[str, Any],
           ctx: StrategyContext | None = None) -> tuple[Any, list[Cause]]:
    """What the registry does on create: prepare, default, validate (Kubernetes defaults
    first; the strategies must not depend on the order)."""
    ctx = ctx or make_ctx()
    s = strategy(resource)
    obj = decode(resource, data)
    s.prepare_for_create(obj, ctx)
    s.default(obj, ctx)
    return obj, s.validate(obj, ctx)


def update(resource: str, old: Message, change: Callable[[dict[str, Any]], None],
           ctx: StrategyContext | None = None) -> tuple[Any, list[Cause]]:
    """What the registry does on update: the client's edit of ``old``, default, prepare,
    validate_update."""
    ctx = ctx or make_ctx()
    s = strategy(resource)
    data = copy.deepcopy(message_to_dict(old))
    change(data)
    new = decode(resource, data)
    s.prepare_for_update(new, old, ctx)
    s.default(new, ctx)
    return new, s.validate_update(new, old, ctx)


def fields(causes: list[Cause]) -> list[str]:
    return [c.field for c in causes]


def as_dict(obj: Message) -> dict[str, Any]:
    return message_to_dict(obj)


# -- pods -------------------------------------------------------------------------------------

def pod(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "default", "uid": "u1"}, "spec": base}


def test_pod_defaults_match_kubernetes() -> None:
    obj, causes = create("pods", pod(containers=[{
        "name": "web", "image": "nginx",
        "ports": [{"containerPort": 80}],
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
        "readinessProbe": {"httpGet": {"port": 80}},
        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
    }], volumes=[{"name": "cfg", "configMap": {"name": "c"}}, {"name": "tmp", "emptyDir": {}},
                 {"name": "host", "hostPath": {"path": "/x"}}, {"name": "implicit"}]))
    assert causes == []
    spec = as_dict(obj)["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["serviceAccountName"] == "default" == spec["serviceAccount"]
    assert spec["priority"] == 0
    assert spec["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
    ]
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "Always"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert c["resources"]["requests"] == {"cpu": "500m", "memory": "128Mi"}
    assert c["readinessProbe"] == {"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
                                   "timeoutSeconds": 1, "periodSeconds": 10,
                                   "successThreshold": 1, "failureThreshold": 3}
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["cfg"]["configMap"] == {"name": "c", "defaultMode": 420}
    assert vols["tmp"]["emptyDir"] == {}
    assert vols["host"]["hostPath"] == {"path": "/x", "type": ""}
    assert vols["implicit"]["emptyDir"] == {}
    assert as_dict(obj)["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}


@pytest.mark.parametrize(
    ("image", "policy"),
    [("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.27", "IfNotPresent"),
     ("registry:5000/nginx", "Always"), ("registry:5000/nginx:1", "IfNotPresent"),
     ("nginx@sha256:abc", "IfNotPresent")],
)
def test_image_pull_policy_from_tag(image: str, policy: str) -> None:
    assert pods.default_pull_policy(image) == policy


def test_pod_keeps_what_the_client_set() -> None:
    obj, causes = create("pods", pod(
        restartPolicy="Never", terminationGracePeriodSeconds=5, serviceAccountName="builder",
        tolerations=[{"operator": "Exists"}],
        containers=[{"name": "a", "image": "busybox", "imagePullPolicy": "Never"}]))
    assert causes == []
    spec = as_dict(obj)["spec"]
    assert (spec["restartPolicy"], spec["terminationGracePeriodSeconds"]) == ("Never", 5)
    assert spec["serviceAccountName"] == "builder" == spec["serviceAccount"]
    assert spec["tolerations"] == [{"operator": "Exists"}]  # already tolerates everything
    assert spec["containers"][0]["imagePullPolicy"] == "Never"


def test_defaulting_is_idempotent() -> None:
    obj, _ = create("pods", pod())
    again = type(obj)()
    again.CopyFrom(obj)
    strategy("pods").default(again, make_ctx())
    assert again == obj


def _res(cpu_req: str | None, cpu_lim: str | None, mem_req: str | None = None,
         mem_lim: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"requests": {}, "limits": {}}
    for key, value in (("cpu", cpu_req), ("memory", mem_req)):
        if value:
            res["requests"][key] = value
    for key, value in (("cpu", cpu_lim), ("memory", mem_lim)):
        if value:
            res["limits"][key] = value
    return res


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        ([{}], "BestEffort"),
        ([_res(None, "1", None, "1Gi")], "Guaranteed"),
        ([_res("1", "1", "1Gi", "1Gi"), _res(None, "2", None, "2Gi")], "Guaranteed"),
        ([_res("500m", "1", "1Gi", "1Gi")], "Burstable"),
        ([_res("100m", None)], "Burstable"),
        ([_res(None, "1", None, "1Gi"), {}], "Burstable"),
        ([_res("0", None)], "BestEffort"),
    ],
    ids=["none", "limits-only", "two-equal", "req<lim", "request-only", "one-empty", "zero"],
)
def test_qos_class(resources: list[dict[str, Any]], qos: str) -> None:
    containers = [{"name": f"c{i}", "image": "x:1", "resources": r}
                  for i, r in enumerate(resources)]
    obj, causes = create("pods", pod(containers=containers))
    assert causes == []
    assert obj.status.qosClass == qos == pods.qos_class(obj)


POD_INVALID = [
    ("no containers", {"containers": []}, "spec.containers", "Required value"),
    ("no image", {"containers": [{"name": "a"}]}, "spec.containers[0].image", "Required value"),
    ("bad name", {"containers": [{"name": "A_b", "image": "x"}]}, "spec.containers[0].name",
     None),
    ("duplicate name", {"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]},
     "spec.containers[1].name", 'Duplicate value: "a"'),
    ("init and app share a name", {"initContainers": [{"name": "a", "image": "x"}],
                                   "containers": [{"name": "a", "image": "y"}]},
     "spec.containers[0].name", 'Duplicate value: "a"'),
    ("port out of range", {"containers": [{"name": "a", "image": "x",
                                           "ports": [{"containerPort": 70000}]}]},
     "spec.containers[0].ports[0].containerPort",
     "Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ("port name too long", {"containers": [{"name": "a", "image": "x", "ports": [
        {"containerPort": 80, "name": "a-very-long-port-name"}]}]},
     "spec.containers[0].ports[0].name",
     'Invalid value: "a-very-long-port-name": must be no more than 15 characters'),
    ("duplicate port name", {"containers": [{"name": "a", "image": "x", "ports": [
        {"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}]}]},
     "spec.containers[0].ports[1].name", 'Duplicate value: "http"'),
    ("restart policy", {"restartPolicy": "Sometimes"}, "spec.restartPolicy",
     'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'),
    ("dns policy", {"dnsPolicy": "Google"}, "spec.dnsPolicy",
     'Unsupported value: "Google": supported values: "ClusterFirstWithHostNet", '
     '"ClusterFirst", "Default", "None"'),
    ("duplicate volume", {"volumes": [{"name": "v", "emptyDir": {}},
                                      {"name": "v", "emptyDir": {}}]},
     "spec.volumes[1].name", 'Duplicate value: "v"'),
    ("two volume sources", {"volumes": [{"name": "v", "emptyDir": {},
                                         "hostPath": {"path": "/x"}}]},
     "spec.volumes[0].emptyDir", "Forbidden: may not specify more than 1 volume type"),
    ("mount of missing volume", {"containers": [{"name": "a", "image": "x", "volumeMounts": [
        {"name": "data", "mountPath": "/data"}]}]},
     "spec.containers[0].volumeMounts[0].name", 'Not found: "data"'),
    ("requests over limits", {"containers": [{"name": "a", "image": "x", "resources": {
        "limits": {"memory": "1Gi"}, "requests": {"memory": "2Gi"}}}]},
     "spec.containers[0].resources.requests[memory]",
     'Invalid value: "2Gi": must be less than or equal to memory limit of 1Gi'),
    ("active deadline", {"activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds",
     "Invalid value: 0: must be between 1 and 2147483647, inclusive"),
    ("env name", {"containers": [{"name": "a", "image": "x", "env": [{"name": "1X"}]}]},
     "spec.containers[0].env[0].name", None),
    ("probe without handler", {"containers": [{"name": "a", "image": "x",
                                               "livenessProbe": {"periodSeconds": 5}}]},
     "spec.containers[0].livenessProbe", "Required value: must specify a handler type"),
    ("toleration seconds", {"tolerations": [{"key": "k", "operator": "Exists",
                                             "effect": "NoSchedule", "tolerationSeconds": 5}]},
     "spec.tolerations[0].effect", None),
]


@pytest.mark.parametrize(("spec", "field", "message"), [c[1:] for c in POD_INVALID],
                         ids=[c[0] for c in POD_INVALID])
def test_pod_invalid(spec: dict[str, Any], field: str, message: str | None) -> None:
    _, causes = create("pods", pod(**spec))
    assert field in fields(causes), causes
    if message is not None:
        assert message in [c.message for c in causes if c.field == field]


def test_pod_update_allows_image_and_added_tolerations() -> None:
    old, _ = create("pods", pod())

    def edit(d: dict[str, Any]) -> None:
        d["spec"]["containers"][0]["image"] = "nginx:1.28"
        d["spec"]["tolerations"].append({"key": "k", "operator": "Exists"})
        d["spec"]["activeDeadlineSeconds"] = 60
        d["metadata"]["labels"] = {"new": "label"}

    new, causes = update("pods", old, edit)
    assert causes == []
    assert new.spec.containers[0].image == "nginx:1.28"


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["spec"].update(restartPolicy="Never"),
        lambda d: d["spec"]["containers"][0].update(command=["sh"]),
        lambda d: d["spec"].update(terminationGracePeriodSeconds=10),
        lambda d: d["spec"].update(nodeName="node-1"),
    ],
    ids=["restartPolicy", "command", "grace-period", "nodeName"],
)
def test_pod_spec_is_otherwise_immutable(edit: Callable[[dict[str, Any]], None]) -> None:
    old, _ = create("pods", pod())
    _, causes = update("pods", old, edit)
    assert fields(causes) == ["spec"]
    assert causes[0].reason == "FieldValueForbidden"
    assert causes[0].message.startswith(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,")


def test_pod_tolerations_may_not_be_removed() -> None:
    old, _ = create("pods", pod(tolerations=[{"key": "gpu", "operator": "Exists"}]))
    _, causes = update("pods", old, lambda d: d["spec"]["tolerations"].pop(0))
    assert [(c.field, c.message) for c in causes if c.field == "spec.tolerations"] == [
        ("spec.tolerations",
         "Forbidden: existing toleration can not be modified except its tolerationSeconds")]


def test_pod_active_deadline_only_shrinks() -> None:
    old, _ = create("pods", pod(activeDeadlineSeconds=30))
    _, causes = update("pods", old, lambda d: d["spec"].update(activeDeadlineSeconds=60))
    assert [(c.field, c.message) for c in causes] == [
        ("spec.activeDeadlineSeconds",
         "Invalid value: 60: must be less than or equal to previous value")]


def test_pod_update_keeps_status() -> None:
    old, _ = create("pods", pod())
    new, _ = update("pods", old, lambda d: d["status"].update(phase="Running"))
    assert new.status.phase == "Pending"


def test_bind_sets_node_and_condition() -> None:
    obj, _ = create("pods", pod())
    pods.bind(obj, "node-1", make_ctx())
    assert obj.spec.nodeName == "node-1"
    cond = as_dict(obj)["status"]["conditions"]
    assert cond == [{"type": "PodScheduled", "status": "True",
                     "lastTransitionTime": "2024-05-01T12:00:00Z", "lastProbeTime": None}] or \
        cond == [{"type": "PodScheduled", "status": "True",
                  "lastTransitionTime": "2024-05-01T12:00:00Z"}]
    with pytest.raises(StatusError) as err:
        pods.bind(obj, "node-2", make_ctx())
    assert err.value.code == 409
    assert 'pod web is already assigned to node "node-1"' in err.value.message


def test_bind_rejects_a_bad_target() -> None:
    obj, _ = create("pods", pod())
    with pytest.raises(StatusError) as err:
        pods.bind(obj, "", make_ctx())
    assert err.value.code == 422
    assert [c.field for c in err.value.causes] == ["target.name"]


@pytest.mark.parametrize(
    ("node", "phase", "requested", "seconds"),
    [("n1", "Running", None, 30), ("n1", "Running", 5, 5), ("", "Pending", None, 0),
     ("n1", "Succeeded", None, 0), ("n1", "Failed", 10, 0), ("n1", "Running", -3, 1)],
)
def test_pod_graceful_delete(node: str, phase: str, requested: int | None, seconds: int) -> None:
    obj, _ = create("pods", pod())
    obj.spec.nodeName = node
    obj.status.phase = phase
    assert strategy("pods").graceful_delete_seconds(obj, requested) == seconds


def test_pod_field_set() -> None:
    obj, _ = create("pods", pod(hostNetwork=True))
    obj.spec.nodeName = "n1"
    obj.status.podIP = "10.0.0.5"
    assert strategy("pods").field_set(obj) == {
        "metadata.name": "web", "metadata.namespace": "default", "spec.nodeName": "n1",
        "spec.restartPolicy": "Always", "spec.schedulerName": "default-scheduler",
        "spec.serviceAccountName": "default", "spec.hostNetwork": "true",
        "status.phase": "Pending", "status.podIP": "10.0.0.5", "status.podIPs": "10.0.0.5",
        "status.nominatedNodeName": "",
    }


def test_host_network_pods_default_host_ports() -> None:
    obj, causes = create("pods", pod(hostNetwork=True, containers=[
        {"name": "a", "image": "x:1", "ports": [{"containerPort": 8080}]}]))
    assert causes == []
    assert obj.spec.containers[0].ports[0].hostPort == 8080


# -- services ---------------------------------------------------------------------------------

def service(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": base}


def test_service_defaults_and_cluster_ip() -> None:
    obj, causes = create("services", service(ports=[{"port": 80, "targetPort": "http"}]))
    assert causes == []
    spec = as_dict(obj)["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"] == [{"protocol": "TCP", "port": 80, "targetPort": "http"}]
    assert spec["clusterIP"].startswith("10.") and spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["clusterIP"] != "10.96.0.1"  # kept for the kubernetes Service
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec
    assert as_dict(obj)["status"] == {"loadBalancer": {}}


def test_service_target_port_defaults_to_port() -> None:
    obj, _ = create("services", service(ports=[{"port": 8080}]))
    assert as_dict(obj)["spec"]["ports"][0]["targetPort"] == 8080


def test_nodeport_service_allocates_and_releases() -> None:
    ctx = make_ctx()
    obj, causes = create("services", service(type="NodePort"), ctx)
    assert causes == []
    port = obj.spec.ports[0].nodePort
    assert 30000 <= port <= 32767
    assert obj.spec.externalTrafficPolicy == "Cluster"
    # The same port again is refused with Kubernetes' message.
    other = service(type="NodePort", ports=[{"port": 80, "nodePort": port}])
    other["metadata"]["name"] = "other"
    with pytest.raises(StatusError) as err:
        create("services", other, ctx)
    assert err.value.code == 422
    assert [(c.field, c.message) for c in err.value.causes] == [
        ("spec.ports[0].nodePort", f"Invalid value: {port}: provided port is already allocated")]
    strategy("services").on_delete(obj, ctx)
    again, causes = create("services", other, ctx)
    assert causes == [] and again.spec.ports[0].nodePort == port


def test_requested_cluster_ip_and_conflicts() -> None:
    ctx = make_ctx()
    obj, _ = create("services", service(clusterIP="10.96.0.10"), ctx)
    assert list(obj.spec.clusterIPs) == ["10.96.0.10"]
    with pytest.raises(StatusError) as err:
        create("services", service(clusterIP="10.96.0.10"), ctx)
    assert err.value.causes[0].field == "spec.clusterIPs"
    assert "provided IP is already allocated" in err.value.causes[0].message
    with pytest.raises(StatusError) as err:
        create("services", service(clusterIP="192.168.0.1"), ctx)
    assert "The range of valid IPs is 10.96.0.0/12" in err.value.causes[0].message


def test_headless_and_external_name_allocate_nothing() -> None:
    ctx = make_ctx()
    headless, causes = create("services", service(clusterIP="None"), ctx)
    assert causes == [] and list(headless.spec.clusterIPs) == ["None"]
    ext, causes = create("services", {"metadata": {"name": "db", "namespace": "d"},
                                      "spec": {"type": "ExternalName",
                                               "externalName": "db.example.com"}}, ctx)
    assert causes == [] and ext.spec.clusterIP == "" and not ext.spec.ipFamilies
    assert ctx.allocators["service-ip"].used_count() == 0  # type: ignore[attr-defined]


SERVICE_INVALID = [
    ("unnamed ports", {"ports": [{"port": 80}, {"port": 443}]}, "spec.ports[0].name",
     "Required value"),
    ("duplicate names", {"ports": [{"port": 80, "name": "a"}, {"port": 443, "name": "a"}]},
     "spec.ports[1].name", 'Duplicate value: "a"'),
    ("no ports", {"ports": []}, "spec.ports", "Required value"),
    ("bad type", {"type": "Magic"}, "spec.type",
     'Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", '
     '"LoadBalancer", "NodePort"'),
    ("external name missing", {"type": "ExternalName"}, "spec.externalName", "Required value"),
    ("bad selector", {"selector": {"app": "a b"}}, "spec.selector", None),
    ("nodePort on ClusterIP", {"ports": [{"port": 80, "nodePort": 30001}]},
     "spec.ports[0].nodePort", "Forbidden: may not be used when `type` is 'ClusterIP'"),
    ("bad cluster IP", {"clusterIP": "x.y"}, "spec.clusterIPs[0]", None),
    ("port range", {"ports": [{"port": 0}]}, "spec.ports[0].port", None),
]


@pytest.mark.parametrize(("spec", "field", "message"), [c[1:] for c in SERVICE_INVALID],
                         ids=[c[0] for c in SERVICE_INVALID])
def test_service_invalid(spec: dict[str, Any], field: str, message: str | None) -> None:
    ctx = make_ctx()
    _, causes = create("services", service(**spec), ctx)
    assert field in fields(causes), causes
    if message is not None:
        assert message in [c.message for c in causes if c.field == field]
    assert ctx.allocators["service-ip"].used_count() == 0  # type: ignore[attr-defined]


def test_service_update_keeps_allocations_and_cluster_ip_is_immutable() -> None:
    ctx = make_ctx()
    old, _ = create("services", service(type="NodePort"), ctx)

    def replace(d: dict[str, Any]) -> None:  # kubectl replace of the original manifest
        d["spec"].pop("clusterIP")
        d["spec"].pop("clusterIPs")
        d["spec"]["ports"][0].pop("nodePort")

    new, causes = update("services", old, replace, ctx)
    assert causes == []
    assert new.spec.clusterIP == old.spec.clusterIP
    assert new.spec.ports[0].nodePort == old.spec.ports[0].nodePort

    def move(d: dict[str, Any]) -> None:
        d["spec"]["clusterIP"] = "10.96.0.50"
        d["spec"]["clusterIPs"] = ["10.96.0.50"]

    _, causes = update("services", old, move, ctx)
    assert fields(causes) == ["spec.clusterIPs[0]"]
    assert causes[0].message.endswith("may not change once set")


def test_service_type_change_releases_node_ports_after_update() -> None:
    ctx = make_ctx()
    s = strategy("services")
    old, _ = create("services", service(type="NodePort"), ctx)
    used = ctx.allocators["node-port"].used_count()  # type: ignore[attr-defined]

    def to_cluster_ip(d: dict[str, Any]) -> None:
        d["spec"]["type"] = "ClusterIP"
        d["spec"].pop("externalTrafficPolicy")
        d["spec"]["ports"][0].pop("nodePort")

    new, causes = update("services", old, to_cluster_ip, ctx)
    assert causes == []
    s.after_update(new, old, ctx)  # type: ignore[attr-defined]
    assert ctx.allocators["node-port"].used_count() == used - 1  # type: ignore[attr-defined]


def test_service_aborted_writes_give_values_back() -> None:
    ctx = make_ctx()
    s = strategy("services")
    obj, _ = create("services", service(type="NodePort"), ctx)
    s.abort_create(obj, ctx)  # type: ignore[attr-defined]
    assert ctx.allocators["node-port"].used_count() == 0  # type: ignore[attr-defined]
    assert ctx.allocators["service-ip"].used_count() == 0  # type: ignore[attr-defined]
    old, _ = create("services", service(), ctx)

    def to_node_port(d: dict[str, Any]) -> None:
        d["spec"]["type"] = "NodePort"

    new, causes = update("services", old, to_node_port, ctx)
    assert causes == [] and new.spec.ports[0].nodePort
    s.abort_update(new, old, ctx)  # type: ignore[attr-defined]
    assert ctx.allocators["node-port"].used_count() == 0  # type: ignore[attr-defined]
    assert ctx.allocators["service-ip"].used_count() == 1  # type: ignore[attr-defined]


def test_service_field_set() -> None:
    obj, _ = create("services", service(clusterIP="10.96.0.10"))
    assert strategy("services").field_set(obj) == {
        "metadata.name": "web", "metadata.namespace": "default",
        "spec.clusterIP": "10.96.0.10", "spec.type": "ClusterIP"}


def test_service_name_is_a_dns1035_label() -> None:
    s = strategy("services")
    assert s.name_validator("1web", False) != []  # type: ignore[attr-defined]
    assert strategy("pods").name_validator("1web", False) == []  # type: ignore[attr-defined]


# -- allocators ---------------------------------------------------------------------------------

def test_ip_allocator_range_and_reuse() -> None:
    alloc = IPRangeAllocator("10.0.0.0/29")  # .1 reserved, .2-.6 usable, .7 broadcast
    got = {alloc.allocate() for _ in range(5)}
    assert got == {f"10.0.0.{i}" for i in range(2, 7)}
    with pytest.raises(ValueError, match="range is full"):
        alloc.allocate()
    assert alloc.allocate("10.0.0.1") == "10.0.0.1"  # the kubernetes Service asks for it
    alloc.release("10.0.0.4")
    assert alloc.allocate() == "10.0.0.4"
    with pytest.raises(ValueError, match="not in the valid range"):
        alloc.allocate("10.0.0.7")


def test_allocators_reseed_from_stored_values() -> None:
    ips = IPRangeAllocator("10.96.0.0/12")
    ips.mark_used(["10.96.0.10", "192.168.1.1", "junk"])
    with pytest.raises(ValueError, match="already allocated"):
        ips.allocate("10.96.0.10")
    ports = PortRangeAllocator("30000-30002")
    ports.mark_used(["30001", "80"])
    assert {ports.allocate(), ports.allocate()} == {"30000", "30002"}
    with pytest.raises(ValueError):
        ports.allocate()


def test_dynamic_ips_avoid_the_low_band() -> None:
    alloc = IPRangeAllocator("10.96.0.0/12")
    first = alloc.allocate()
    assert first == "10.96.1.1"  # above the 256-address static band
    ports = PortRangeAllocator("30000-32767")
    assert ports.allocate() == "30086"  # above the 86-port static band


def test_bad_ranges_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="invalid service CIDR"):
        IPRangeAllocator("10.96.0.0/40")
    with pytest.raises(ValueError, match="invalid port range"):
        PortRangeAllocator("abc")


def test_strategies_register_for_every_module() -> None:
    assert type(strategy("pods")).__name__ == "PodStrategy"
    assert type(strategy("services")).__name__ == "ServiceStrategy"
    assert isinstance(make_ctx().allocators["service-ip"], IPRangeAllocator)
    assert core_pb2.Pod is strategy("pods").kind.message


# -- apps -------------------------------------------------------------------------------------

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}


def workload(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}},
                            "template": copy.deepcopy(TEMPLATE)}
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "default", "uid": "u1"}, "spec": base}


def test_deployment_defaults() -> None:
    obj, causes = create("deployments.apps", workload())
    assert causes == []
    spec = as_dict(obj)["spec"]
    assert spec["replicas"] == 1
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    tspec = spec["template"]["spec"]
    assert (tspec["restartPolicy"], tspec["dnsPolicy"]) == ("Always", "ClusterFirst")
    assert tspec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "enableServiceLinks" not in tspec and "tolerations" not in tspec  # pods only
    assert "status" not in as_dict(obj)


def test_deployment_keeps_zero_replicas_and_recreate() -> None:
    obj, causes = create("deployments.apps", workload(replicas=0, strategy={"type": "Recreate"}))
    assert causes == []
    spec = as_dict(obj)["spec"]
    assert spec["replicas"] == 0
    assert spec["strategy"] == {"type": "Recreate"}


def test_workload_status_is_cleared_on_create() -> None:
    data = workload()
    data["status"] = {"replicas": 5}
    obj, _ = create("deployments.apps", data)
    assert not obj.HasField("status")


WORKLOAD_INVALID = [
    ("deployments.apps", "no selector", {"selector": None}, "spec.selector", "Required value"),
    ("deployments.apps", "selector mismatch", {"selector": {"matchLabels": {"app": "db"}}},
     "spec.template.metadata.labels",
     'Invalid value: map[string]string{"app":"web"}: `selector` does not match template '
     '`labels`'),
    ("deployments.apps", "empty selector", {"selector": {}}, "spec.selector", None),
    ("deployments.apps", "negative replicas", {"replicas": -1}, "spec.replicas",
     "Invalid value: -1: must be greater than or equal to 0"),
    ("deployments.apps", "restart policy", {"template": {**TEMPLATE, "spec": {
        **TEMPLATE["spec"], "restartPolicy": "Never"}}},
     "spec.template.spec.restartPolicy",
     'Unsupported value: "Never": supported values: "Always"'),
    ("deployments.apps", "container image", {"template": {**TEMPLATE, "spec": {
        "containers": [{"name": "web"}]}}},
     "spec.template.spec.containers[0].image", "Required value"),
    ("deployments.apps", "zero surge and unavailable", {"strategy": {
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}},
     "spec.strategy.rollingUpdate.maxUnavailable",
     "Invalid value: 0: may not be 0 when `maxSurge` is 0"),
    ("deployments.apps", "bad percent", {"strategy": {"rollingUpdate": {"maxSurge": "120%"}}},
     "spec.strategy.rollingUpdate.maxSurge",
     'Invalid value: "120%": must not be greater than 100%'),
    ("deployments.apps", "recreate with rolling", {"strategy": {
        "type": "Recreate", "rollingUpdate": {"maxSurge": 1}}},
     "spec.strategy.rollingUpdate",
     "Forbidden: may not be specified when strategy `type` is 'Recreate'"),
    ("deployments.apps", "progress deadline", {"minReadySeconds": 700},
     "spec.progressDeadlineSeconds", "Invalid value: 600: must be greater than minReadySeconds"),
    ("replicasets.apps", "no selector", {"selector": None}, "spec.selector", "Required value"),
    ("statefulsets.apps", "bad pod management", {"podManagementPolicy": "Fast"},
     "spec.podManagementPolicy",
     'Unsupported value: "Fast": supported values: "OrderedReady", "Parallel"'),
    ("daemonsets.apps", "restart policy", {"template": {**TEMPLATE, "spec": {
        **TEMPLATE["spec"], "restartPolicy": "OnFailure"}}},
     "spec.template.spec.restartPolicy", None),
    ("daemonsets.apps", "selector mismatch", {"selector": {"matchLabels": {"x": "y"}}},
     "spec.template.metadata.labels", None),
]


@pytest.mark.parametrize(("resource", "spec", "field", "message"),
                         [c[:1] + c[2:] for c in WORKLOAD_INVALID],
                         ids=[f"{c[0]}-{c[1]}" for c in WORKLOAD_INVALID])
def test_workload_invalid(resource: str, spec: dict[str, Any], field: str,
                          message: str | None) -> None:
    data = workload(**spec)
    if data["spec"].get("selector") is None:
        data["spec"].pop("selector")
    _, causes = create(resource, data)
    assert field in fields(causes), causes
    if message is not None:
        assert message in [c.message for c in causes if c.field == field]


@pytest.mark.parametrize("resource", ["deployments.apps", "replicasets.apps",
                                      "statefulsets.apps", "daemonsets.apps"])
def test_selector_is_immutable(resource: str) -> None:
    old, causes = create(resource, workload())
    assert causes == []

    def edit(d: dict[str, Any]) -> None:
        d["spec"]["selector"]["matchLabels"]["tier"] = "front"
        d["spec"]["template"]["metadata"]["labels"]["tier"] = "front"

    _, causes = update(resource, old, edit)
    if resource == "statefulsets.apps":  # Kubernetes' catch-all for StatefulSet spec fields
        assert fields(causes) == ["spec"]
    else:
        assert [c.message.endswith("field is immutable") for c in causes
                if c.field == "spec.selector"] == [True]


def test_deployment_update_scales_and_changes_image() -> None:
    old, _ = create("deployments.apps", workload())

    def edit(d: dict[str, Any]) -> None:
        d["spec"]["replicas"] = 5
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"

    new, causes = update("deployments.apps", old, edit)
    assert causes == []
    assert strategy("deployments.apps").spec_changed(new, old)


def test_statefulset_defaults_and_update_rule() -> None:
    obj, causes = create("statefulsets.apps", workload(
        serviceName="web",
        volumeClaimTemplates=[{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]))
    assert causes == []
    spec = as_dict(obj)["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                            "whenScaled": "Retain"}
    assert (spec["replicas"], spec["revisionHistoryLimit"]) == (1, 10)
    claim = spec["volumeClaimTemplates"][0]
    assert claim["spec"]["volumeMode"] == "Filesystem"
    assert claim["status"] == {"phase": "Pending"}
    _, causes = update("statefulsets.apps", obj, lambda d: d["spec"].update(replicas=3))
    assert causes == []
    _, causes = update("statefulsets.apps", obj, lambda d: d["spec"].update(serviceName="db"))
    assert fields(causes) == ["spec"]
    assert "updates to statefulset spec for fields other than 'replicas'" in causes[0].message


def test_daemonset_defaults() -> None:
    obj, causes = create("daemonsets.apps", workload())
    assert causes == []
    spec = as_dict(obj)["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate",
                                      "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert spec["revisionHistoryLimit"] == 10


def test_replicaset_field_set() -> None:
    obj, _ = create("replicasets.apps", workload())
    assert strategy("replicasets.apps").field_set(obj)["status.replicas"] == "0"


# -- batch ------------------------------------------------------------------------------------

def job(**spec: Any) -> dict[str, Any]:
    template = {"spec": {"restartPolicy": "Never",
                         "containers": [{"name": "pi", "image": "perl:5.34"}]}}
    base: dict[str, Any] = {"template": template}
    base.update(spec)
    return {"metadata": {"name": "pi", "namespace": "default", "uid": "uid-1"}, "spec": base}


def test_job_defaults_and_generated_selector() -> None:
    obj, causes = create("jobs.batch", job())
    assert causes == []
    spec = as_dict(obj)["spec"]
    assert (spec["parallelism"], spec["completions"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False and spec["manualSelector"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "uid-1"}}
    assert spec["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": "uid-1", "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "uid-1", "job-name": "pi"}
    assert as_dict(obj)["metadata"]["labels"] == spec["template"]["metadata"]["labels"]


def test_job_parallelism_without_completions() -> None:
    obj, causes = create("jobs.batch", job(parallelism=3))
    assert causes == []
    assert obj.spec.parallelism == 3 and not obj.spec.HasField("completions")


JOB_INVALID = [
    ("restart always", {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}},
     "spec.template.spec.restartPolicy",
     'Unsupported value: "Always": supported values: "OnFailure", "Never"'),
    ("selector without manualSelector", {"selector": {"matchLabels": {"a": "b"}}},
     "spec.selector", None),
    ("negative backoff", {"backoffLimit": -1}, "spec.backoffLimit", None),
    ("indexed needs completions", {"completionMode": "Indexed", "parallelism": 2},
     "spec.completions", "Required value: when completion mode is Indexed"),
]


@pytest.mark.parametrize(("spec", "field", "message"), [c[1:] for c in JOB_INVALID],
                         ids=[c[0] for c in JOB_INVALID])
def test_job_invalid(spec: dict[str, Any], field: str, message: str | None) -> None:
    _, causes = create("jobs.batch", job(**spec))
    assert field in fields(causes), causes
    if message is not None:
        assert message in [c.message for c in causes if c.field == field]


def test_job_selector_and_template_are_immutable() -> None:
    old, _ = create("jobs.batch", job())
    _, causes = update("jobs.batch", old,
                       lambda d: d["spec"]["selector"]["matchLabels"].update(x="y"))
    assert "spec.selector" in fields(causes)
    _, causes = update("jobs.batch", old, lambda d: d["spec"]["template"]["spec"][
        "containers"][0].update(image="perl:6"))
    assert "spec.template" in fields(causes)
    new, causes = update("jobs.batch", old, lambda d: d["spec"].update(suspend=True))
    assert causes == [] and new.spec.suspend


def cronjob(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"schedule": "*/5 * * * *",
                            "jobTemplate": {"spec": job()["spec"]}}
    base.update(spec)
    return {"metadata": {"name": "tick", "namespace": "default"}, "spec": base}


def test_cronjob_defaults() -> None:
    obj, causes = create("cronjobs.batch", cronjob())
    assert causes == []
    spec = as_dict(obj)["spec"]
    assert spec["concurrencyPolicy"] == "Allow"
    assert spec["suspend"] is False
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    tspec = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert tspec["terminationGracePeriodSeconds"] == 30
    assert "backoffLimit" not in spec["jobTemplate"]["spec"]  # only Jobs get job defaults


@pytest.mark.parametrize(
    ("schedule", "error"),
    [
        ("*/5 * * * *", None), ("0 0 * * 0", None), ("@hourly", None), ("@daily", None),
        ("@every 1h30m", None), ("0 9 * JAN-MAR MON-FRI", None), ("15 2 1,15 * ?", None),
        ("bad", "expected exactly 5 fields, found 1: [bad]"),
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("70 * * * *", "end of range (70) above maximum (59): 70"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("5-2 * * * *", "beginning of range (5) beyond end of range (2): 5-2"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ("x * * * *", None),
    ],
)
def test_cron_schedules(schedule: str, error: str | None) -> None:
    from pilothouse.services.apiserver.strategies.batch import cron_errors

    got = cron_errors(schedule)
    if schedule.startswith("x"):
        assert got and got[0].startswith("failed to parse int from x")
    else:
        assert got == ([error] if error else [])


CRONJOB_INVALID = [
    ("schedule", {"schedule": "every minute"}, "spec.schedule", None),
    ("TZ in schedule", {"schedule": "CRON_TZ=UTC 0 * * * *"}, "spec.schedule",
     'Invalid value: "CRON_TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, use '
     "timeZone field instead"),
    ("time zone", {"timeZone": "Mars/Olympus"}, "spec.timeZone",
     'Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus'),
    ("local time zone", {"timeZone": "Local"}, "spec.timeZone", None),
    ("concurrency", {"concurrencyPolicy": "Sometimes"}, "spec.concurrencyPolicy", None),
    ("job template restart", {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "x"}]}}}}},
     "spec.jobTemplate.spec.template.spec.restartPolicy", None),
]


@pytest.mark.parametrize(("spec", "field", "message"), [c[1:] for c in CRONJOB_INVALID],
                         ids=[c[0] for c in CRONJOB_INVALID])
def test_cronjob_invalid(spec: dict[str, Any], field: str, message: str | None) -> None:
    _, causes = create("cronjobs.batch", cronjob(**spec))
    assert field in fields(causes), causes
    if message is not None:
        assert message in [c.message for c in causes if c.field == field]


def test_cronjob_time_zone_and_name_length() -> None:
    _, causes = create("cronjobs.batch", cronjob(timeZone="Europe/Berlin"))
    assert causes == []
    data = cronjob()
    data["metadata"]["name"] = "n" * 53
    _, causes = create("cronjobs.batch", data)
    assert [(c.field, c.message.split(": ")[-1]) for c in causes] == [
        ("metadata.name", "must be no more than 52 characters")]


# -- namespaces, nodes, configmaps, secrets, events ---------------------------------------------

def test_namespace_create_and_update() -> None:
    obj, causes = create("namespaces", {"metadata": {"name": "team-a"}})
    assert causes == []
    d = as_dict(obj)
    assert d["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert d["spec"] == {"finalizers": ["kubernetes"]}
    assert d["status"] == {"phase": "Active"}

    def edit(data: dict[str, Any]) -> None:
        data["spec"]["finalizers"] = []
        data["status"]["phase"] = "Terminating"
        data["metadata"]["labels"] = {"kubernetes.io/metadata.name": "other", "team": "a"}

    new, causes = update("namespaces", obj, edit)
    assert causes == []
    assert list(new.spec.finalizers) == ["kubernetes"]  # only through /finalize
    assert new.status.phase == "Active"
    assert dict(new.metadata.labels) == {"kubernetes.io/metadata.name": "team-a", "team": "a"}
    assert strategy("namespaces").field_set(new) == {"metadata.name": "team-a",
                                                     "status.phase": "Active"}


def test_namespace_finalize_and_names() -> None:
    s = strategy("namespaces")
    obj, _ = create("namespaces", {"metadata": {"name": "team-a"}})
    new = type(obj)()
    new.CopyFrom(obj)
    del new.spec.finalizers[:]
    new.metadata.labels["sneaky"] = "x"
    s.prepare_for_finalize(new, obj, make_ctx())  # type: ignore[attr-defined]
    assert list(new.spec.finalizers) == [] and "sneaky" not in new.metadata.labels
    assert s.name_validator("a.b", False) != []  # type: ignore[attr-defined]
    _, causes = create("namespaces", {"metadata": {"name": "x"},
                                      "spec": {"finalizers": ["custom"]}})
    assert [(c.field, c.message) for c in causes] == [
        ("spec.finalizers[0]", 'Invalid value: "custom": name is neither a standard finalizer '
                               "name nor is it fully qualified")]


def test_node_taints_and_field_set() -> None:
    obj, causes = create("nodes", {"metadata": {"name": "n1"}, "spec": {
        "unschedulable": True, "taints": [{"key": "k", "effect": "NoSchedule"}]},
        "status": {"capacity": {"cpu": "2"}}})
    assert causes == []
    assert as_dict(obj)["status"] == {"capacity": {"cpu": "2"}}  # the kubelet's own report
    assert strategy("nodes").field_set(obj) == {"metadata.name": "n1",
                                                "spec.unschedulable": "true"}
    _, causes = create("nodes", {"metadata": {"name": "n1"}, "spec": {"taints": [
        {"key": "k", "effect": "Sometimes"}, {"key": "k", "effect": "NoSchedule"},
        {"key": "k", "effect": "NoSchedule"}]}})
    assert fields(causes) == ["spec.taints[0].effect", "spec.taints[2]"]
    assert causes[1].message.endswith("taints must be unique by key and effect pair")


def test_node_pod_cidr_is_set_once() -> None:
    old, _ = create("nodes", {"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.244.0.0/24"]}})
    _, causes = update("nodes", old, lambda d: d["spec"].update(podCIDRs=["10.244.1.0/24"]))
    assert fields(causes) == ["spec.podCIDRs"]


def test_configmap_keys_size_and_immutable() -> None:
    _, causes = create("configmaps", {"metadata": {"name": "c", "namespace": "d"},
                                      "data": {"ok.key": "v", "bad key": "v"},
                                      "binaryData": {"ok.key": "dg=="}})
    assert fields(causes) == ["data[bad key]", "binaryData[ok.key]"]
    _, causes = create("configmaps", {"metadata": {"name": "c", "namespace": "d"},
                                      "data": {"big": "x" * (1024 * 1024)}})
    assert [(c.reason, c.message) for c in causes] == [
        ("FieldValueTooLong", "Too long: may not be more than 1048576 bytes")]
    old, _ = create("configmaps", {"metadata": {"name": "c", "namespace": "d"},
                                   "data": {"a": "1"}, "immutable": True})
    _, causes = update("configmaps", old, lambda d: d["data"].update(a="2"))
    assert [(c.field, c.message) for c in causes] == [
        ("data", "Forbidden: field is immutable when `immutable` is set")]
    _, causes = update("configmaps", old, lambda d: d.update(immutable=False))
    assert fields(causes) == ["immutable"]
    _, causes = update("configmaps", old, lambda d: d["metadata"].update(labels={"a": "b"}))
    assert causes == []


def test_secret_string_data_and_type() -> None:
    obj, causes = create("secrets", {"metadata": {"name": "s", "namespace": "d"},
                                     "data": {"a": "b2xk", "b": "Yg=="},
                                     "stringData": {"a": "new"}})
    assert causes == []
    d = as_dict(obj)
    assert d["type"] == "Opaque"
    assert d["data"] == {"a": "bmV3", "b": "Yg=="}  # stringData wins, base64 on the wire
    assert "stringData" not in d
    assert strategy("secrets").field_set(obj)["type"] == "Opaque"
    _, causes = update("secrets", obj, lambda d: d.update(type="kubernetes.io/tls"))
    assert ("type", 'Invalid value: "kubernetes.io/tls": field is immutable') in \
        [(c.field, c.message) for c in causes]


@pytest.mark.parametrize(
    ("secret_type", "data", "expected"),
    [
        ("kubernetes.io/tls", {"tls.crt": "eA=="}, ["data[tls.key]"]),
        ("kubernetes.io/dockerconfigjson", {}, ["data[.dockerconfigjson]"]),
        ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": "bm9wZQ=="},
         ["data[.dockerconfigjson]"]),
        ("kubernetes.io/basic-auth", {}, ["data[username]", "data[password]"]),
        ("kubernetes.io/ssh-auth", {"ssh-privatekey": "eA=="}, []),
        ("kubernetes.io/service-account-token", {},
         ["metadata.annotations[kubernetes.io/service-account.name]"]),
        ("example.com/custom", {}, []),
    ],
)
def test_secret_types(secret_type: str, data: dict[str, str], expected: list[str]) -> None:
    _, causes = create("secrets", {"metadata": {"name": "s", "namespace": "d"},
                                   "type": secret_type, "data": data})
    assert fields(causes) == expected


def test_event_namespace_and_field_set() -> None:
    event = {"metadata": {"name": "web.1", "namespace": "default"},
             "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default",
                                "uid": "u1"},
             "reason": "Scheduled", "type": "Normal", "source": {"component": "scheduler"}}
    obj, causes = create("events", event)
    assert causes == []
    fs = strategy("events").field_set(obj)
    assert (fs["involvedObject.kind"], fs["involvedObject.name"], fs["reason"], fs["source"],
            fs["type"]) == ("Pod", "web", "Scheduled", "scheduler", "Normal")
    event["involvedObject"]["namespace"] = "other"  # type: ignore[index]
    _, causes = create("events", event)
    assert [(c.field, c.message) for c in causes] == [
        ("involvedObject.namespace", 'Invalid value: "other": does not match event.namespace')]


# -- leases, priority classes, endpoint slices, PDBs ------------------------------------------

def test_lease_validation() -> None:
    _, causes = create("leases.coordination.k8s.io", {
        "metadata": {"name": "n1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}})
    assert causes == []
    _, causes = create("leases.coordination.k8s.io", {
        "metadata": {"name": "n1", "namespace": "kube-node-lease"},
        "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}})
    assert fields(causes) == ["spec.leaseDurationSeconds", "spec.leaseTransitions"]


def test_priority_class_rules() -> None:
    resource = "priorityclasses.scheduling.k8s.io"
    obj, causes = create(resource, {"metadata": {"name": "high"}, "value": 1000})
    assert causes == [] and obj.preemptionPolicy == "PreemptLowerPriority"
    _, causes = create(resource, {"metadata": {"name": "huge"}, "value": 2_000_000_000})
    assert [(c.field, c.message) for c in causes] == [
        ("value", "Forbidden: maximum allowed value of a user defined priority is 1000000000")]
    _, causes = create(resource, {"metadata": {"name": "system-mine"}, "value": 5})
    assert fields(causes) == ["metadata.name"]
    assert "reserved for system use only" in causes[0].message
    _, causes = create(resource, {"metadata": {"name": "system-node-critical"},
                                  "value": 2000001000})
    assert causes == []
    _, causes = update(resource, obj, lambda d: d.update(value=2000))
    assert [(c.field, c.message) for c in causes] == [
        ("value", "Forbidden: may not be changed in an update.")]


def test_endpoint_slice_validation() -> None:
    resource = "endpointslices.discovery.k8s.io"
    good = {"metadata": {"name": "web-abc", "namespace": "d"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    obj, causes = create(resource, good)
    assert causes == []
    _, causes = create(resource, {**good, "addressType": None})
    assert ("addressType", "Required value") in [(c.field, c.message) for c in causes]
    _, causes = create(resource, {**good, "endpoints": [{"addresses": ["fe80::1"]}, {}]})
    assert fields(causes) == ["endpoints[0].addresses[0]", "endpoints[1].addresses"]
    _, causes = update(resource, obj, lambda d: d.update(addressType="IPv6", endpoints=[]))
    assert fields(causes) == ["addressType"]


def test_pdb_validation() -> None:
    resource = "poddisruptionbudgets.policy"
    obj, causes = create(resource, {"metadata": {"name": "p", "namespace": "d"},
                                    "spec": {"minAvailable": "50%",
                                             "selector": {"matchLabels": {"app": "web"}}},
                                    "status": {"currentHealthy": 3}})
    assert causes == [] and not obj.HasField("status")
    _, causes = create(resource, {"metadata": {"name": "p", "namespace": "d"},
                                  "spec": {"minAvailable": 1, "maxUnavailable": "150%"}})
    assert fields(causes) == ["spec", "spec.maxUnavailable"]
    assert causes[0].message.endswith("minAvailable and maxUnavailable cannot be both set")


# -- RBAC ---------------------------------------------------------------------------------------

RBAC = "rbac.authorization.k8s.io"


def test_role_rules() -> None:
    _, causes = create(f"roles.{RBAC}", {
        "metadata": {"name": "reader", "namespace": "d"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    assert causes == []
    _, causes = create(f"roles.{RBAC}", {
        "metadata": {"name": "reader", "namespace": "d"},
        "rules": [{"resources": ["pods"]}, {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]})
    assert [(c.field, c.message) for c in causes] == [
        ("rules[0].verbs", "Required value: verbs must contain at least one value"),
        ("rules[0].apiGroups", "Required value: resource rules must supply at least one api "
                               "group"),
        ("rules[1].nonResourceURLs", 'Invalid value: []string{"/healthz"}: namespaced rules '
                                     "cannot apply to non-resource URLs"),
    ]
    _, causes = create(f"clusterroles.{RBAC}", {
        "metadata": {"name": "system:health"},
        "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]})
    assert causes == []  # a path segment name may hold ':'


def test_bindings_defaults_validation_and_immutable_role_ref() -> None:
    binding = {"metadata": {"name": "admins"},
               "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "User", "name": "alice"},
                            {"kind": "ServiceAccount", "name": "ci", "namespace": "d"}]}
    obj, causes = create(f"clusterrolebindings.{RBAC}", binding)
    assert causes == []
    d = as_dict(obj)
    assert d["roleRef"]["apiGroup"] == RBAC
    assert d["subjects"][0]["apiGroup"] == RBAC
    _, causes = update(f"clusterrolebindings.{RBAC}", obj,
                       lambda d: d["roleRef"].update(name="view"))
    assert [c.message.endswith("cannot change roleRef") for c in causes] == [True]
    bad = copy.deepcopy(binding)
    bad["roleRef"]["kind"] = "Role"
    bad["subjects"] = [{"kind": "ServiceAccount", "name": "ci"}, {"kind": "Robot", "name": "r"}]
    _, causes = create(f"clusterrolebindings.{RBAC}", bad)
    assert fields(causes) == ["roleRef.kind", "subjects[0].namespace", "subjects[1].kind"]


# -- CRDs ---------------------------------------------------------------------------------------

def crd(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "group": "example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "kind": "Widget"},
        "versions": [{"name": "v1", "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {"type": "object"}}}]}
    base.update(spec)
    return {"metadata": {"name": "widgets.example.com"}, "spec": base}


def test_crd_defaults_and_stored_versions() -> None:
    resource = "customresourcedefinitions.apiextensions.k8s.io"
    obj, causes = create(resource, crd())
    assert causes == []
    d = as_dict(obj)
    assert d["spec"]["names"]["singular"] == "widget"
    assert d["spec"]["names"]["listKind"] == "WidgetList"
    assert d["spec"]["conversion"] == {"strategy": "None"}
    assert d["status"]["storedVersions"] == ["v1"]

    def add_v2(data: dict[str, Any]) -> None:
        data["spec"]["versions"][0]["storage"] = False
        data["spec"]["versions"].append({"name": "v2", "served": True, "storage": True})

    new, causes = update(resource, obj, add_v2)
    assert causes == []
    assert list(new.status.storedVersions) == ["v1", "v2"]


CRD_INVALID = [
    ("name", {"names": {"plural": "gadgets", "kind": "Gadget"}}, "metadata.name",
     'Invalid value: "widgets.example.com": must be spec.names.plural+"."+spec.group'),
    ("group without dot", {"group": "example"}, "spec.group", None),
    ("scope", {"scope": "Galaxy"}, "spec.scope", None),
    ("two storage versions", {"versions": [
        {"name": "v1", "served": True, "storage": True},
        {"name": "v2", "served": True, "storage": True}]}, "spec.versions", None),
    ("duplicate versions", {"versions": [
        {"name": "v1", "served": True, "storage": True},
        {"name": "v1", "served": True}]}, "spec.versions[1].name", 'Duplicate value: "v1"'),
    ("no kind", {"names": {"plural": "widgets"}}, "spec.names.kind", "Required value"),
]


@pytest.mark.parametrize(("spec", "field", "message"), [c[1:] for c in CRD_INVALID],
                         ids=[c[0] for c in CRD_INVALID])
def test_crd_invalid(spec: dict[str, Any], field: str, message: str | None) -> None:
    data = crd(**spec)
    if spec.get("group") == "example":
        data["metadata"]["name"] = "widgets.example"
    _, causes = create("customresourcedefinitions.apiextensions.k8s.io", data)
    assert field in fields(causes), causes
    if message is not None:
        assert message in [c.message for c in causes if c.field == field]


def test_crd_scope_is_immutable() -> None:
    resource = "customresourcedefinitions.apiextensions.k8s.io"
    obj, _ = create(resource, crd())
    _, causes = update(resource, obj, lambda d: d["spec"].update(scope="Cluster"))
    assert fields(causes) == ["spec.scope"]


def test_every_strategy_defaults_idempotently_and_validates_its_minimal_object() -> None:
    samples = {
        "pods": pod(), "services": service(), "deployments.apps": workload(),
        "jobs.batch": job(), "cronjobs.batch": cronjob(),
        "namespaces": {"metadata": {"name": "x"}},
        "customresourcedefinitions.apiextensions.k8s.io": crd(),
    }
    for resource, data in samples.items():
        ctx = make_ctx()
        obj, causes = create(resource, data, ctx)
        assert causes == [], resource
        again = type(obj)()
        again.CopyFrom(obj)
        s = strategy(resource)
        s.default(again, ctx)
        assert again == obj, resource
