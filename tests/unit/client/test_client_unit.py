"""The typed client and REST transport without a server: paths, error mapping, bad answers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from pilothouse.client import APIConnectionError, APIError, Client, connect
from pilothouse.client.errors import is_already_exists, is_conflict, is_gone, is_not_found
from pilothouse.client.fake import FakeTransport
from pilothouse.client.rest import RestTransport, resource_path
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2


def kinds_client() -> Client:
    return Client(FakeTransport())


@pytest.mark.parametrize(("cls", "ns", "name", "sub", "path"), [
    pytest.param(core_pb2.Pod, "default", "", "", "/api/v1/namespaces/default/pods",
                 id="core-collection"),
    pytest.param(core_pb2.Pod, "", "", "", "/api/v1/pods", id="all-namespaces"),
    pytest.param(core_pb2.Pod, "ns", "p", "status", "/api/v1/namespaces/ns/pods/p/status",
                 id="subresource"),
    pytest.param(core_pb2.Node, "ignored", "n1", "", "/api/v1/nodes/n1", id="cluster-scoped"),
    pytest.param(apps_pb2.Deployment, "ns", "d", "", "/apis/apps/v1/namespaces/ns/deployments/d",
                 id="group"),
    pytest.param(coordination_pb2.Lease, "kube-system", "a b", "",
                 "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/a%20b",
                 id="quoted-name"),
])
def test_resource_paths(cls: Any, ns: str, name: str, sub: str, path: str) -> None:
    kind = kinds_client().kind_of(cls)
    assert resource_path(kind, ns, name, sub) == path


@pytest.mark.parametrize(("status", "http", "code", "reason", "checks"), [
    pytest.param({"kind": "Status", "code": 404, "reason": "NotFound", "message": "x"}, 404,
                 404, "NotFound", {"not_found"}, id="not-found"),
    pytest.param({"kind": "Status", "code": 409, "reason": "AlreadyExists", "message": "x"},
                 409, 409, "AlreadyExists", {"already_exists"}, id="exists"),
    pytest.param({"kind": "Status", "code": 409, "reason": "Conflict", "message": "x"}, 409,
                 409, "Conflict", {"conflict"}, id="conflict"),
    pytest.param({"kind": "Status", "code": 410, "reason": "Expired", "message": "x"}, 410,
                 410, "Expired", {"gone"}, id="expired"),
    pytest.param("<html>bad gateway</html>", 502, 502, "Unknown", set(), id="not-a-status"),
    pytest.param({"kind": "Status", "message": "no code"}, 410, 410, "Expired", {"gone"},
                 id="code-from-http"),
    pytest.param(None, 404, 404, "NotFound", {"not_found"}, id="empty-body"),
])
def test_api_error_from_status(status: Any, http: int, code: int, reason: str,
                               checks: set[str]) -> None:
    err = APIError.from_status(status, http)
    assert (err.code, err.reason) == (code, reason)
    assert {name for name, fn in (("not_found", is_not_found), ("conflict", is_conflict),
                                  ("gone", is_gone), ("already_exists", is_already_exists))
            if fn(err)} == checks
    assert str(err)


def mock_client(handler: Any) -> Client:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://test")
    return Client(RestTransport(http=http))


async def test_rest_sends_json_and_decodes_answers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content)
        body["metadata"]["uid"] = "u1"
        body["someFutureField"] = True  # a newer server's extra field is ignored
        return httpx.Response(201, json=body)

    client = mock_client(handler)
    cm = core_pb2.ConfigMap()
    cm.metadata.name, cm.metadata.namespace = "a", "ns"
    created = await client.create(cm, dry_run=True)
    assert created.metadata.uid == "u1"
    assert seen[0].url.path == "/api/v1/namespaces/ns/configmaps"
    assert seen[0].url.params["dryRun"] == "All"
    assert json.loads(seen[0].content)["kind"] == "ConfigMap"


@pytest.mark.parametrize(("response", "error"), [
    pytest.param(httpx.Response(200, content=b"{not json"), APIError, id="invalid-json"),
    pytest.param(httpx.Response(200, json={"metadata": {"name": 5}}), APIError,
                 id="wrong-shape"),
    pytest.param(httpx.Response(500, content=b"boom"), APIError, id="plain-500"),
])
async def test_bad_answers_are_api_errors(response: httpx.Response, error: type) -> None:
    client = mock_client(lambda request: response)
    with pytest.raises(error):
        await client.get(core_pb2.ConfigMap, "a", namespace="ns")


async def test_broken_connection_is_a_connection_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client = mock_client(handler)
    with pytest.raises(APIConnectionError):
        await client.get(core_pb2.ConfigMap, "a", namespace="ns")


async def test_watch_error_event_raises_its_status() -> None:
    lines = [
        {"type": "ADDED", "object": {"kind": "ConfigMap", "apiVersion": "v1",
                                     "metadata": {"name": "a", "resourceVersion": "5"}}},
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                     "message": "too old resource version"}},
    ]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    client = mock_client(lambda request: httpx.Response(200, content=body))
    seen = []
    with pytest.raises(APIError) as info:
        async with client.watch(core_pb2.ConfigMap, resource_version="4") as events:
            async for event in events:
                seen.append((event.type, event.resource_version))
    assert seen == [("ADDED", "5")]
    assert info.value.is_gone()


async def test_unknown_message_types_and_bad_arguments() -> None:
    client = kinds_client()
    with pytest.raises(TypeError, match="not a served kind"):
        client.kind_of(core_pb2.PodSpec)
    with pytest.raises(ValueError, match="patch_type"):
        await client.patch(core_pb2.ConfigMap, "a", {}, namespace="ns",
                           patch_type="apply")  # type: ignore[arg-type]
    cm = core_pb2.ConfigMap()
    cm.metadata.namespace = "ns"
    with pytest.raises(ValueError, match=r"metadata\.name"):
        await client.update(cm)
    with pytest.raises(ValueError, match="unsupported apiserver URL"):
        connect("localhost:6443")


async def test_fake_keeps_status_and_spec_apart_and_counts_generations() -> None:
    client = kinds_client()
    d = apps_pb2.Deployment()
    d.metadata.name, d.metadata.namespace = "d", "ns"
    d = await client.create(d)
    d.status.replicas = 5
    d.spec.replicas = 3
    updated = await client.update(d)
    assert updated.status.replicas == 0 and updated.spec.replicas == 3
    assert updated.metadata.generation == 2
    updated.status.replicas = 5
    updated.spec.replicas = 9
    status = await client.update_status(updated)
    assert status.status.replicas == 5 and status.spec.replicas == 3
    noop = await client.update(status)
    assert noop.metadata.resourceVersion == status.metadata.resourceVersion
