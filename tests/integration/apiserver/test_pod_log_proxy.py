"""pods/log is streamed from the kubelet of the pod's node (a stand-in kubelet here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support import wait_for

PODS = "/api/v1/namespaces/default/pods"


class StandInKubelet:
    """Serves /containerLogs like a kubelet and records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.requests.append(f"{scope['path']}?{scope['query_string'].decode()}")
        parts = scope["path"].split("/")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": f"hello from {parts[-1]}\n".encode(),
                    "more_body": True})
        if b"follow=true" in scope["query_string"]:
            await self.release.wait()
            await send({"type": "http.response.body", "body": b"later line\n",
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.fixture
async def kubelet() -> AsyncIterator[tuple[StandInKubelet, int]]:
    app = StandInKubelet()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, within=10, what="stand-in kubelet listening")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield app, port
    finally:
        app.release.set()
        server.should_exit = True
        await task


async def make_node_and_pod(client: httpx.AsyncClient, port: int, containers: list[str],
                            node_port: bool = True) -> None:
    status: dict[str, Any] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}
    if node_port:
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": port}}
    r = await client.post("/api/v1/nodes", json={"apiVersion": "v1", "kind": "Node",
                                                 "metadata": {"name": "n1"}})
    assert r.status_code == 201, r.text
    node = r.json()
    node["status"] = status
    r = await client.put("/api/v1/nodes/n1/status", json=node)
    assert r.status_code == 200, r.text
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"nodeName": "n1",
                    "containers": [{"name": n, "image": "busybox"} for n in containers]}}
    r = await client.post(PODS, json=pod)
    assert r.status_code == 201, r.text


async def test_log_is_proxied_with_its_options(client: httpx.AsyncClient,
                                               kubelet: tuple[StandInKubelet, int]) -> None:
    app, port = kubelet
    await make_node_and_pod(client, port, ["app"])
    r = await client.get(f"{PODS}/p/log", params={"tailLines": "5", "timestamps": "true"})
    assert r.status_code == 200
    assert r.text == "hello from app\n"
    assert app.requests == ["/containerLogs/default/p/app?tailLines=5&timestamps=true"]


async def test_follow_streams_as_lines_arrive(client: httpx.AsyncClient,
                                              kubelet: tuple[StandInKubelet, int]) -> None:
    app, port = kubelet
    await make_node_and_pod(client, port, ["app"])
    async with client.stream("GET", f"{PODS}/p/log", params={"follow": "true"}) as response:
        lines = response.aiter_lines()
        assert await anext(lines) == "hello from app"
        app.release.set()
        assert await anext(lines) == "later line"


async def test_container_must_be_named_when_there_are_several(
        client: httpx.AsyncClient, kubelet: tuple[StandInKubelet, int]) -> None:
    _, port = kubelet
    await make_node_and_pod(client, port, ["a", "b"])
    r = await client.get(f"{PODS}/p/log")
    assert r.status_code == 400
    assert r.json()["message"] == ("a container name must be specified for pod p, "
                                   "choose one of: [a b]")
    assert (await client.get(f"{PODS}/p/log", params={"container": "b"})).text == \
        "hello from b\n"
    assert (await client.get(f"{PODS}/p/log", params={"container": "zz"})).status_code == 400
    assert (await client.get(f"{PODS}/p/log", params={"tailLines": "x"})).status_code == 400


async def test_node_without_a_kubelet_endpoint_is_unavailable(
        client: httpx.AsyncClient, kubelet: tuple[StandInKubelet, int]) -> None:
    _, port = kubelet
    await make_node_and_pod(client, port, ["app"], node_port=False)
    r = await client.get(f"{PODS}/p/log")
    assert r.status_code == 503
    assert r.json()["reason"] == "ServiceUnavailable"
