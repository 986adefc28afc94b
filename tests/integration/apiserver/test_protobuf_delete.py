"""DELETE bodies in Kubernetes' protobuf envelope, as Go clients built for protobuf
send them (Helm deletes its release Secrets this way on ``helm uninstall``)."""

from __future__ import annotations

import httpx

from pilothouse.api.serialization import PROTOBUF_CONTENT_TYPE, PROTOBUF_MAGIC
from pilothouse.gen.k8s.meta.v1 import meta_pb2
from pilothouse.gen.k8s.runtime import runtime_pb2

SECRETS = "/api/v1/namespaces/default/secrets"
PROTOBUF = {"Content-Type": PROTOBUF_CONTENT_TYPE}


def delete_options(**fields: object) -> bytes:
    options = meta_pb2.DeleteOptions(**fields)  # type: ignore[arg-type]
    envelope = runtime_pb2.Unknown(raw=options.SerializeToString())
    envelope.typeMeta.apiVersion = "v1"
    envelope.typeMeta.kind = "DeleteOptions"
    return PROTOBUF_MAGIC + envelope.SerializeToString()


def secret(name: str, **labels: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"name": name, "labels": labels}, "data": {"release": "aGk="}}


async def test_delete_reads_protobuf_delete_options(client: httpx.AsyncClient) -> None:
    created = (await client.post(SECRETS, json=secret("sh.helm.release.v1.demo.v1"))).json()
    # A precondition on another uid must be honoured (409): the body was really read.
    wrong = delete_options(preconditions=meta_pb2.Preconditions(uid="not-the-uid"))
    r = await client.request("DELETE", f"{SECRETS}/sh.helm.release.v1.demo.v1",
                             content=wrong, headers=PROTOBUF)
    assert r.status_code == 409, r.text
    right = delete_options(preconditions=meta_pb2.Preconditions(uid=created["metadata"]["uid"]),
                           propagationPolicy="Background")
    r = await client.request("DELETE", f"{SECRETS}/sh.helm.release.v1.demo.v1",
                             content=right, headers=PROTOBUF)
    assert r.status_code == 200, r.text
    assert (await client.get(f"{SECRETS}/sh.helm.release.v1.demo.v1")).status_code == 404


async def test_delete_collection_reads_protobuf_delete_options(
        client: httpx.AsyncClient) -> None:
    for i in range(3):
        await client.post(SECRETS, json=secret(f"s{i}", owner="helm"))
    await client.post(SECRETS, json=secret("keep"))
    r = await client.request("DELETE", SECRETS, params={"labelSelector": "owner=helm"},
                             content=delete_options(dryRun=["All"]), headers=PROTOBUF)
    assert r.status_code == 200, r.text
    names = {s["metadata"]["name"] for s in (await client.get(SECRETS)).json()["items"]}
    assert names == {"s0", "s1", "s2", "keep"}  # dryRun came through the protobuf body
    r = await client.request("DELETE", SECRETS, params={"labelSelector": "owner=helm"},
                             content=delete_options(), headers=PROTOBUF)
    assert r.status_code == 200, r.text
    names = {s["metadata"]["name"] for s in (await client.get(SECRETS)).json()["items"]}
    assert names == {"keep"}


async def test_corrupt_protobuf_delete_options_is_a_clear_400(client: httpx.AsyncClient) -> None:
    await client.post(SECRETS, json=secret("victim"))
    for body in (b"not protobuf at all", PROTOBUF_MAGIC + b"\xff\xff\xff"):
        r = await client.request("DELETE", f"{SECRETS}/victim", content=body, headers=PROTOBUF)
        assert r.status_code == 400, r.text
        assert "DeleteOptions" in r.json()["message"]
    assert (await client.get(f"{SECRETS}/victim")).status_code == 200
