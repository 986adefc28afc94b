"""The CRI protos are wire-compatible with k8s.io/cri-api runtime.v1: pinned names and numbers."""

from __future__ import annotations

import pytest

from pilothouse.gen.cri.runtime.v1 import api_pb2, api_pb2_grpc


def test_package_and_services_carry_the_upstream_names() -> None:
    assert api_pb2.DESCRIPTOR.package == "runtime.v1"
    services = api_pb2.DESCRIPTOR.services_by_name
    assert set(services) == {"RuntimeService", "ImageService"}
    runtime = services["RuntimeService"]
    assert len(runtime.methods) == 29
    events = runtime.methods_by_name["GetContainerEvents"]
    assert events.output_type.full_name == "runtime.v1.ContainerEventResponse"
    assert {m.name for m in services["ImageService"].methods} == {
        "ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo",
    }
    assert hasattr(api_pb2_grpc, "RuntimeServiceStub")


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [
        ("PodSandboxConfig", "metadata", 1),
        ("PodSandboxConfig", "log_directory", 3),
        ("PodSandboxConfig", "linux", 8),
        ("ContainerConfig", "image", 2),
        ("ContainerConfig", "command", 3),
        ("ContainerConfig", "args", 4),
        ("ContainerConfig", "envs", 6),
        ("ContainerConfig", "mounts", 7),
        ("ContainerConfig", "log_path", 11),
        ("ContainerStatus", "exit_code", 7),
        ("ContainerStatus", "reason", 10),
        ("ContainerStatus", "log_path", 15),
        ("LinuxContainerResources", "memory_limit_in_bytes", 4),
        ("LinuxContainerResources", "unified", 9),
        ("Mount", "uidMappings", 6),
        ("ExecSyncRequest", "timeout", 3),
        ("StatusResponse", "info", 2),
    ],
)
def test_field_numbers_match_upstream(message: str, field: str, number: int) -> None:
    descriptor = api_pb2.DESCRIPTOR.message_types_by_name[message]
    assert descriptor.fields_by_name[field].number == number


def test_a_known_encoding_round_trips() -> None:
    req = api_pb2.StopContainerRequest(container_id="abc", timeout=30)
    # field 1 (bytes) "abc", field 2 (varint) 30
    assert req.SerializeToString() == b"\x0a\x03abc\x10\x1e"
    cfg = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="p", uid="u", namespace="n", attempt=1),
        labels={"a": "b"},
    )
    wire = cfg.SerializeToString()
    assert wire.startswith(b"\x0a\x0b\x0a\x01p\x12\x01u\x1a\x01n\x20\x01")
    assert api_pb2.PodSandboxConfig.FromString(wire) == cfg


def test_enums_keep_upstream_values() -> None:
    assert api_pb2.CONTAINER_EXITED == 2
    assert api_pb2.SANDBOX_NOTREADY == 1
    assert api_pb2.NamespaceMode.Value("NODE") == 2
    assert api_pb2.SecurityProfile.ProfileType.Value("Localhost") == 2
