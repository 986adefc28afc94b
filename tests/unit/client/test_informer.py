"""Informer and SharedInformerFactory over the in-memory fake apiserver, with a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pilothouse.api.selectors import LabelSelector
from pilothouse.client import APIConnectionError, APIError, Client
from pilothouse.client.clock import AsyncFakeClock
from pilothouse.client.fake import FakeTransport
from pilothouse.client.informer import (
    NAMESPACE_INDEX,
    NODE_NAME_INDEX,
    DeletedFinalStateUnknown,
    Indexer,
    Informer,
    SharedInformerFactory,
    copy_object,
    meta_namespace_key,
    object_of,
    split_key,
)
from pilothouse.gen.k8s.core.v1 import core_pb2


def make_pod(name: str, namespace: str = "default", node: str = "",
             **labels: str) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = namespace
    pod.metadata.labels.update(labels)
    if node:
        pod.spec.nodeName = node
    return pod


def make_node(name: str) -> core_pb2.Node:
    node = core_pb2.Node()
    node.metadata.name = name
    return node


class Recorder:
    """Handlers that record what they saw, as (event, key) pairs."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.deleted: list[Any] = []

    def on_add(self, obj: Any) -> None:
        self.events.append(("add", meta_namespace_key(obj)))

    def on_update(self, old: Any, new: Any) -> None:
        self.events.append(("update", meta_namespace_key(new)))

    def on_delete(self, obj: Any) -> None:
        self.deleted.append(obj)
        self.events.append(("delete", meta_namespace_key(obj)))

    def attach(self, informer: Informer[Any]) -> None:
        informer.add_event_handler(self.on_add, self.on_update, self.on_delete)


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def clock() -> AsyncFakeClock:
    return AsyncFakeClock()


@pytest.fixture
def client(fake: FakeTransport) -> Client:
    return Client(fake)


async def until(predicate: Callable[[], bool], what: str = "condition") -> None:
    """Yield to the loop until ``predicate`` holds (bounded in loop turns, not time)."""
    for _ in range(5000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what} never became true")


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Informer[Any]], Any]]:
    tasks: list[asyncio.Task[None]] = []

    async def start(informer: Informer[Any]) -> None:
        tasks.append(asyncio.create_task(informer.run()))
        await asyncio.wait_for(informer.wait_for_sync(), 5)

    yield start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_lists_then_watches_and_handlers_see_changes_in_order(
        client: Client, fake: FakeTransport, clock: AsyncFakeClock, running: Any) -> None:
    await client.create(make_pod("a"))
    await client.create(make_pod("b"))
    informer = Informer(client, core_pb2.Pod, clock=clock)
    rec = Recorder()
    rec.attach(informer)
    assert not informer.has_synced()
    await running(informer)
    assert informer.has_synced()
    assert sorted(rec.events) == [("add", "default/a"), ("add", "default/b")]
    rec.events.clear()
    await client.create(make_pod("c"))
    await client.patch(core_pb2.Pod, "a", {"metadata": {"labels": {"x": "1"}}},
                       namespace="default")
    await client.delete(core_pb2.Pod, "b", namespace="default")
    await until(lambda: len(rec.events) == 3)
    assert rec.events == [("add", "default/c"), ("update", "default/a"),
                          ("delete", "default/b")]
    assert informer.get("a", "default").metadata.labels["x"] == "1"  # type: ignore[union-attr]
    assert informer.get("b", "default") is None
    # The watch started from the list's resourceVersion.
    watches = [a for a in fake.actions if a.verb == "watch"]
    assert len(watches) == 1


async def test_indices_by_namespace_node_and_custom(
        client: Client, clock: AsyncFakeClock, running: Any) -> None:
    await client.create(make_pod("a", "ns1", node="n1", app="web"))
    await client.create(make_pod("b", "ns1", node="n2", app="db"))
    await client.create(make_pod("c", "ns2", app="web"))
    informer = Informer(client, core_pb2.Pod, clock=clock)
    informer.add_indexer("app", lambda pod: [pod.metadata.labels.get("app", "")])
    await running(informer)
    names = lambda objs: sorted(o.metadata.name for o in objs)  # noqa: E731
    assert names(informer.by_index(NAMESPACE_INDEX, "ns1")) == ["a", "b"]
    assert names(informer.by_index(NODE_NAME_INDEX, "n1")) == ["a"]
    assert names(informer.by_index(NODE_NAME_INDEX, "")) == ["c"]
    assert names(informer.by_index("app", "web")) == ["a", "c"]
    assert names(informer.list("ns1")) == ["a", "b"]
    assert names(informer.list(label_selector=LabelSelector.parse("app=web"))) == ["a", "c"]
    # Moving a pod between index values updates the indices.
    await client.bind("ns2", "c", "n1")
    await until(lambda: len(informer.by_index(NODE_NAME_INDEX, "n1")) == 2)
    assert informer.by_index(NODE_NAME_INDEX, "") == []
    # Indexers added after start index what is cached.
    informer.add_indexer("name-length", lambda pod: [str(len(pod.metadata.name))])
    assert names(informer.by_index("name-length", "1")) == ["a", "b", "c"]


async def test_resumes_from_the_last_resource_version_after_disconnect(
        client: Client, fake: FakeTransport, clock: AsyncFakeClock, running: Any) -> None:
    informer = Informer(client, core_pb2.Pod, clock=clock)
    rec = Recorder()
    rec.attach(informer)
    await running(informer)
    await client.create(make_pod("a"))
    await until(lambda: rec.events == [("add", "default/a")])
    seen_rv = informer.last_sync_resource_version
    fake.disconnect_watches()
    await clock.wait_for_sleepers(1)  # backing off
    await client.create(make_pod("b"))  # happens while disconnected
    clock.advance(1.0)
    await until(lambda: len(rec.events) == 2)
    assert rec.events[1] == ("add", "default/b")
    lists = [a for a in fake.actions if a.verb == "list"]
    assert len(lists) == 1  # resumed, no relist
    assert informer.relists == 0
    assert int(informer.last_sync_resource_version) > int(seen_rv)


async def test_clean_end_of_watch_rewatches_without_relist(
        client: Client, fake: FakeTransport, clock: AsyncFakeClock, running: Any) -> None:
    informer = Informer(client, core_pb2.Pod, clock=clock)
    await running(informer)
    await client.create(make_pod("a"))
    await until(lambda: informer.get("a", "default") is not None)
    fake.end_watches()
    await until(lambda: fake.open_watches == 1 and
                sum(a.verb == "watch" for a in fake.actions) == 2)
    assert sum(a.verb == "list" for a in fake.actions) == 1


async def test_relists_on_gone_and_tombstones_missed_deletes(
        client: Client, fake: FakeTransport, clock: AsyncFakeClock, running: Any) -> None:
    await client.create(make_pod("keep"))
    await client.create(make_pod("change"))
    await client.create(make_pod("vanish"))
    informer = Informer(client, core_pb2.Pod, clock=clock)
    rec = Recorder()
    rec.attach(informer)
    await running(informer)
    rec.events.clear()
    fake.disconnect_watches()
    await clock.wait_for_sleepers(1)
    # While disconnected: one change, one delete, one add, then history is compacted.
    await client.patch(core_pb2.Pod, "change", {"metadata": {"labels": {"v": "2"}}},
                       namespace="default")
    await client.delete(core_pb2.Pod, "vanish", namespace="default")
    await client.create(make_pod("new"))
    fake.compact()
    clock.advance(1.0)
    await until(lambda: len(rec.events) == 3, "relist events")
    assert informer.relists == 1
    assert sorted(rec.events) == [("add", "default/new"), ("delete", "default/vanish"),
                                  ("update", "default/change")]
    tombstone = rec.deleted[0]
    assert isinstance(tombstone, DeletedFinalStateUnknown)
    assert tombstone.key == "default/vanish"
    assert object_of(tombstone).metadata.name == "vanish"
    assert informer.get("vanish", "default") is None
    # Watching again after the relist delivers new changes.
    await client.create(make_pod("after"))
    await until(lambda: ("add", "default/after") in rec.events)


async def test_bookmarks_advance_the_resource_version(
        client: Client, fake: FakeTransport, clock: AsyncFakeClock, running: Any) -> None:
    informer = Informer(client, core_pb2.Pod, clock=clock)
    rec = Recorder()
    rec.attach(informer)
    await running(informer)
    await client.create(make_node("n1"))  # bumps the shared revision, not a pod event
    before = informer.last_sync_resource_version
    fake.send_bookmark(core_pb2.Pod)
    await until(lambda: informer.last_sync_resource_version != before)
    assert informer.last_sync_resource_version == str(fake.resource_version)
    assert rec.events == []
    # Compacting up to the bookmark does not force a relist: the watch resumes from it.
    fake.compact()
    fake.disconnect_watches()
    await clock.wait_for_sleepers(1)
    clock.advance(1.0)
    await until(lambda: sum(a.verb == "watch" for a in fake.actions) == 2)
    await client.create(make_pod("p"))
    await until(lambda: rec.events == [("add", "default/p")])
    assert informer.relists == 0


async def test_list_failures_back_off_and_retry(
        client: Client, fake: FakeTransport, clock: AsyncFakeClock, running: Any) -> None:
    fake.fail_next("list", APIError(500, "InternalError", "storage is sad"))
    fake.fail_next("list", APIConnectionError("refused"))
    informer = Informer(client, core_pb2.Pod, clock=clock)
    task = asyncio.create_task(informer.run())
    try:
        await clock.wait_for_sleepers(1)
        assert not informer.has_synced()
        clock.advance(0.96)  # first back-off: 0.8 s (+ up to 20% jitter)
        await clock.wait_for_sleepers(1)
        assert not informer.has_synced()
        clock.advance(1.92)  # doubled
        await asyncio.wait_for(informer.wait_for_sync(), 5)
        assert sum(a.verb == "list" for a in fake.actions) == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_resync_redelivers_every_object_as_an_update(
        client: Client, clock: AsyncFakeClock, running: Any) -> None:
    await client.create(make_pod("a"))
    await client.create(make_pod("b"))
    informer = Informer(client, core_pb2.Pod, clock=clock, resync_period=30)
    rec = Recorder()
    rec.attach(informer)
    await running(informer)
    rec.events.clear()
    await clock.wait_for_sleepers(1)
    clock.advance(30)
    await until(lambda: len(rec.events) == 2)
    assert sorted(rec.events) == [("update", "default/a"), ("update", "default/b")]


async def test_late_handler_gets_the_cache_as_adds(
        client: Client, clock: AsyncFakeClock, running: Any) -> None:
    await client.create(make_pod("a"))
    informer = Informer(client, core_pb2.Pod, clock=clock)
    await running(informer)
    rec = Recorder()
    rec.attach(informer)
    assert rec.events == [("add", "default/a")]


async def test_handler_failure_escalates_out_of_run(
        client: Client, clock: AsyncFakeClock) -> None:
    informer = Informer(client, core_pb2.Pod, clock=clock)

    def broken(obj: Any) -> None:
        raise RuntimeError("handler bug")

    informer.add_event_handler(on_add=broken)
    await client.create(make_pod("a"))
    with pytest.raises(RuntimeError, match="handler bug"):
        await asyncio.wait_for(informer.run(), 5)


async def test_selectors_and_namespace_narrow_the_cache(
        client: Client, clock: AsyncFakeClock, running: Any) -> None:
    await client.create(make_pod("a", "ns1", node="n1"))
    await client.create(make_pod("b", "ns1", node="n2"))
    await client.create(make_pod("c", "ns2", node="n1"))
    informer = Informer(client, core_pb2.Pod, namespace="ns1",
                        field_selector="spec.nodeName=n1", clock=clock)
    await running(informer)
    assert [p.metadata.name for p in informer.list()] == ["a"]


async def test_cluster_scoped_keys_have_no_namespace(
        client: Client, clock: AsyncFakeClock, running: Any) -> None:
    await client.create(make_node("n1"))
    informer = Informer(client, core_pb2.Node, clock=clock)
    await running(informer)
    assert informer.indexer.keys() == ["n1"]
    assert informer.get("n1") is not None
    assert NAMESPACE_INDEX not in informer.indexer.index_names


async def test_paged_initial_list(client: Client, fake: FakeTransport, clock: AsyncFakeClock,
                                  running: Any) -> None:
    for i in range(7):
        await client.create(make_pod(f"p{i}"))
    informer = Informer(client, core_pb2.Pod, clock=clock, page_size=3)
    await running(informer)
    assert len(informer.list()) == 7
    assert sum(a.verb == "list" for a in fake.actions) == 3


def test_keys_and_copies() -> None:
    pod = make_pod("a", "ns")
    assert meta_namespace_key(pod) == "ns/a"
    assert meta_namespace_key(make_node("n")) == "n"
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("n") == ("", "n")
    for bad in ("a/b/c", "/a", "a/"):
        with pytest.raises(ValueError):
            split_key(bad)
    clone = copy_object(pod)
    clone.metadata.labels["x"] = "y"
    assert "x" not in pod.metadata.labels
    assert meta_namespace_key(DeletedFinalStateUnknown("ns/a", pod)) == "ns/a"


def test_indexer_rejects_duplicates_and_unknown_indices() -> None:
    indexer: Indexer[core_pb2.Pod] = Indexer({"ns": lambda o: [o.metadata.namespace]})
    with pytest.raises(ValueError):
        indexer.add_indexer("ns", lambda o: [])
    with pytest.raises(KeyError):
        indexer.by_index("nope", "x")
    indexer.upsert("a/x", make_pod("x", "a"))
    indexer.upsert("a/x", make_pod("x", "b"))
    assert indexer.index_values("ns") == ["b"]
    indexer.remove("a/x")
    assert indexer.index_values("ns") == [] and len(indexer) == 0


async def test_factory_shares_informers_and_syncs_them_together(
        client: Client, fake: FakeTransport, clock: AsyncFakeClock) -> None:
    await client.create(make_pod("a"))
    await client.create(make_node("n1"))
    factory = SharedInformerFactory(client, clock=clock)
    pods = factory.informer_for(core_pb2.Pod)
    assert factory.informer_for(core_pb2.Pod) is pods
    nodes = factory.informer_for(core_pb2.Node)
    async with factory:
        async with asyncio.timeout(5):
            await factory.wait_for_sync()
        assert pods.has_synced() and nodes.has_synced()
        assert pods.get("a", "default") is not None and nodes.get("n1") is not None
        # An informer asked for after start starts with the next start().
        cms = factory.informer_for(core_pb2.ConfigMap)
        factory.start()
        async with asyncio.timeout(5):
            await factory.wait_for_sync()
        assert cms.has_synced()
    assert fake.open_watches == 0


async def test_factory_surfaces_a_failed_informer(client: Client, clock: AsyncFakeClock) -> None:
    await client.create(make_pod("a"))
    factory = SharedInformerFactory(client, clock=clock)
    pods = factory.informer_for(core_pb2.Pod)

    def broken(obj: Any) -> None:
        raise RuntimeError("handler bug")

    pods.add_event_handler(on_add=broken)
    factory.start()
    with pytest.raises(RuntimeError, match="handler bug"):
        async with asyncio.timeout(5):
            await factory.wait_for_sync()
    with pytest.raises(RuntimeError, match="handler bug"):
        await factory.shutdown()


async def test_an_informer_runs_once(client: Client, clock: AsyncFakeClock,
                                     running: Any) -> None:
    informer = Informer(client, core_pb2.Pod, clock=clock)
    await running(informer)
    with pytest.raises(RuntimeError, match="already running"):
        await informer.run()
