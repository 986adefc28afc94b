"""The gRPC frontend against a real apiserver: every verb, its errors, watches, health."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pilothouse.api.kinds import SCALE_MESSAGE, Kind, KindRegistry
from pilothouse.api.serialization import (
    decode_protobuf,
    decode_protobuf_envelope,
    encode_protobuf,
    object_from_dict,
)
from pilothouse.gen.k8s.meta.v1 import meta_pb2
from pilothouse.gen.pilothouse.apiserver.v1 import apiserver_pb2 as pb
from pilothouse.gen.pilothouse.apiserver.v1 import apiserver_pb2_grpc as pb_grpc
from pilothouse.services.apiserver.server import APIServer, APIServerConfig
from tests.integration.apiserver.conftest import WatchStream, configmap
from tests.support import wait_for

KINDS = KindRegistry.builtin()
CM_KIND = KINDS.by_resource("", "v1", "configmaps")
POD_KIND = KINDS.by_resource("", "v1", "pods")
DEPLOY_KIND = KINDS.by_resource("apps", "v1", "deployments")
assert CM_KIND is not None and POD_KIND is not None and DEPLOY_KIND is not None
CM = {"version": "v1", "resource": "configmaps", "namespace": "default"}
PODS = {"version": "v1", "resource": "pods", "namespace": "default"}
DEPLOY = {"group": "apps", "version": "v1", "resource": "deployments", "namespace": "default"}


@pytest.fixture
async def api(apiserver: APIServer) -> AsyncIterator[pb_grpc.APIStub]:
    async with grpc.aio.insecure_channel(apiserver.grpc_address) as channel:
        yield pb_grpc.APIStub(channel)


def frame(kind: Kind, doc: dict[str, Any]) -> pb.Object:
    """A Kubernetes protobuf frame of ``doc``, as a client with the k8s protos sends it."""
    return pb.Object(raw=encode_protobuf(kind, object_from_dict(kind, doc)))


def cm(name: str, data: dict[str, str] | None = None, **labels: str) -> pb.Object:
    return frame(CM_KIND, configmap(name, data, **labels))


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def decode(kind: Kind, obj: pb.Object) -> Any:
    return decode_protobuf(kind, obj.raw)


async def expect_error(call: Any, code: grpc.StatusCode, reason: str) -> meta_pb2.Status:
    """Await ``call``; it must fail with ``code`` and carry a Status with ``reason``."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() == code, (err.code(), err.details())
    metadata = dict(err.trailing_metadata() or ())
    status = meta_pb2.Status.FromString(metadata["status-bin"])
    assert status.reason == reason, status
    assert status.status == "Failure"
    assert err.details() == status.message
    return status


async def next_event(call: Any, within: float = 10.0) -> pb.WatchEvent:
    event = await asyncio.wait_for(call.read(), within)
    assert event is not grpc.aio.EOF, "the watch ended"
    assert isinstance(event, pb.WatchEvent)
    return event


# -- verbs ---------------------------------------------------------------------------


async def test_crud_round_trip(api: pb_grpc.APIStub) -> None:
    created = await api.Create(pb.CreateRequest(**CM, object=cm("a", {"x": "1"})))
    obj = decode(CM_KIND, created.object)
    assert obj.metadata.uid and obj.metadata.resourceVersion
    assert dict(obj.data) == {"x": "1"}
    envelope = decode_protobuf_envelope(created.object.raw)
    assert (envelope.typeMeta.apiVersion, envelope.typeMeta.kind) == ("v1", "ConfigMap")

    got = decode(CM_KIND, (await api.Get(pb.GetRequest(**CM, name="a"))).object)
    assert got == obj

    got.data["x"] = "2"
    updated = await api.Update(pb.UpdateRequest(**CM, name="a", object=pb.Object(
        raw=encode_protobuf(CM_KIND, got))))
    assert not updated.created
    after_update = decode(CM_KIND, updated.object)
    assert after_update.data["x"] == "2"
    assert int(after_update.metadata.resourceVersion) > int(obj.metadata.resourceVersion)

    patched = await api.Patch(pb.PatchRequest(**CM, name="a", type=pb.PATCH_TYPE_MERGE,
                                              patch=b'{"data":{"y":"3"}}'))
    assert dict(decode(CM_KIND, patched.object).data) == {"x": "2", "y": "3"}

    deleted = await api.Delete(pb.DeleteRequest(**CM, name="a"))
    assert deleted.deleted
    assert decode(CM_KIND, deleted.object).metadata.name == "a"
    await expect_error(api.Get(pb.GetRequest(**CM, name="a")), grpc.StatusCode.NOT_FOUND,
                       "NotFound")


async def test_create_takes_json_and_the_namespace_from_the_object(
        api: pb_grpc.APIStub) -> None:
    doc = configmap("j")
    doc["metadata"]["namespace"] = "default"
    doc["bogus"] = 1
    r = await api.Create(pb.CreateRequest(version="v1", resource="configmaps",
                                          object=pb.Object(raw=json.dumps(doc).encode())))
    assert decode(CM_KIND, r.object).metadata.namespace == "default"
    assert list(r.warnings) == ['unknown field "bogus"']
    doc["metadata"]["name"] = "strict"
    status = await expect_error(
        api.Create(pb.CreateRequest(**CM, field_validation="Strict",
                                    object=pb.Object(raw=json.dumps(doc).encode()))),
        grpc.StatusCode.INVALID_ARGUMENT, "BadRequest")
    assert "bogus" in status.message


async def test_update_and_the_status_subresource_split(api: pb_grpc.APIStub) -> None:
    await expect_error(api.Update(pb.UpdateRequest(**DEPLOY, name="d", object=frame(
        DEPLOY_KIND, deployment("d")))), grpc.StatusCode.NOT_FOUND, "NotFound")
    r = await api.Create(pb.CreateRequest(**DEPLOY, object=frame(DEPLOY_KIND, deployment("d"))))
    obj = decode(DEPLOY_KIND, r.object)
    assert obj.metadata.generation == 1
    obj.status.replicas = 7
    obj.spec.replicas = 2
    main = decode(DEPLOY_KIND, (await api.Update(pb.UpdateRequest(
        **DEPLOY, object=pb.Object(raw=encode_protobuf(DEPLOY_KIND, obj))))).object)
    assert (main.spec.replicas, main.status.replicas, main.metadata.generation) == (2, 0, 2)
    main.status.replicas = 2
    main.spec.replicas = 9
    via_status = decode(DEPLOY_KIND, (await api.Update(pb.UpdateRequest(
        **DEPLOY, subresource="status",
        object=pb.Object(raw=encode_protobuf(DEPLOY_KIND, main))))).object)
    assert (via_status.spec.replicas, via_status.status.replicas) == (2, 2)
    got = await api.Get(pb.GetRequest(**DEPLOY, name="d", subresource="status"))
    assert decode(DEPLOY_KIND, got.object).status.replicas == 2


async def test_patch_types(api: pb_grpc.APIStub) -> None:
    await api.Create(pb.CreateRequest(**DEPLOY, object=frame(DEPLOY_KIND, deployment("p"))))
    r = await api.Patch(pb.PatchRequest(**DEPLOY, name="p", type=pb.PATCH_TYPE_JSON,
                                        patch=json.dumps([{"op": "replace", "value": 4,
                                                           "path": "/spec/replicas"}]).encode()))
    assert decode(DEPLOY_KIND, r.object).spec.replicas == 4
    # Strategic merge: containers merge by name instead of being replaced.
    r = await api.Patch(pb.PatchRequest(**DEPLOY, name="p", type=pb.PATCH_TYPE_STRATEGIC,
                                        patch=json.dumps({"spec": {"template": {"spec": {
                                            "containers": [{"name": "side",
                                                            "image": "nginx"}]}}}}).encode()))
    names = [c.name for c in decode(DEPLOY_KIND, r.object).spec.template.spec.containers]
    assert sorted(names) == ["c", "side"]
    r = await api.Patch(pb.PatchRequest(**DEPLOY, name="p", type=pb.PATCH_TYPE_MERGE,
                                        patch=b'{"metadata":{"labels":{"l":"v"}}}'))
    assert dict(decode(DEPLOY_KIND, r.object).metadata.labels) == {"l": "v"}


async def test_list_selectors_and_paging(api: pb_grpc.APIStub) -> None:
    for i in range(5):
        await api.Create(pb.CreateRequest(**CM, object=cm(f"c{i}", tier="a" if i < 3 else "b")))
    names = [decode(CM_KIND, o).metadata.name for o in (await api.List(pb.ListRequest(
        **CM, options=pb.ListOptions(label_selector="tier=a")))).items]
    assert names == ["c0", "c1", "c2"]
    names = [decode(CM_KIND, o).metadata.name for o in (await api.List(pb.ListRequest(
        **CM, options=pb.ListOptions(label_selector="tier in (a,b),tier!=a",
                                     field_selector="metadata.name!=c3")))).items]
    assert names == ["c4"]
    # Paging: every page at the first page's revision, even after a write.
    first = await api.List(pb.ListRequest(**CM, options=pb.ListOptions(limit=2)))
    assert len(first.items) == 2 and first.continue_token
    assert first.remaining_item_count == 3
    await api.Create(pb.CreateRequest(**CM, object=cm("c9")))
    seen = [decode(CM_KIND, o).metadata.name for o in first.items]
    token = first.continue_token
    while token:
        page = await api.List(pb.ListRequest(**CM, options=pb.ListOptions(
            limit=2, continue_token=token)))
        assert page.resource_version == first.resource_version
        seen += [decode(CM_KIND, o).metadata.name for o in page.items]
        token = page.continue_token
    assert seen == ["c0", "c1", "c2", "c3", "c4"]
    everywhere = await api.List(pb.ListRequest(version="v1", resource="configmaps"))
    assert len(everywhere.items) == 6


async def test_delete_options_and_delete_collection(api: pb_grpc.APIStub) -> None:
    held = configmap("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    created = decode(CM_KIND, (await api.Create(pb.CreateRequest(
        **CM, object=frame(CM_KIND, held)))).object)
    await expect_error(api.Delete(pb.DeleteRequest(**CM, name="held", options=pb.DeleteOptions(
        preconditions=pb.Preconditions(uid="not-the-uid")))), grpc.StatusCode.ABORTED,
        "Conflict")
    r = await api.Delete(pb.DeleteRequest(**CM, name="held", options=pb.DeleteOptions(
        preconditions=pb.Preconditions(uid=created.metadata.uid))))
    assert not r.deleted
    assert decode(CM_KIND, r.object).metadata.HasField("deletionTimestamp")
    await expect_error(api.Delete(pb.DeleteRequest(**CM, name="held", options=pb.DeleteOptions(
        propagation_policy="Sideways"))), grpc.StatusCode.INVALID_ARGUMENT, "BadRequest")

    for i in range(3):
        await api.Create(pb.CreateRequest(**CM, object=cm(f"g{i}", group="x" if i else "y")))
    gone = await api.DeleteCollection(pb.DeleteCollectionRequest(
        **CM, list_options=pb.ListOptions(label_selector="group=x")))
    assert sorted(decode(CM_KIND, o).metadata.name for o in gone.items) == ["g1", "g2"]
    left = await api.List(pb.ListRequest(**CM, options=pb.ListOptions(label_selector="group")))
    assert [decode(CM_KIND, o).metadata.name for o in left.items] == ["g0"]


async def test_bind_assigns_a_node_once(api: pb_grpc.APIStub) -> None:
    await api.Create(pb.CreateRequest(**PODS, object=frame(POD_KIND, pod("p"))))
    r = await api.Bind(pb.BindRequest(namespace="default", name="p", target_name="node-1"))
    assert decode(POD_KIND, r.object).spec.nodeName == "node-1"
    got = decode(POD_KIND, (await api.Get(pb.GetRequest(**PODS, name="p"))).object)
    assert got.spec.nodeName == "node-1"
    await expect_error(api.Bind(pb.BindRequest(namespace="default", name="p",
                                               target_name="node-2")),
                       grpc.StatusCode.ABORTED, "Conflict")
    await expect_error(api.Bind(pb.BindRequest(namespace="default", name="missing",
                                               target_name="node-1")),
                       grpc.StatusCode.NOT_FOUND, "NotFound")


async def test_scale_subresource(api: pb_grpc.APIStub) -> None:
    await api.Create(pb.CreateRequest(**DEPLOY, object=frame(DEPLOY_KIND, deployment("s", 3))))
    r = await api.GetScale(pb.GetScaleRequest(**DEPLOY, name="s"))
    envelope = decode_protobuf_envelope(r.object.raw)
    assert (envelope.typeMeta.apiVersion, envelope.typeMeta.kind) == ("autoscaling/v1", "Scale")
    scale = SCALE_MESSAGE.FromString(envelope.raw)
    assert (scale.spec.replicas, scale.status.selector) == (3, "app=s")
    r = await api.UpdateScale(pb.UpdateScaleRequest(**DEPLOY, name="s", replicas=5))
    got = decode(DEPLOY_KIND, (await api.Get(pb.GetRequest(**DEPLOY, name="s"))).object)
    assert got.spec.replicas == 5
    await expect_error(api.UpdateScale(pb.UpdateScaleRequest(
        **DEPLOY, name="s", replicas=1, resource_version=scale.metadata.resourceVersion)),
        grpc.StatusCode.ABORTED, "Conflict")
    await expect_error(api.UpdateScale(pb.UpdateScaleRequest(**DEPLOY, name="s", replicas=-1)),
                       grpc.StatusCode.INVALID_ARGUMENT, "Invalid")
    await expect_error(api.GetScale(pb.GetScaleRequest(**CM, name="s")),
                       grpc.StatusCode.NOT_FOUND, "NotFound")


# -- errors ----------------------------------------------------------------------------


async def test_errors_map_to_codes_with_the_status_attached(api: pb_grpc.APIStub) -> None:
    await api.Create(pb.CreateRequest(**CM, object=cm("exists")))
    before = (await api.List(pb.ListRequest(**CM))).resource_version
    E = grpc.StatusCode
    await expect_error(api.Create(pb.CreateRequest(**CM, object=cm("exists"))),
                       E.ALREADY_EXISTS, "AlreadyExists")
    stale = configmap("exists")
    stale["metadata"]["resourceVersion"] = "1"
    status = await expect_error(api.Update(pb.UpdateRequest(**CM, name="exists", object=frame(
        CM_KIND, stale))), E.ABORTED, "Conflict")
    assert status.code == 409 and status.details.name == "exists"
    status = await expect_error(api.Create(pb.CreateRequest(**CM, object=cm("Not_Valid"))),
                                E.INVALID_ARGUMENT, "Invalid")
    assert status.code == 422
    assert [c.field for c in status.details.causes] == ["metadata.name"]
    await expect_error(api.List(pb.ListRequest(**CM, options=pb.ListOptions(
        label_selector="a in (b"))), E.INVALID_ARGUMENT, "BadRequest")
    await expect_error(api.List(pb.ListRequest(**CM, options=pb.ListOptions(
        field_selector="spec.nope=1"))), E.INVALID_ARGUMENT, "BadRequest")
    await expect_error(api.Get(pb.GetRequest(version="v1", resource="widgets", name="x")),
                       E.NOT_FOUND, "NotFound")
    await expect_error(api.Get(pb.GetRequest(version="v1", resource="configmaps", name="x")),
                       E.INVALID_ARGUMENT, "BadRequest")  # namespace missing
    await expect_error(api.Get(pb.GetRequest(version="v1", resource="nodes", namespace="default",
                                             name="x")), E.INVALID_ARGUMENT, "BadRequest")
    await expect_error(api.Create(pb.CreateRequest(version="v1", resource="configmaps",
                                                   namespace="nowhere", object=cm("n"))),
                       E.NOT_FOUND, "NotFound")
    await expect_error(api.List(pb.ListRequest(version="v1", resource="bindings")),
                       E.UNIMPLEMENTED, "MethodNotAllowed")
    await expect_error(api.Create(pb.CreateRequest(**CM, object=pb.Object(raw=b"k8s\x00junk"))),
                       E.INVALID_ARGUMENT, "BadRequest")
    await expect_error(api.Create(pb.CreateRequest(**CM, object=frame(DEPLOY_KIND,
                                                                      deployment("x")))),
                       E.INVALID_ARGUMENT, "BadRequest")  # a Deployment is no ConfigMap
    await expect_error(api.Create(pb.CreateRequest(**CM, object=pb.Object(
        raw=b'{"metadata": {"name": "big"}, "data": {"k": "' + b"x" * (4 << 20) + b'"}}'))),
        E.RESOURCE_EXHAUSTED, "RequestEntityTooLarge")
    await expect_error(api.Patch(pb.PatchRequest(**CM, name="exists", patch=b"{}")),
                       E.INVALID_ARGUMENT, "BadRequest")  # no patch type
    await expect_error(api.Patch(pb.PatchRequest(**CM, name="exists", type=pb.PATCH_TYPE_APPLY,
                                                 patch=b"{}")),
                       E.INVALID_ARGUMENT, "UnsupportedMediaType")
    await expect_error(api.Patch(pb.PatchRequest(**CM, name="exists", type=pb.PATCH_TYPE_JSON,
                                                 patch=b"[{")),
                       E.INVALID_ARGUMENT, "BadRequest")
    await expect_error(api.Patch(pb.PatchRequest(**CM, name="exists", type=pb.PATCH_TYPE_JSON,
                                                 patch=b'[{"op":"test","path":"/data/k",'
                                                       b'"value":"other"}]')),
                       E.INVALID_ARGUMENT, "Invalid")
    await expect_error(api.Get(pb.GetRequest(**CM, name="exists", subresource="scale")),
                       E.NOT_FOUND, "NotFound")
    await expect_error(api.Get(pb.GetRequest(**CM, name="exists", resource_version="x")),
                       E.INVALID_ARGUMENT, "BadRequest")
    # Nothing above wrote anything.
    assert (await api.List(pb.ListRequest(**CM))).resource_version == before


# -- watch -----------------------------------------------------------------------------


async def test_watch_ordering_and_resume(api: pb_grpc.APIStub) -> None:
    start = (await api.List(pb.ListRequest(**CM))).resource_version
    call = api.Watch(pb.WatchRequest(**CM, resource_version=start))
    try:
        await api.Create(pb.CreateRequest(**CM, object=cm("w", {"v": "1"})))
        await api.Patch(pb.PatchRequest(**CM, name="w", type=pb.PATCH_TYPE_MERGE,
                                        patch=b'{"data":{"v":"2"}}'))
        await api.Delete(pb.DeleteRequest(**CM, name="w"))
        events = [await next_event(call) for _ in range(3)]
    finally:
        call.cancel()
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    rvs = [int(e.resource_version) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    objs = [decode(CM_KIND, e.object) for e in events]
    assert [o.data["v"] for o in objs] == ["1", "2", "2"]
    assert [o.metadata.resourceVersion for o in objs] == [e.resource_version for e in events]
    # Resume after the first event: the rest again, in order.
    resumed = api.Watch(pb.WatchRequest(**CM, resource_version=events[0].resource_version))
    try:
        again = [await next_event(resumed) for _ in range(2)]
    finally:
        resumed.cancel()
    assert [(e.type, e.resource_version) for e in again] == [
        (e.type, e.resource_version) for e in events[1:]]


async def test_watch_initial_events_selectors_and_bookmark(api: pb_grpc.APIStub) -> None:
    await api.Create(pb.CreateRequest(**CM, object=cm("one", app="x")))
    await api.Create(pb.CreateRequest(**CM, object=cm("two", app="y")))
    call = api.Watch(pb.WatchRequest(**CM, label_selector="app=x", send_initial_events=True,
                                     resource_version_match="NotOlderThan",
                                     allow_watch_bookmarks=True))
    try:
        added = await next_event(call)
        bookmark = await next_event(call)
        # A change that moves an object out of the selector is a DELETED for this watch.
        await api.Patch(pb.PatchRequest(**CM, name="one", type=pb.PATCH_TYPE_MERGE,
                                        patch=b'{"metadata":{"labels":{"app":"z"}}}'))
        left = await next_event(call)
    finally:
        call.cancel()
    assert (added.type, decode(CM_KIND, added.object).metadata.name) == ("ADDED", "one")
    assert bookmark.type == "BOOKMARK"
    mark = decode(CM_KIND, bookmark.object)
    assert dict(mark.metadata.annotations) == {"k8s.io/initial-events-end": "true"}
    assert mark.metadata.resourceVersion == bookmark.resource_version
    assert (left.type, decode(CM_KIND, left.object).metadata.name) == ("DELETED", "one")
    await expect_error(api.Watch(pb.WatchRequest(**CM, send_initial_events=True)).read(),
                       grpc.StatusCode.INVALID_ARGUMENT, "BadRequest")


async def test_watch_one_object_and_timeout(api: pb_grpc.APIStub) -> None:
    await api.Create(pb.CreateRequest(**CM, object=cm("mine")))
    await api.Create(pb.CreateRequest(**CM, object=cm("other")))
    call = api.Watch(pb.WatchRequest(**CM, name="mine", timeout_seconds=1))
    events = []
    async for event in call:  # ends by itself after timeout_seconds
        events.append(event)
    assert [(e.type, decode(CM_KIND, e.object).metadata.name) for e in events] == [
        ("ADDED", "mine")]
    assert await call.code() == grpc.StatusCode.OK


async def test_cancelled_watch_is_unregistered(apiserver: APIServer,
                                               api: pb_grpc.APIStub) -> None:
    assert apiserver.registry is not None
    cache = apiserver.registry.store_for("", "configmaps").cache
    calls = [api.Watch(pb.WatchRequest(**CM)) for _ in range(3)]
    await wait_for(lambda: _true(cache.watcher_count() == 3))
    for call in calls:
        call.cancel()
    await wait_for(lambda: _true(cache.watcher_count() == 0))
    gauge = apiserver.metrics.registry.get_sample_value(
        "apiserver_registered_watchers", {"group": "", "version": "v1", "kind": "ConfigMap"})
    assert gauge == 0


async def _true(value: bool) -> bool:
    return value


async def test_watch_from_a_compacted_revision_is_out_of_range(tmp_path: Path) -> None:
    config = APIServerConfig(data_dir=tmp_path / "d", port=0)
    async with APIServer(config) as server, grpc.aio.insecure_channel(
            server.grpc_address) as channel:
        api = pb_grpc.APIStub(channel)
        for i in range(3):
            await api.Create(pb.CreateRequest(**CM, object=cm(f"x{i}")))
    # Restarted on the same data: the cache starts at the current revision.
    async with APIServer(config) as server, grpc.aio.insecure_channel(
            server.grpc_address) as channel:
        api = pb_grpc.APIStub(channel)
        assert len((await api.List(pb.ListRequest(**CM))).items) == 3
        status = await expect_error(api.Watch(pb.WatchRequest(**CM, resource_version="1")).read(),
                                    grpc.StatusCode.OUT_OF_RANGE, "Expired")
        assert status.code == 410


async def test_rest_and_grpc_see_each_others_writes(api: pb_grpc.APIStub,
                                                    client: httpx.AsyncClient) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    call = api.Watch(pb.WatchRequest(**CM, resource_version=(await api.List(
        pb.ListRequest(**CM))).resource_version))
    try:
        r = await client.post(path, json=configmap("from-rest"))
        assert r.status_code == 201
        event = await next_event(call)
    finally:
        call.cancel()
    assert event.type == "ADDED"
    assert decode(CM_KIND, event.object).metadata.resourceVersion == \
        r.json()["metadata"]["resourceVersion"]

    rv = (await client.get(path)).json()["metadata"]["resourceVersion"]
    async with client.stream("GET", path, params={"watch": "true",
                                                  "resourceVersion": rv}) as response:
        stream = WatchStream(response)
        await api.Create(pb.CreateRequest(**CM, object=cm("from-grpc", {"k": "g"})))
        rest_event = await stream.next()
    assert rest_event["type"] == "ADDED"
    assert rest_event["object"]["metadata"]["name"] == "from-grpc"
    assert rest_event["object"]["data"] == {"k": "g"}


# -- health, reflection, metrics ---------------------------------------------------------


async def test_health_and_reflection(apiserver: APIServer) -> None:
    async with grpc.aio.insecure_channel(apiserver.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "pilothouse.apiserver.v1.API"):
            r = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert r.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="pilothouse.apiserver.v1.API")]
        answers = [a async for a in refl.ServerReflectionInfo(iter(requests))]
    services = {s.name for s in answers[0].list_services_response.service}
    assert {"pilothouse.apiserver.v1.API", "grpc.health.v1.Health"} <= services
    files = answers[1].file_descriptor_response.file_descriptor_proto
    assert files  # the API's file (and its imports) for clients that discover it


async def test_metrics_count_grpc_requests(apiserver: APIServer, api: pb_grpc.APIStub) -> None:
    await api.Create(pb.CreateRequest(**CM, object=cm("m")))
    await api.Get(pb.GetRequest(**CM, name="m"))
    await expect_error(api.Get(pb.GetRequest(**CM, name="absent")), grpc.StatusCode.NOT_FOUND,
                       "NotFound")

    def count(verb: str, code: str, scope: str) -> float | None:
        return apiserver.metrics.registry.get_sample_value("apiserver_request_total", {
            "verb": verb, "dry_run": "", "group": "", "version": "v1",
            "resource": "configmaps", "subresource": "", "scope": scope,
            "component": "apiserver", "code": code})

    assert count("POST", "201", "namespace") == 1
    assert count("GET", "200", "resource") == 1
    assert count("GET", "404", "resource") == 1
