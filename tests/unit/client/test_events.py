"""EventRecorder over the fake apiserver: creation, aggregation by patching count, drops."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.client import APIConnectionError, Client
from pilothouse.client.clock import AsyncFakeClock
from pilothouse.client.events import EventRecorder
from pilothouse.client.fake import FakeTransport
from pilothouse.gen.k8s.core.v1 import core_pb2


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def client(fake: FakeTransport) -> Client:
    return Client(fake)


@pytest.fixture
def clock() -> AsyncFakeClock:
    return AsyncFakeClock()


async def make_pod(client: Client, name: str = "web") -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = "default"
    return await client.create(pod)


def events(fake: FakeTransport) -> list[core_pb2.Event]:
    return [e for e in fake.objects(core_pb2.Event) if isinstance(e, core_pb2.Event)]


async def test_event_fields(client: Client, fake: FakeTransport, clock: AsyncFakeClock) -> None:
    pod = await make_pod(client)
    async with EventRecorder(client, "default-scheduler", host="node-1",
                             clock=clock) as recorder:
        recorder.event(pod, "Warning", "FailedScheduling", "0/3 nodes are available")
        await recorder.flush()
    [event] = events(fake)
    assert event.metadata.namespace == "default"
    assert event.metadata.name.startswith("web.")
    ref = event.involvedObject
    assert (ref.kind, ref.apiVersion, ref.namespace, ref.name, ref.uid) == (
        "Pod", "v1", "default", "web", pod.metadata.uid)
    assert (event.type, event.reason, event.message) == (
        "Warning", "FailedScheduling", "0/3 nodes are available")
    assert event.source.component == "default-scheduler" and event.source.host == "node-1"
    assert event.reportingComponent == "default-scheduler"
    assert event.count == 1
    assert event.firstTimestamp.seconds == int(clock.now().timestamp())
    assert event.lastTimestamp == event.firstTimestamp


async def test_repeats_patch_the_count(client: Client, fake: FakeTransport,
                                       clock: AsyncFakeClock) -> None:
    pod = await make_pod(client)
    async with EventRecorder(client, "kubelet", clock=clock) as recorder:
        recorder.event(pod, "Warning", "BackOff", "Back-off restarting failed container")
        await recorder.flush()
        clock.advance(10)
        recorder.event(pod, "Warning", "BackOff", "Back-off restarting failed container")
        recorder.event(pod, "Warning", "BackOff", "Back-off restarting failed container")
        recorder.event(pod, "Normal", "Pulled", "Container image already present")
        await recorder.flush()
    by_reason = {e.reason: e for e in events(fake)}
    assert set(by_reason) == {"BackOff", "Pulled"}
    backoff = by_reason["BackOff"]
    assert backoff.count == 3
    assert backoff.lastTimestamp.seconds == backoff.firstTimestamp.seconds + 10
    assert sum(a.verb == "patch" for a in fake.actions) == 2


async def test_a_vanished_event_is_recreated(client: Client, fake: FakeTransport,
                                             clock: AsyncFakeClock) -> None:
    pod = await make_pod(client)
    async with EventRecorder(client, "kubelet", clock=clock) as recorder:
        recorder.event(pod, "Normal", "Started", "Started container")
        await recorder.flush()
        [first] = events(fake)
        await client.delete(core_pb2.Event, first.metadata.name, namespace="default")
        clock.advance(1)
        recorder.event(pod, "Normal", "Started", "Started container")
        await recorder.flush()
    [second] = events(fake)
    assert second.count == 1 and second.metadata.name != first.metadata.name


async def test_cluster_scoped_objects_get_events_in_default(
        client: Client, fake: FakeTransport, clock: AsyncFakeClock) -> None:
    node = core_pb2.Node()
    node.metadata.name = "n1"
    node = await client.create(node)
    async with EventRecorder(client, "kubelet", clock=clock) as recorder:
        recorder.event(node, "Normal", "NodeReady", "Node n1 status is now: NodeReady")
        recorder.event(node, "Normal", "Starting", "Starting kubelet.")  # same instant
        await recorder.flush()
    names = sorted(e.metadata.name for e in events(fake))
    assert len(names) == 2 and len(set(names)) == 2
    assert all(e.metadata.namespace == "default" and e.involvedObject.kind == "Node"
               for e in events(fake))


async def test_connection_failures_are_retried(client: Client, fake: FakeTransport,
                                               clock: AsyncFakeClock) -> None:
    pod = await make_pod(client)
    fake.fail_next("create", APIConnectionError("down"), resource="events")
    async with EventRecorder(client, "kubelet", clock=clock) as recorder:
        recorder.event(pod, "Normal", "Pulling", "Pulling image")
        await clock.wait_for_sleepers(1)
        clock.advance(1)
        await recorder.flush()
    assert len(events(fake)) == 1 and recorder.written == 1


async def test_full_queue_drops_instead_of_blocking(client: Client,
                                                    clock: AsyncFakeClock) -> None:
    pod = await make_pod(client)
    recorder = EventRecorder(client, "kubelet", clock=clock, max_queued=2)
    for i in range(5):
        recorder.event(pod, "Normal", "R", f"m{i}")
    assert recorder.dropped == 3


@pytest.mark.parametrize(("etype", "reason"), [
    pytest.param("Error", "R", id="bad-type"),
    pytest.param("Normal", "", id="no-reason"),
])
async def test_bad_events_are_clear_errors(client: Client, etype: str, reason: str) -> None:
    pod = await make_pod(client)
    recorder = EventRecorder(client, "kubelet")
    with pytest.raises(ValueError):
        recorder.event(pod, etype, reason, "m")


async def test_long_messages_are_cut(client: Client, fake: FakeTransport) -> None:
    pod = await make_pod(client)
    async with EventRecorder(client, "kubelet") as recorder:
        recorder.event(pod, "Normal", "R", "x" * 5000)
        await asyncio.wait_for(recorder.flush(), 5)
    [event] = events(fake)
    assert len(event.message) == 1024 and event.message.endswith("...")
