"""JSON watches over HTTP/1.1 are written straight to the connection by the watch
cache (services/apiserver/watchstream.py): order, sharing, the slow-consumer bound."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest

from pilothouse.services.apiserver import watchstream
from pilothouse.services.apiserver.server import APIServer
from pilothouse.services.apiserver.watchcache import CacheEvent, Watcher
from tests.integration.apiserver.conftest import WatchStream, configmap
from tests.support import wait_for

CM = "/api/v1/namespaces/default/configmaps"


def _watchers(apiserver: APIServer) -> list[Watcher]:
    assert apiserver.registry is not None
    cache = apiserver.registry.store_for("", "configmaps").cache
    return list(cache._all_watchers())


async def test_live_events_reach_every_direct_watcher_in_order(
        apiserver: APIServer, client: httpx.AsyncClient) -> None:
    rv = (await client.get(CM)).json()["metadata"]["resourceVersion"]
    same = {"watch": "1", "resourceVersion": rv, "labelSelector": "app=a"}
    other = {"watch": "1", "resourceVersion": rv, "labelSelector": "app in (a,b)"}
    async with client.stream("GET", CM, params=same) as r1, \
            client.stream("GET", CM, params=same) as r2, \
            client.stream("GET", CM, params=other) as r3:
        await wait_for(lambda: len(_watchers(apiserver)) == 3, what="3 watchers registered")
        assert all(w.sink is not None for w in _watchers(apiserver)), "not written directly"
        assert len({w.filter_key for w in _watchers(apiserver)}) == 2
        names = [f"d{i:02d}" for i in range(30)]
        await asyncio.gather(*(client.post(CM, json=configmap(n, app="a" if i % 3 else "b"))
                               for i, n in enumerate(names)))
        seen = []
        for response, count in ((r1, 20), (r2, 20), (r3, 30)):
            stream = WatchStream(response)
            seen.append([await stream.next() for _ in range(count)])
    for events in seen:
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert rvs == sorted(set(rvs)), "out of order or repeated"
        assert {e["type"] for e in events} == {"ADDED"}
    assert seen[0] == seen[1]
    assert {e["object"]["metadata"]["labels"]["app"] for e in seen[0]} == {"a"}
    assert {e["object"]["metadata"]["name"] for e in seen[2]} == set(names)


async def test_initial_events_then_live_events_then_bookmark_order(
        apiserver: APIServer, client: httpx.AsyncClient) -> None:
    for i in range(5):
        await client.post(CM, json=configmap(f"init{i}"))
    params = {"watch": "true", "sendInitialEvents": "true", "allowWatchBookmarks": "true",
              "resourceVersionMatch": "NotOlderThan"}
    async with client.stream("GET", CM, params=params) as response:
        stream = WatchStream(response)
        initial = [await stream.next() for _ in range(5)]
        end = await stream.next()
        await client.post(CM, json=configmap("live"))
        live = await stream.next()
    assert [e["object"]["metadata"]["name"] for e in initial] == [f"init{i}" for i in range(5)]
    assert end["type"] == "BOOKMARK"
    assert (live["type"], live["object"]["metadata"]["name"]) == ("ADDED", "live")


async def test_a_client_that_stops_reading_is_closed(
        apiserver: APIServer, client: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchstream, "MAX_UNSENT", 64 * 1024)
    host, port = apiserver.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {CM}?watch=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        await wait_for(lambda: len(_watchers(apiserver)) == 1, what="the watcher registered")
        # Never read: the kernel buffers fill, then the transport's, then the bound.
        big = {"k": "x" * 512 * 1024}
        for i in range(40):
            await client.post(CM, json=configmap(f"big{i}", big))
            if not _watchers(apiserver):
                break
        await wait_for(lambda: not _watchers(apiserver), what="the slow watcher closed")
        # The server is fine and other watchers still work.
        async with client.stream("GET", CM, params={"watch": "1", "labelSelector": "x=y"}):
            await wait_for(lambda: len(_watchers(apiserver)) == 1, what="a new watcher")
    finally:
        sock.close()


def test_writer_only_for_uvicorn_http1_responses() -> None:
    async def send(message: dict[str, Any]) -> None:
        del message

    assert watchstream.ChunkedWriter.for_send(send) is None
    assert watchstream.ChunkedWriter.for_send(object()) is None


def test_one_frame_per_event_and_type_per_dispatch() -> None:
    class Obj:
        def json(self) -> bytes:
            return b'{"a":1}'

    obj: Any = Obj()
    shared: dict[Any, Any] = {}
    first = watchstream.frame(CacheEvent("ADDED", obj, None, 5), shared)
    again = watchstream.frame(CacheEvent("ADDED", obj, None, 5), shared)
    deleted = watchstream.frame(CacheEvent("DELETED", obj, None, 5), shared)
    assert first is again
    line = b'{"type":"ADDED","object":{"a":1}}\n'
    assert first == b"%x\r\n" % len(line) + line + b"\r\n"
    assert deleted.endswith(b'{"type":"DELETED","object":{"a":1}}\n\r\n')
