"""The REST frontend against a real apiserver: verbs, semantics, errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilothouse.services.apiserver.server import APIServer, APIServerConfig
from tests.integration.apiserver.conftest import WatchStream, configmap
from tests.support import wait_for

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }


async def test_crud_round_trip(client: httpx.AsyncClient) -> None:
    r = await client.post(CM, json=configmap("a", {"x": "1"}))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["metadata"]["uid"]
    assert created["metadata"]["creationTimestamp"].endswith("Z")
    rv = created["metadata"]["resourceVersion"]
    assert rv.isdigit()

    got = (await client.get(f"{CM}/a")).json()
    assert got["data"] == {"x": "1"}
    assert got["metadata"]["resourceVersion"] == rv

    got["data"]["x"] = "2"
    r = await client.put(f"{CM}/a", json=got)
    assert r.status_code == 200, r.text
    assert int(r.json()["metadata"]["resourceVersion"]) > int(rv)

    listed = (await client.get(CM)).json()
    assert listed["kind"] == "ConfigMapList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]

    r = await client.delete(f"{CM}/a")
    assert r.status_code == 200
    r = await client.get(f"{CM}/a")
    assert r.status_code == 404
    status = r.json()
    assert status["kind"] == "Status"
    assert status["reason"] == "NotFound"
    assert status["message"] == 'configmaps "a" not found'
    assert status["details"] == {"name": "a", "kind": "configmaps"}


async def test_stale_resource_version_is_a_conflict(client: httpx.AsyncClient) -> None:
    first = (await client.post(CM, json=configmap("c"))).json()
    first["data"] = {"k": "one"}
    assert (await client.put(f"{CM}/c", json=first)).status_code == 200
    first["data"] = {"k": "two"}  # still carries the old resourceVersion
    r = await client.put(f"{CM}/c", json=first)
    assert r.status_code == 409
    assert r.json()["reason"] == "Conflict"
    assert (await client.get(f"{CM}/c")).json()["data"] == {"k": "one"}


async def test_create_in_missing_namespace_and_duplicates(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/namespaces/nope/configmaps", json=configmap("a"))
    assert r.status_code == 404
    assert r.json()["message"] == 'namespaces "nope" not found'
    assert (await client.post(CM, json=configmap("dup"))).status_code == 201
    r = await client.post(CM, json=configmap("dup"))
    assert r.status_code == 409
    assert r.json()["reason"] == "AlreadyExists"


async def test_generate_name(client: httpx.AsyncClient) -> None:
    body = configmap("")
    body["metadata"] = {"generateName": "gen-"}
    names = set()
    for _ in range(3):
        r = await client.post(CM, json=body)
        assert r.status_code == 201, r.text
        names.add(r.json()["metadata"]["name"])
    assert len(names) == 3
    assert all(n.startswith("gen-") and len(n) == 9 for n in names)


async def test_label_and_field_selectors(client: httpx.AsyncClient) -> None:
    for name, tier in [("a", "web"), ("b", "db"), ("c", "web")]:
        await client.post(CM, json=configmap(name, tier=tier))
    web = (await client.get(CM, params={"labelSelector": "tier=web"})).json()
    assert [i["metadata"]["name"] for i in web["items"]] == ["a", "c"]
    notweb = (await client.get(CM, params={"labelSelector": "tier notin (web)"})).json()
    assert [i["metadata"]["name"] for i in notweb["items"]] == ["b"]
    byname = (await client.get(CM, params={"fieldSelector": "metadata.name!=a"})).json()
    assert [i["metadata"]["name"] for i in byname["items"]] == ["b", "c"]
    r = await client.get(CM, params={"labelSelector": "tier in (web"})
    assert r.status_code == 400
    r = await client.get(CM, params={"fieldSelector": "spec.nodeName=x"})
    assert r.status_code == 400
    assert "field label not supported" in r.json()["message"]


async def test_paging_is_consistent_at_one_revision(client: httpx.AsyncClient) -> None:
    for i in range(25):
        await client.post(CM, json=configmap(f"cm-{i:02d}"))
    first = (await client.get(CM, params={"limit": 10})).json()
    assert len(first["items"]) == 10
    token = first["metadata"]["continue"]
    assert first["metadata"]["remainingItemCount"] == 15
    # A write between pages is not seen by the continued list.
    await client.post(CM, json=configmap("cm-99"))
    names = [i["metadata"]["name"] for i in first["items"]]
    while token:
        page = (await client.get(CM, params={"limit": 10, "continue": token})).json()
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue", "")
    assert names == [f"cm-{i:02d}" for i in range(25)]
    r = await client.get(CM, params={"limit": 10, "continue": "garbage!"})
    assert r.status_code == 400


async def test_watch_events_and_resume(client: httpx.AsyncClient) -> None:
    start_rv = (await client.get(CM)).json()["metadata"]["resourceVersion"]
    async with client.stream("GET", CM, params={"watch": "true",
                                                "resourceVersion": start_rv}) as response:
        assert response.status_code == 200
        stream = WatchStream(response)
        created = (await client.post(CM, json=configmap("w"))).json()
        created["data"] = {"k": "2"}
        await client.put(f"{CM}/w", json=created)
        await client.delete(f"{CM}/w")
        events = [await stream.next() for _ in range(3)]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"]["data"] == {"k": "2"}
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs)
    # Resume after the first event: only what came later.
    async with client.stream("GET", CM, params={"watch": "1", "resourceVersion": str(rvs[0])}
                             ) as response:
        stream = WatchStream(response)
        resumed = [await stream.next() for _ in range(2)]
    assert [e["type"] for e in resumed] == ["MODIFIED", "DELETED"]


async def test_watch_with_selector_sees_objects_leave(client: httpx.AsyncClient) -> None:
    obj = (await client.post(CM, json=configmap("sel", tier="web"))).json()
    async with client.stream("GET", CM, params={"watch": "true",
                                                "labelSelector": "tier=web"}) as response:
        stream = WatchStream(response)
        initial = await stream.next()
        assert (initial["type"], initial["object"]["metadata"]["name"]) == ("ADDED", "sel")
        obj["metadata"]["labels"] = {"tier": "db"}
        await client.put(f"{CM}/sel", json=obj)
        left = await stream.next()
    assert left["type"] == "DELETED"


async def test_watch_bookmark_after_initial_events(client: httpx.AsyncClient) -> None:
    await client.post(CM, json=configmap("init"))
    params = {"watch": "true", "sendInitialEvents": "true", "allowWatchBookmarks": "true",
              "resourceVersionMatch": "NotOlderThan"}
    async with client.stream("GET", CM, params=params) as response:
        stream = WatchStream(response)
        added = await stream.next()
        bookmark = await stream.next()
    assert added["type"] == "ADDED"
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_watch_from_before_the_cache_window_is_gone(tmp_path: Path) -> None:
    config = APIServerConfig(data_dir=tmp_path / "d", port=0)
    async with APIServer(config) as server, httpx.AsyncClient(base_url=server.url) as c:
        for i in range(3):
            await c.post(CM, json=configmap(f"x{i}"))
    # Restarted on the same data: the cache starts at the current revision.
    async with APIServer(config) as server, httpx.AsyncClient(base_url=server.url) as c:
        assert len((await c.get(CM)).json()["items"]) == 3
        r = await c.get(CM, params={"watch": "true", "resourceVersion": "1"})
        assert r.status_code == 410
        assert r.json()["reason"] == "Expired"


async def test_status_subresource_split(client: httpx.AsyncClient) -> None:
    r = await client.post(DEPLOY, json=deployment("d"))
    assert r.status_code == 201, r.text
    obj = r.json()
    assert obj["metadata"]["generation"] == 1
    obj["status"] = {"replicas": 7}
    obj["spec"]["replicas"] = 2
    updated = (await client.put(f"{DEPLOY}/d", json=obj)).json()
    assert updated["spec"]["replicas"] == 2
    assert updated["metadata"]["generation"] == 2
    assert updated.get("status", {}).get("replicas") is None  # status ignored on the main path
    updated["status"] = {"replicas": 2, "readyReplicas": 1}
    updated["spec"]["replicas"] = 9  # ignored on /status
    via_status = (await client.put(f"{DEPLOY}/d/status", json=updated)).json()
    assert via_status["status"]["replicas"] == 2
    assert via_status["spec"]["replicas"] == 2
    assert via_status["metadata"]["generation"] == 2


async def test_scale_subresource(client: httpx.AsyncClient) -> None:
    await client.post(DEPLOY, json=deployment("s", replicas=3))
    scale = (await client.get(f"{DEPLOY}/s/scale")).json()
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["selector"] == "app=s"
    scale["spec"]["replicas"] = 5
    r = await client.put(f"{DEPLOY}/s/scale", json=scale)
    assert r.status_code == 200, r.text
    assert (await client.get(f"{DEPLOY}/s")).json()["spec"]["replicas"] == 5
    r = await client.patch(f"{DEPLOY}/s/scale", content=json.dumps({"spec": {"replicas": 1}}),
                           headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert (await client.get(f"{DEPLOY}/s")).json()["spec"]["replicas"] == 1


async def test_patch_types(client: httpx.AsyncClient) -> None:
    await client.post(DEPLOY, json=deployment("p"))
    r = await client.patch(f"{DEPLOY}/p", content=json.dumps(
        [{"op": "replace", "path": "/spec/replicas", "value": 4}]),
        headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    r = await client.patch(f"{DEPLOY}/p", content=json.dumps(
        {"metadata": {"labels": {"x": "y"}}}),
        headers={"Content-Type": "application/merge-patch+json"})
    assert r.json()["metadata"]["labels"] == {"x": "y"}
    smp = {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "b"}]}}}}
    r = await client.patch(f"{DEPLOY}/p", content=json.dumps(smp),
                           headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.status_code == 200, r.text
    containers = r.json()["spec"]["template"]["spec"]["containers"]
    assert sorted(c["name"] for c in containers) == ["c", "side"]  # merged by name
    assert r.json()["spec"]["replicas"] == 4


async def test_finalizers_hold_deletion(client: httpx.AsyncClient) -> None:
    body = configmap("f")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await client.post(CM, json=body)
    r = await client.delete(f"{CM}/f")
    assert r.status_code == 200
    held = (await client.get(f"{CM}/f")).json()
    assert held["metadata"]["deletionTimestamp"]
    held["metadata"]["finalizers"] = []
    r = await client.put(f"{CM}/f", json=held)
    assert r.status_code == 200, r.text
    assert (await client.get(f"{CM}/f")).status_code == 404


async def test_foreground_deletion_adds_finalizer(client: httpx.AsyncClient) -> None:
    await client.post(CM, json=configmap("fg"))
    r = await client.request("DELETE", f"{CM}/fg", json={"kind": "DeleteOptions",
                                                         "apiVersion": "v1",
                                                         "propagationPolicy": "Foreground"})
    assert r.status_code == 200
    obj = (await client.get(f"{CM}/fg")).json()
    assert obj["metadata"]["finalizers"] == ["foregroundDeletion"]


async def test_delete_preconditions(client: httpx.AsyncClient) -> None:
    await client.post(CM, json=configmap("pre"))
    r = await client.request("DELETE", f"{CM}/pre", json={"preconditions": {"uid": "other"}})
    assert r.status_code == 409
    assert (await client.get(f"{CM}/pre")).status_code == 200


async def test_delete_collection(client: httpx.AsyncClient) -> None:
    for name, tier in [("a", "x"), ("b", "x"), ("c", "y")]:
        await client.post(CM, json=configmap(name, tier=tier))
    r = await client.delete(CM, params={"labelSelector": "tier=x"})
    assert r.status_code == 200
    assert sorted(i["metadata"]["name"] for i in r.json()["items"]) == ["a", "b"]
    left = (await client.get(CM)).json()["items"]
    assert [i["metadata"]["name"] for i in left] == ["c"]


async def test_cluster_scoped_and_discovery(client: httpx.AsyncClient) -> None:
    names = [n["metadata"]["name"] for n in (await client.get("/api/v1/namespaces")).json()
             ["items"]]
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(names)
    assert (await client.get("/api")).json()["versions"] == ["v1"]
    groups = {g["name"] for g in (await client.get("/apis")).json()["groups"]}
    assert {"apps", "batch", "rbac.authorization.k8s.io", "coordination.k8s.io"} <= groups
    resources = (await client.get("/apis/apps/v1")).json()["resources"]
    deploy = next(r for r in resources if r["name"] == "deployments")
    assert deploy["shortNames"] == ["deploy"] and deploy["namespaced"] is True
    assert any(r["name"] == "deployments/scale" and r["kind"] == "Scale" for r in resources)
    r = await client.get("/apis", headers={
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"})
    assert r.headers["content-type"].startswith("application/json;g=apidiscovery.k8s.io")
    assert r.json()["kind"] == "APIGroupDiscoveryList"
    version = (await client.get("/version")).json()
    assert (version["major"], version["minor"]) == ("1", "32")


async def test_binding_assigns_a_node(client: httpx.AsyncClient) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    assert (await client.post("/api/v1/namespaces/default/pods", json=pod)).status_code == 201
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
               "target": {"kind": "Node", "name": "node-1"}}
    r = await client.post("/api/v1/namespaces/default/pods/p/binding", json=binding)
    assert r.status_code == 201, r.text
    got = (await client.get("/api/v1/namespaces/default/pods/p")).json()
    assert got["spec"]["nodeName"] == "node-1"
    binding["target"]["name"] = "node-2"
    r = await client.post("/api/v1/namespaces/default/pods/p/binding", json=binding)
    assert r.status_code == 409


async def test_yaml_in_and_out(client: httpx.AsyncClient) -> None:
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  a: b\n"
    r = await client.post(CM, content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    r = await client.get(f"{CM}/y", headers={"Accept": "application/yaml"})
    assert r.headers["content-type"] == "application/yaml"
    assert b"name: y" in r.content


async def test_concurrent_updates_without_resource_version_all_apply(
        client: httpx.AsyncClient) -> None:
    await client.post(DEPLOY, json=deployment("race"))

    async def bump(i: int) -> int:
        r = await client.patch(f"{DEPLOY}/race", content=json.dumps(
            {"metadata": {"annotations": {f"k{i}": "v"}}}),
            headers={"Content-Type": "application/merge-patch+json"})
        return r.status_code

    codes = await asyncio.gather(*(bump(i) for i in range(10)))
    assert codes == [200] * 10
    annotations = (await client.get(f"{DEPLOY}/race")).json()["metadata"]["annotations"]
    assert set(annotations) == {f"k{i}" for i in range(10)}


async def test_metrics_and_health(client: httpx.AsyncClient) -> None:
    await client.get(CM)
    assert (await client.get("/healthz")).text == "ok"
    assert (await client.get("/readyz")).status_code == 200
    text = (await client.get("/metrics")).text
    assert 'apiserver_request_total{code="200"' in text
    assert 'resource="configmaps"' in text
    assert 'apiserver_storage_objects{resource="namespaces"} 4.0' in text


@pytest.mark.parametrize("method,path,body,headers,code,reason", [
    ("POST", CM, b"{not json", {"Content-Type": "application/json"}, 400, "BadRequest"),
    ("POST", CM, b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":5}',
     {"Content-Type": "application/json"}, 400, "BadRequest"),
    ("POST", CM + "?fieldValidation=Strict",
     b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","bogus":1}}',
     {"Content-Type": "application/json"}, 400, "BadRequest"),
    ("POST", CM, b'{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}',
     {"Content-Type": "application/json"}, 400, "BadRequest"),
    ("POST", CM, b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}',
     {"Content-Type": "application/json"}, 422, "Invalid"),
    ("POST", CM, b"x", {"Content-Type": "text/plain"}, 415, "UnsupportedMediaType"),
    ("GET", CM, b"", {"Accept": "image/png"}, 406, "NotAcceptable"),
    ("POST", CM, b"[" * 10 + b" " * (3 * 1024 * 1024 + 1),
     {"Content-Type": "application/json"}, 413, "RequestEntityTooLarge"),
    ("GET", "/api/v1/namespaces/default/nothings", b"", {}, 404, "NotFound"),
    ("GET", CM + "?resourceVersion=abc", b"", {}, 400, "BadRequest"),
    ("GET", CM + "?limit=ten", b"", {}, 400, "BadRequest"),
    ("PUT", CM, b"{}", {"Content-Type": "application/json"}, 405, "MethodNotAllowed"),
    ("PATCH", CM + "/exists", b"{}", {"Content-Type": "application/foo"}, 415,
     "UnsupportedMediaType"),
    ("PATCH", CM + "/exists", b"[{\"op\":\"explode\"}]",
     {"Content-Type": "application/json-patch+json"}, 422, "Invalid"),
    ("PATCH", CM + "/exists", b"not json", {"Content-Type": "application/merge-patch+json"},
     400, "BadRequest"),
    ("DELETE", CM + "/exists?propagationPolicy=Sideways", b"", {}, 400, "BadRequest"),
], ids=["malformed-json", "wrong-type", "strict-unknown-field", "wrong-kind", "invalid-name",
        "text-plain", "accept-png", "too-large", "unknown-resource", "bad-rv", "bad-limit",
        "put-collection", "patch-unknown-type", "json-patch-bad-op", "merge-patch-not-json",
        "bad-propagation"])
async def test_bad_input_gets_a_status_and_writes_nothing(
        client: httpx.AsyncClient, method: str, path: str, body: bytes,
        headers: dict[str, str], code: int, reason: str) -> None:
    await client.post(CM, json=configmap("exists"))
    before = (await client.get(CM)).json()
    r = await client.request(method, path, content=body, headers=headers)
    assert r.status_code == code, r.text
    status = r.json()
    assert status["kind"] == "Status" and status["status"] == "Failure"
    assert status["reason"] == reason
    assert status["code"] == code
    after = (await client.get(CM)).json()
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert (await client.get("/readyz")).status_code == 200


async def test_warn_mode_reports_unknown_fields(client: httpx.AsyncClient) -> None:
    body = configmap("warn")
    body["spec"] = {"bogus": True}
    r = await client.post(CM, json=body)
    assert r.status_code == 201
    assert 'unknown field \\"spec\\"' in r.headers["warning"]


async def test_watch_many_watchers_one_update(client: httpx.AsyncClient) -> None:
    rv = (await client.get(CM)).json()["metadata"]["resourceVersion"]

    async def one_watch() -> str:
        async with client.stream("GET", CM, params={"watch": "1", "resourceVersion": rv,
                                                    "timeoutSeconds": "10"}) as response:
            event = await WatchStream(response).next()
            return str(event["object"]["metadata"]["name"])

    tasks = [asyncio.create_task(one_watch()) for _ in range(20)]

    async def all_registered() -> bool:
        metrics = (await client.get("/metrics")).text
        return 'apiserver_registered_watchers{group="",kind="ConfigMap",version="v1"} 20.0' \
            in metrics

    await wait_for(all_registered)
    await client.post(CM, json=configmap("fan"))
    assert await asyncio.gather(*tasks) == ["fan"] * 20


async def test_http2_and_http1_on_one_port(tmp_path: Path) -> None:
    config = APIServerConfig(data_dir=tmp_path / "h2", port=0, grpc_port=None, http2=True)
    async with APIServer(config) as server:
        async with httpx.AsyncClient(base_url=server.url, http1=False, http2=True) as h2:
            r = await h2.post(CM, json=configmap("over-h2"))
            assert r.status_code == 201, r.text
            assert r.http_version == "HTTP/2"
            async with h2.stream("GET", CM, params={"watch": "1"}) as response:
                event = await WatchStream(response).next()
            assert event["object"]["metadata"]["name"] == "over-h2"
        async with httpx.AsyncClient(base_url=server.url) as h1:
            r = await h1.get(f"{CM}/over-h2")
            assert r.http_version == "HTTP/1.1"
            assert r.json()["metadata"]["name"] == "over-h2"


async def test_protobuf_body_with_go_zero_values_gets_defaults(client: httpx.AsyncClient) -> None:
    """Go clients (kubectl create, Helm) send every non-pointer field, zero or not:
    a zero value is "unset" and gets Kubernetes' default, as in Go."""
    from pilothouse.api.kinds import KindRegistry
    from pilothouse.api.serialization import encode_protobuf
    from pilothouse.gen.k8s.core.v1 import core_pb2

    pod = core_pb2.Pod()
    pod.metadata.name = "from-go"
    pod.spec.restartPolicy = ""
    pod.spec.dnsPolicy = ""
    container = pod.spec.containers.add(name="c", image="busybox")
    container.terminationMessagePolicy = ""
    container.imagePullPolicy = ""
    kind = KindRegistry.builtin().by_kind("v1", "Pod")
    assert kind is not None
    r = await client.post("/api/v1/namespaces/default/pods",
                          content=encode_protobuf(kind, pod),
                          headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"]) == ("Always", "ClusterFirst")
    assert spec["containers"][0]["terminationMessagePolicy"] == "File"
    assert spec["containers"][0]["imagePullPolicy"] == "Always"


async def test_history_is_compacted_on_a_schedule(tmp_path: Path) -> None:
    """The apiserver runs the storage compactor: old revisions become 410 Gone."""
    from pilothouse.storage import CompactionPolicy

    policy = CompactionPolicy(interval_seconds=0.05, retain_seconds=0, retain_revisions=1)
    config = APIServerConfig(data_dir=tmp_path / "c", port=0, grpc_port=None, compaction=policy)
    async with APIServer(config) as server:
        assert server.storage is not None
        storage = server.storage
        async with httpx.AsyncClient(base_url=server.url) as c:
            first = (await c.post(CM, json=configmap("a"))).json()
            for i in range(3):
                await c.post(CM, json=configmap(f"b{i}"))
            rv = int(first["metadata"]["resourceVersion"])

            async def compacted() -> bool:
                try:
                    await storage.get("/registry/configmaps/default/a", revision=rv)
                except Exception:
                    return True
                return False

            await wait_for(compacted)


async def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = APIServer(APIServerConfig(data_dir=tmp_path / "p", port=port, grpc_port=None))
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            await server.start()
        await server.stop()
