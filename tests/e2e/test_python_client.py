"""The official ``kubernetes`` Python client against `pilothouse up`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.e2e.conftest import Cluster, start_cluster, stop_cluster


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture
def ns(api: client.ApiClient, request: pytest.FixtureRequest) -> str:
    name = "py-" + request.node.name.replace("_", "-").lower()[:40].strip("-")
    client.CoreV1Api(api).create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(name=name)))
    return name


def _cm(name: str, **data: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels={"app": "py"}),
                              data=data or {"k": "v"})


def test_crud(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(ns, _cm("one", a="1"))
    assert created.metadata.uid and created.metadata.resource_version
    read = core.read_namespaced_config_map("one", ns)
    assert read.data == {"a": "1"}
    read.data["a"] = "2"
    replaced = core.replace_namespaced_config_map("one", ns, read)
    assert replaced.data == {"a": "2"}
    read.data["a"] = "3"  # stale resourceVersion
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("one", ns, read)
    assert conflict.value.status == 409
    core.delete_namespaced_config_map("one", ns)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("one", ns)
    assert missing.value.status == 404


def test_typed_workloads(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    body = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(
                    name="web", image="nginx:1.25",
                    ports=[client.V1ContainerPort(container_port=80)],
                    resources=client.V1ResourceRequirements(requests={"cpu": "250m"}))]))))
    created = apps.create_namespaced_deployment(ns, body)
    assert created.spec.strategy.type == "RollingUpdate"  # defaulted by the server
    assert created.spec.template.spec.containers[0].resources.requests == {"cpu": "250m"}
    scale = apps.read_namespaced_deployment_scale("web", ns)
    assert scale.spec.replicas == 2
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 4


def test_list_paging(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    for i in range(12):
        core.create_namespaced_config_map(ns, _cm(f"page-{i:02d}"))
    names: list[str] = []
    token = None
    pages = 0
    while True:
        result = core.list_namespaced_config_map(ns, limit=5, _continue=token)
        pages += 1
        names += [item.metadata.name for item in result.items]
        token = result.metadata._continue
        if not token:
            break
    assert pages == 3
    assert names == [f"page-{i:02d}" for i in range(12)]


def test_watch_and_resume(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, _cm("w1"))
    core.patch_namespaced_config_map("w1", ns, {"data": {"k": "changed"}})
    core.delete_namespaced_config_map("w1", ns)
    seen = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, ns, resource_version=rv,
                          timeout_seconds=10):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_restart_resumes_state_and_old_watch_is_gone(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("restart")
    first = start_cluster(data_dir)
    try:
        api_client = config.new_client_from_config(config_file=str(first.kubeconfig))
        core = client.CoreV1Api(api_client)
        created = core.create_namespaced_config_map("default", _cm("kept", a="1"))
        old_rv = created.metadata.resource_version
        core.patch_namespaced_config_map("kept", "default", {"data": {"a": "2"}})
        api_client.close()
    finally:
        assert stop_cluster(first) == 0
    second = start_cluster(data_dir)  # `pilothouse up` again on the same data dir
    try:
        api_client = config.new_client_from_config(config_file=str(second.kubeconfig))
        core = client.CoreV1Api(api_client)
        assert core.read_namespaced_config_map("kept", "default").data == {"a": "2"}
        with pytest.raises(ApiException) as gone:
            for _ in watch.Watch().stream(core.list_namespaced_config_map, "default",
                                          resource_version=old_rv, timeout_seconds=5):
                pass
        assert gone.value.status == 410
        api_client.close()
    finally:
        stop_cluster(second)


def test_patch_kinds(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(ns, _cm("p", a="1"))
    merged = core.patch_namespaced_config_map("p", ns, {"data": {"b": "2"}})
    assert merged.data == {"a": "1", "b": "2"}
    json_patched = core.patch_namespaced_config_map(
        "p", ns, [{"op": "remove", "path": "/data/a"}])
    assert json_patched.data == {"b": "2"}
    labelled = core.patch_namespaced_config_map("p", ns, {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.labels == {"app": "py", "x": "y"}
