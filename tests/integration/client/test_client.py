"""The typed client against a real apiserver, over every transport."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.client import APIError, Client, is_conflict, is_not_found
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.apiserver.server import APIServer, APIServerConfig
from tests.integration.client.conftest import TRANSPORTS, make_client


def make_cm(name: str, namespace: str = "default", **data: str) -> core_pb2.ConfigMap:
    cm = core_pb2.ConfigMap()
    cm.metadata.name = name
    cm.metadata.namespace = namespace
    cm.data.update(data or {"k": "v"})
    return cm


def make_pod(name: str, namespace: str = "default", node: str = "") -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = namespace
    container = pod.spec.containers.add()
    container.name = "c"
    container.image = "busybox"
    if node:
        pod.spec.nodeName = node
    return pod


async def test_crud_round_trip(client: Client) -> None:
    created = await client.create(make_cm("a", x="1"))
    assert isinstance(created, core_pb2.ConfigMap)
    assert created.metadata.uid and created.metadata.resourceVersion
    got = await client.get(core_pb2.ConfigMap, "a", namespace="default")
    assert dict(got.data) == {"x": "1"}
    got.data["y"] = "2"
    updated = await client.update(got)
    assert dict(updated.data) == {"x": "1", "y": "2"}
    assert updated.metadata.resourceVersion != got.metadata.resourceVersion
    patched = await client.patch(core_pb2.ConfigMap, "a", {"data": {"z": "3"}},
                                 namespace="default")
    assert patched.data["z"] == "3"
    deleted = await client.delete(core_pb2.ConfigMap, "a", namespace="default")
    assert deleted is not None and deleted.metadata.name == "a"
    with pytest.raises(APIError) as info:
        await client.get(core_pb2.ConfigMap, "a", namespace="default")
    assert info.value.is_not_found() and is_not_found(info.value)
    assert info.value.code == 404


async def test_errors_carry_the_status(client: Client) -> None:
    await client.create(make_cm("dup"))
    with pytest.raises(APIError) as exists:
        await client.create(make_cm("dup"))
    assert exists.value.is_already_exists() and exists.value.code == 409
    assert not exists.value.is_conflict()
    stale = await client.get(core_pb2.ConfigMap, "dup", namespace="default")
    fresh = await client.get(core_pb2.ConfigMap, "dup", namespace="default")
    fresh.data["k"] = "changed"
    await client.update(fresh)  # bumps the resourceVersion
    with pytest.raises(APIError) as conflict:
        await client.update(stale)
    assert is_conflict(conflict.value) and conflict.value.reason == "Conflict"
    assert "dup" in conflict.value.message


async def test_list_paging_and_selectors(client: Client) -> None:
    for i in range(7):
        cm = make_cm(f"cm{i}")
        cm.metadata.labels["parity"] = "even" if i % 2 == 0 else "odd"
        await client.create(cm)
    await client.create(make_cm("elsewhere", namespace="kube-system"))
    page = await client.list(core_pb2.ConfigMap, namespace="default", limit=3)
    assert len(page.items) == 3 and page.continue_token
    everything = await client.list_all(core_pb2.ConfigMap, namespace="default", page_size=3)
    assert sorted(o.metadata.name for o in everything.items) == [f"cm{i}" for i in range(7)]
    assert everything.resource_version == page.resource_version or everything.resource_version
    odd = await client.list(core_pb2.ConfigMap, namespace="default", label_selector="parity=odd")
    assert sorted(o.metadata.name for o in odd.items) == ["cm1", "cm3", "cm5"]
    all_ns = await client.list(core_pb2.ConfigMap)
    assert "elsewhere" in {o.metadata.name for o in all_ns.items}
    by_name = await client.list(core_pb2.ConfigMap, namespace="default",
                                field_selector="metadata.name=cm4")
    assert [o.metadata.name for o in by_name.items] == ["cm4"]


async def test_update_status_only_changes_status(client: Client) -> None:
    deploy = apps_pb2.Deployment()
    deploy.metadata.name = "web"
    deploy.metadata.namespace = "default"
    deploy.spec.selector.matchLabels["app"] = "web"
    deploy.spec.template.metadata.labels["app"] = "web"
    c = deploy.spec.template.spec.containers.add()
    c.name, c.image = "web", "nginx"
    created = await client.create(deploy)
    created.status.observedGeneration = 1
    created.status.replicas = 3
    created.spec.replicas = 9  # ignored by the status subresource
    updated = await client.update_status(created)
    assert updated.status.replicas == 3
    assert updated.spec.replicas != 9


async def test_bind_sets_node_name(client: Client) -> None:
    await client.create(make_pod("p"))
    await client.bind("default", "p", "node-1")
    pod = await client.get(core_pb2.Pod, "p", namespace="default")
    assert pod.spec.nodeName == "node-1"


async def test_cluster_scoped_kinds_need_no_namespace(client: Client) -> None:
    node = core_pb2.Node()
    node.metadata.name = "n1"
    created = await client.create(node)
    assert created.metadata.namespace == ""
    nodes = await client.list(core_pb2.Node)
    assert [n.metadata.name for n in nodes.items] == ["n1"]


async def test_namespaced_kind_without_namespace_is_a_clear_error(client: Client) -> None:
    cm = make_cm("x", namespace="")
    with pytest.raises(ValueError, match="namespaced"):
        await client.create(cm)


async def test_watch_streams_changes_from_a_resource_version(client: Client) -> None:
    start = await client.list(core_pb2.ConfigMap, namespace="default")
    async with client.watch(core_pb2.ConfigMap, namespace="default",
                            resource_version=start.resource_version) as events:
        await client.create(make_cm("w1"))
        await client.patch(core_pb2.ConfigMap, "w1", {"data": {"k": "2"}}, namespace="default")
        await client.delete(core_pb2.ConfigMap, "w1", namespace="default")
        seen = []
        async for event in events:
            if event.type == "BOOKMARK":
                continue
            seen.append((event.type, event.object.metadata.name, event.object.data.get("k")))
            if len(seen) == 3:
                break
    assert seen == [("ADDED", "w1", "v"), ("MODIFIED", "w1", "2"), ("DELETED", "w1", "2")]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_watch_from_before_the_cache_window_is_gone(tmp_path: Path, transport: str) -> None:
    config = APIServerConfig(data_dir=tmp_path / "d", port=0)
    async with APIServer(config) as server, make_client(server, transport) as client:
        for i in range(3):
            await client.create(make_cm(f"g{i}-{transport}"))
    # Restarted on the same data: the watch cache starts at the current revision.
    async with APIServer(config) as server, make_client(server, transport) as client:
        with pytest.raises(APIError) as info:
            async with client.watch(core_pb2.ConfigMap, resource_version="1") as events:
                async for _ in events:
                    pass
        assert info.value.is_gone() and info.value.code == 410, transport


async def test_unreachable_server_is_a_connection_error() -> None:
    from pilothouse.client import APIConnectionError
    from pilothouse.client.rest import RestTransport

    async with Client(RestTransport("http://127.0.0.1:9", timeout=2)) as client:
        with pytest.raises(APIConnectionError):
            await client.get(core_pb2.ConfigMap, "x", namespace="default")


async def test_unreachable_grpc_server_is_a_connection_error() -> None:
    from pilothouse.client import APIConnectionError
    from pilothouse.client.grpc_transport import GrpcTransport

    async with Client(GrpcTransport("127.0.0.1:9", timeout=2)) as client:
        with pytest.raises(APIConnectionError):
            await client.get(core_pb2.ConfigMap, "x", namespace="default")


async def test_connect_picks_the_transport_from_the_url(apiserver: APIServer) -> None:
    from pilothouse.client import connect
    from pilothouse.client.grpc_transport import GrpcTransport
    from pilothouse.client.rest import RestTransport

    for url, transport in ((apiserver.url, RestTransport),
                           (f"grpc://{apiserver.grpc_address}", GrpcTransport)):
        async with connect(url) as client:
            assert isinstance(client.transport, transport)
            await client.create(make_cm(f"via-{transport.__name__.lower()}"))
    with pytest.raises(ValueError, match="unsupported apiserver URL"):
        connect("ftp://example")


async def test_eviction_over_rest_deletes_the_pod(apiserver: APIServer) -> None:
    async with make_client(apiserver, "rest") as client:
        await client.create(make_pod("victim"))
        await client.evict("default", "victim", grace_period_seconds=0)
        with pytest.raises(APIError) as info:
            await client.get(core_pb2.Pod, "victim", namespace="default")
        assert info.value.is_not_found()


async def test_eviction_over_grpc_is_a_clear_error(apiserver: APIServer) -> None:
    async with make_client(apiserver, "grpc") as client:
        await client.create(make_pod("victim"))
        with pytest.raises(APIError) as info:
            await client.evict("default", "victim")
        assert info.value.code == 405 and "REST" in info.value.message
