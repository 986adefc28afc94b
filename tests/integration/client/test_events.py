"""EventRecorder against a real apiserver: what kubectl describe lists."""

from __future__ import annotations

import asyncio

from pilothouse.client import Client
from pilothouse.client.events import EventRecorder
from pilothouse.gen.k8s.core.v1 import core_pb2


async def test_events_are_created_and_aggregated(client: Client) -> None:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = "web", "default"
    c = pod.spec.containers.add()
    c.name, c.image = "c", "busybox"
    pod = await client.create(pod)
    async with EventRecorder(client, "default-scheduler") as recorder:
        recorder.event(pod, "Warning", "FailedScheduling", "0/1 nodes are available")
        await asyncio.wait_for(recorder.flush(), 10)
        recorder.event(pod, "Warning", "FailedScheduling", "0/1 nodes are available")
        recorder.event(pod, "Normal", "Scheduled", "Successfully assigned default/web to n1")
        await asyncio.wait_for(recorder.flush(), 10)
    listed = await client.list(core_pb2.Event, namespace="default",
                               field_selector="involvedObject.name=web")
    by_reason = {e.reason: e for e in listed.items}
    assert set(by_reason) == {"FailedScheduling", "Scheduled"}
    assert by_reason["FailedScheduling"].count == 2
    assert by_reason["Scheduled"].count == 1
    assert by_reason["Scheduled"].involvedObject.uid == pod.metadata.uid
    assert recorder.written == 3 and recorder.dropped == 0
