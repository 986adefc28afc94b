"""Informers against a real apiserver: list+watch, resume, and relist after 410 Gone."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest

from pilothouse.client import Client
from pilothouse.client.informer import (
    NODE_NAME_INDEX,
    DeletedFinalStateUnknown,
    Informer,
    SharedInformerFactory,
    meta_namespace_key,
)
from pilothouse.client.workqueue import WorkQueue
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.apiserver.server import APIServer, APIServerConfig
from tests.integration.client.conftest import TRANSPORTS, make_client
from tests.support import wait_for


def make_pod(name: str, node: str = "") -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = "default"
    c = pod.spec.containers.add()
    c.name, c.image = "c", "busybox"
    if node:
        pod.spec.nodeName = node
    return pod


async def test_informer_follows_the_apiserver(client: Client) -> None:
    await client.create(make_pod("a", node="n1"))
    factory = SharedInformerFactory(client)
    pods = factory.informer_for(core_pb2.Pod)
    queue: WorkQueue[str] = WorkQueue()
    deleted: list[Any] = []
    pods.add_event_handler(
        on_add=lambda o: queue.add(meta_namespace_key(o)),
        on_update=lambda old, new: queue.add(meta_namespace_key(new)),
        on_delete=lambda o: (deleted.append(o), queue.add(meta_namespace_key(o))))
    async with factory:
        async with asyncio.timeout(10):
            await factory.wait_for_sync()
        assert len(queue) == 1
        await client.create(make_pod("b"))
        await wait_for(lambda: pods.get("b", "default") is not None, what="b cached")
        await client.bind("default", "b", "n1")
        await wait_for(lambda: len(pods.by_index(NODE_NAME_INDEX, "n1")) == 2,
                       what="b bound in cache")
        await client.delete(core_pb2.Pod, "a", namespace="default", grace_period_seconds=0)
        await wait_for(lambda: pods.get("a", "default") is None, what="a gone from cache")
        assert {meta_namespace_key(o) for o in deleted} == {"default/a"}
        # Keys collapsed in the queue: a and b, once each.
        assert sorted([await queue.get(), await queue.get()]) == ["default/a", "default/b"]
        assert len(queue) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_informer_relists_after_the_apiserver_restarts(tmp_path: Path,
                                                             transport: str) -> None:
    """A restart loses the watch cache window: resuming gets 410, the informer relists,
    and a delete that happened while it was away arrives as a tombstone."""
    config = APIServerConfig(data_dir=tmp_path / transport, port=free_port(),
                             grpc_port=free_port())
    server = APIServer(config)
    await server.start()
    client = make_client(server, transport)
    # A short back-off cap: the outage below can last long on a busy machine.
    informer = Informer(client, core_pb2.ConfigMap, namespace="default", max_backoff=1.0)
    deletes: list[Any] = []
    informer.add_event_handler(on_delete=deletes.append)
    task = asyncio.create_task(informer.run())
    try:
        for name in ("keep", "drop"):
            cm = core_pb2.ConfigMap()
            cm.metadata.name, cm.metadata.namespace = name, "default"
            await client.create(cm)
        async with asyncio.timeout(10):
            await informer.wait_for_sync()
        await wait_for(lambda: len(informer.list()) == 2, what="both cached")
        await server.stop()
        # While the informer is cut off, the object goes away (a second server on the
        # same data, then stopped), and more writes move the revision on.
        # On other ports: the informer must not reach it and follow its events.
        offline = APIServer(dataclasses.replace(config, port=free_port(),
                                                grpc_port=free_port()))
        await offline.start()
        async with make_client(offline, transport) as other:
            await other.delete(core_pb2.ConfigMap, "drop", namespace="default")
            for i in range(3):
                cm = core_pb2.ConfigMap()
                cm.metadata.name, cm.metadata.namespace = f"new{i}", "default"
                await other.create(cm)
        await offline.stop()
        server = APIServer(config)
        await server.start()
        await wait_for(lambda: informer.relists >= 1, within=30, what="relist")
        await wait_for(lambda: len(informer.list()) == 4, what="relisted cache")
        assert informer.get("drop", "default") is None
        assert [type(d) for d in deletes] == [DeletedFinalStateUnknown]
        assert deletes[0].key == "default/drop"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        await server.stop()
