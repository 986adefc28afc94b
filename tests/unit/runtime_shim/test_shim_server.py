"""The CRI servicers over the fake backend, through a real gRPC client on a unix socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from pilothouse.runtime_shim.fake import FakeBackend
from pilothouse.runtime_shim.server import snake, start_server
from tests.support import wait_for


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[tuple[FakeBackend, grpc.aio.Channel]]:
    backend = FakeBackend(images=["docker.io/library/busybox:latest"])
    socket = f"unix://{tmp_path}/cri.sock"
    server = await start_server(backend, socket)
    channel = grpc.aio.insecure_channel(socket)
    yield backend, channel
    await channel.close()
    await server.stop(None)
    await backend.close()


def sandbox_config(name: str = "web") -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="default", uid=f"uid-{name}"),
        labels={"app": name})


@pytest.mark.parametrize(("name", "expected"), [
    ("RunPodSandbox", "run_pod_sandbox"),
    ("ExecSync", "exec_sync"),
    ("ImageFsInfo", "image_fs_info"),
    ("GetContainerEvents", "get_container_events"),
])
def test_rpc_names_map_to_backend_methods(name: str, expected: str) -> None:
    assert snake(name) == expected


async def test_every_rpc_is_served(fake: tuple[FakeBackend, grpc.aio.Channel]) -> None:
    """No RPC falls through to gRPC's default 'Method not implemented'."""
    _, channel = fake
    for service in ("RuntimeService", "ImageService"):
        for method in cri.DESCRIPTOR.services_by_name[service].methods:
            if method.server_streaming:
                continue
            request_cls = getattr(cri, method.input_type.name)
            response_cls = getattr(cri, method.output_type.name)
            call = channel.unary_unary(
                f"/runtime.v1.{service}/{method.name}",
                request_serializer=request_cls.SerializeToString,
                response_deserializer=response_cls.FromString)
            try:
                await call(request_cls())
            except grpc.aio.AioRpcError as err:
                assert err.details() != "Method not implemented!", method.name
                assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                      grpc.StatusCode.NOT_FOUND,
                                      grpc.StatusCode.UNIMPLEMENTED), (method.name, err)


@pytest.mark.parametrize(("rpc", "request_", "code"), [
    ("RunPodSandbox", cri.RunPodSandboxRequest(), grpc.StatusCode.INVALID_ARGUMENT),
    ("RunPodSandbox", cri.RunPodSandboxRequest(config=cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="x"))), grpc.StatusCode.INVALID_ARGUMENT),
    ("CreateContainer", cri.CreateContainerRequest(
        pod_sandbox_id="nope", config=cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name="c"), image=cri.ImageSpec(image="busybox"))),
     grpc.StatusCode.NOT_FOUND),
    ("CreateContainer", cri.CreateContainerRequest(
        pod_sandbox_id="x", config=cri.ContainerConfig(metadata=cri.ContainerMetadata(name="c"))),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("ContainerStatus", cri.ContainerStatusRequest(container_id="nope"),
     grpc.StatusCode.NOT_FOUND),
    ("PodSandboxStatus", cri.PodSandboxStatusRequest(pod_sandbox_id="nope"),
     grpc.StatusCode.NOT_FOUND),
    ("ExecSync", cri.ExecSyncRequest(container_id="x"), grpc.StatusCode.INVALID_ARGUMENT),
    ("StopContainer", cri.StopContainerRequest(container_id="x", timeout=-1),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("Exec", cri.ExecRequest(container_id="x", cmd=["sh"], stdout=True),
     grpc.StatusCode.UNIMPLEMENTED),
])
async def test_bad_requests_get_clear_status_codes(
    fake: tuple[FakeBackend, grpc.aio.Channel], rpc: str, request_: object,
    code: grpc.StatusCode,
) -> None:
    stub = cri_grpc.RuntimeServiceStub(fake[1])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await getattr(stub, rpc)(request_)
    assert info.value.code() == code
    assert info.value.details()


async def test_lifecycle_and_idempotent_stop_remove(
    fake: tuple[FakeBackend, grpc.aio.Channel],
) -> None:
    backend, channel = fake
    stub = cri_grpc.RuntimeServiceStub(channel)
    sid = (await stub.RunPodSandbox(
        cri.RunPodSandboxRequest(config=sandbox_config()))).pod_sandbox_id
    cid = (await stub.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, config=cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name="c"),
            image=cri.ImageSpec(image="docker.io/library/busybox:latest"))))).container_id
    await stub.StartContainer(cri.StartContainerRequest(container_id=cid))
    backend.exit(cid, 3)
    status = (await stub.ContainerStatus(cri.ContainerStatusRequest(container_id=cid))).status
    assert (status.state, status.exit_code, status.reason) == (cri.CONTAINER_EXITED, 3, "Error")
    for _ in range(2):
        await stub.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=1))
        await stub.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
        await stub.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid))
        await stub.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid))
    listed = await stub.ListPodSandbox(cri.ListPodSandboxRequest())
    assert list(listed.items) == []


async def test_container_events_stream(fake: tuple[FakeBackend, grpc.aio.Channel]) -> None:
    backend, channel = fake
    stub = cri_grpc.RuntimeServiceStub(channel)
    stream = stub.GetContainerEvents(cri.GetEventsRequest())
    sid = (await stub.RunPodSandbox(
        cri.RunPodSandboxRequest(config=sandbox_config()))).pod_sandbox_id

    await wait_for(lambda: backend.events.subscribers == 1, within=5)
    cid = (await stub.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, config=cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name="c"),
            image=cri.ImageSpec(image="docker.io/library/busybox:latest"))))).container_id
    await stub.StartContainer(cri.StartContainerRequest(container_id=cid))
    kinds = []
    async for event in stream:
        assert event.container_id == cid
        assert event.pod_sandbox_status.id == sid
        kinds.append(event.container_event_type)
        if len(kinds) == 2:
            break
    stream.cancel()
    assert kinds == [cri.CONTAINER_CREATED_EVENT, cri.CONTAINER_STARTED_EVENT]


async def test_health_service_reports_serving(fake: tuple[FakeBackend, grpc.aio.Channel]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    resp = await health_pb2_grpc.HealthStub(fake[1]).Check(health_pb2.HealthCheckRequest())
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
