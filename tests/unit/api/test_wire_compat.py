"""Wire compatibility with Kubernetes' own protobuf encoding, pinned byte for byte.

The expected bytes are built here by hand from the public field numbers of
k8s.io/api's generated.proto (ObjectMeta name=1, namespace=3; Pod metadata=1,
spec=2; PodSpec containers=2, nodeName=10; ...), so a drift in our .proto
files fails these tests. The `k8s\\0` + runtime.Unknown frame is the one of the
`application/vnd.kubernetes.protobuf` content type.
"""

from __future__ import annotations

import pytest

from pilothouse.api.codec import dict_to_message, message_to_dict
from pilothouse.api.kinds import KindRegistry
from pilothouse.api.serialization import (
    PROTOBUF_MAGIC,
    SerializationError,
    decode_protobuf,
    decode_value,
    encode_protobuf,
    encode_value,
)
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.intstr import intstr_pb2
from pilothouse.gen.k8s.meta.v1 import meta_pb2
from pilothouse.gen.k8s.resource import resource_pb2
from pilothouse.gen.k8s.runtime import runtime_pb2

REGISTRY = KindRegistry.builtin()


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def vint(field: int, value: int) -> bytes:
    """A varint field (wire type 0)."""
    return varint(field << 3) + varint(value)


def ld(field: int, payload: bytes | str) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes, messages, map entries."""
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(field << 3 | 2) + varint(len(data)) + data


def entry(field: int, key: str, value: bytes | str) -> bytes:
    """One map entry: a message with key=1, value=2."""
    return ld(field, ld(1, key) + ld(2, value))


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [
        (meta_pb2.ObjectMeta, "name", 1), (meta_pb2.ObjectMeta, "generateName", 2),
        (meta_pb2.ObjectMeta, "namespace", 3), (meta_pb2.ObjectMeta, "uid", 5),
        (meta_pb2.ObjectMeta, "resourceVersion", 6), (meta_pb2.ObjectMeta, "generation", 7),
        (meta_pb2.ObjectMeta, "creationTimestamp", 8), (meta_pb2.ObjectMeta, "labels", 11),
        (meta_pb2.ObjectMeta, "annotations", 12), (meta_pb2.ObjectMeta, "ownerReferences", 13),
        (meta_pb2.ObjectMeta, "finalizers", 14), (meta_pb2.ObjectMeta, "managedFields", 17),
        (core_pb2.Pod, "metadata", 1), (core_pb2.Pod, "spec", 2), (core_pb2.Pod, "status", 3),
        (core_pb2.PodSpec, "volumes", 1), (core_pb2.PodSpec, "containers", 2),
        (core_pb2.PodSpec, "nodeName", 10), (core_pb2.PodSpec, "initContainers", 20),
        (core_pb2.PodSpec, "tolerations", 22), (core_pb2.Container, "name", 1),
        (core_pb2.Container, "image", 2), (core_pb2.Container, "ports", 6),
        (core_pb2.Container, "env", 7), (core_pb2.Container, "resources", 8),
        (core_pb2.Secret, "data", 2), (core_pb2.Secret, "type", 3),
        (core_pb2.Secret, "stringData", 4), (core_pb2.Secret, "immutable", 5),
        (runtime_pb2.Unknown, "typeMeta", 1), (runtime_pb2.Unknown, "raw", 2),
        (runtime_pb2.Unknown, "contentEncoding", 3), (runtime_pb2.Unknown, "contentType", 4),
        (runtime_pb2.TypeMeta, "apiVersion", 1), (runtime_pb2.TypeMeta, "kind", 2),
        (intstr_pb2.IntOrString, "type", 1), (intstr_pb2.IntOrString, "intVal", 2),
        (intstr_pb2.IntOrString, "strVal", 3), (resource_pb2.Quantity, "string", 1),
        (meta_pb2.Time, "seconds", 1), (meta_pb2.Time, "nanos", 2),
    ],
)
def test_field_numbers(message: type, field: str, number: int) -> None:
    assert message.DESCRIPTOR.fields_by_name[field].number == number  # type: ignore[attr-defined]


def test_object_meta_bytes() -> None:
    meta = dict_to_message(meta_pb2.ObjectMeta, {"name": "web", "namespace": "default"})
    assert meta.SerializeToString() == ld(1, "web") + ld(3, "default")


def test_pod_bytes() -> None:
    pod = dict_to_message(core_pb2.Pod, {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "n1"},
    })
    container = ld(1, "c") + ld(2, "nginx")
    spec = ld(2, container) + ld(10, "n1")
    expected = ld(1, ld(1, "p") + ld(3, "ns")) + ld(2, spec)
    assert pod.SerializeToString() == expected
    assert core_pb2.Pod.FromString(expected) == pod


def test_int_or_string_sets_type_intval_strval_like_go() -> None:
    by_number = dict_to_message(core_pb2.ServicePort, {"port": 80, "targetPort": 8080})
    assert by_number.SerializeToString() == (
        vint(3, 80) + ld(4, vint(1, 0) + vint(2, 8080) + ld(3, "")))
    by_name = dict_to_message(core_pb2.ServicePort, {"port": 80, "targetPort": "http"})
    assert by_name.SerializeToString() == (
        vint(3, 80) + ld(4, vint(1, 1) + vint(2, 0) + ld(3, "http")))


def test_time_and_quantity_bytes() -> None:
    meta = dict_to_message(meta_pb2.ObjectMeta, {"creationTimestamp": "2025-01-02T03:04:05Z"})
    assert meta.SerializeToString() == ld(8, vint(1, 1735787045) + vint(2, 0))
    res = dict_to_message(core_pb2.ResourceRequirements, {"limits": {"cpu": "0.5"}})
    assert res.SerializeToString() == entry(1, "cpu", ld(1, "500m"))


def test_secret_in_a_kubernetes_protobuf_frame() -> None:
    kind = REGISTRY.by_kind("v1", "Secret")
    assert kind is not None
    secret = dict_to_message(core_pb2.Secret, {
        "metadata": {"name": "s", "namespace": "default"},
        "type": "Opaque",
        "data": {"password": "czNjcjN0"},  # base64 of s3cr3t
    })
    raw = ld(1, ld(1, "s") + ld(3, "default")) + entry(2, "password", b"s3cr3t") + ld(3, "Opaque")
    frame = PROTOBUF_MAGIC + ld(1, ld(1, "v1") + ld(2, "Secret")) + ld(2, raw) + ld(3, "") + ld(
        4, "")
    assert PROTOBUF_MAGIC == b"k8s\x00"
    assert encode_protobuf(kind, secret) == frame
    assert encode_value(kind, secret) == frame
    assert decode_protobuf(kind, frame) == secret
    assert message_to_dict(decode_value(kind, frame)) == {  # type: ignore[arg-type]
        "metadata": {"name": "s", "namespace": "default"}, "type": "Opaque",
        "data": {"password": "czNjcjN0"}}


def test_go_style_bytes_with_every_field_written_decode_to_familiar_json() -> None:
    # Go's generated marshallers write every non-pointer field, zero or not.
    container = (ld(1, "web") + ld(2, "nginx") + ld(5, "") + ld(13, "/dev/termination-log")
                 + ld(14, "IfNotPresent") + vint(16, 0) + vint(17, 0) + vint(18, 0)
                 + ld(20, "File"))
    status = ld(1, "web") + vint(4, 0) + vint(5, 0) + ld(6, "nginx") + ld(7, "")
    pod_bytes = (ld(1, ld(1, "p") + ld(2, "") + ld(3, "default") + ld(8, b""))
                 + ld(2, ld(2, container) + ld(10, "") + vint(11, 0))
                 + ld(3, ld(1, "Pending") + ld(8, status)))
    pod = core_pb2.Pod.FromString(pod_bytes)
    assert message_to_dict(pod) == {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "web", "image": "nginx",
                                 "terminationMessagePath": "/dev/termination-log",
                                 "imagePullPolicy": "IfNotPresent",
                                 "terminationMessagePolicy": "File"}]},
        "status": {"phase": "Pending", "containerStatuses": [
            {"name": "web", "ready": False, "restartCount": 0, "image": "nginx",
             "imageID": ""}]},
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "missing k8s"),
        (b"{}", "missing k8s"),
        (PROTOBUF_MAGIC + b"\xff\xff\xff", "corrupt protobuf envelope"),
        (PROTOBUF_MAGIC + ld(1, ld(1, "v1") + ld(2, "ConfigMap")), "expected Secret"),
        (PROTOBUF_MAGIC + ld(1, ld(1, "apps/v1") + ld(2, "Secret")), "expected Secret"),
        (PROTOBUF_MAGIC + ld(1, ld(1, "v1") + ld(2, "Secret")) + ld(2, b"\x0a\xff"),
         "corrupt Secret protobuf"),
    ],
)
def test_bad_frames_are_serialization_errors(data: bytes, message: str) -> None:
    kind = REGISTRY.by_kind("v1", "Secret")
    assert kind is not None
    with pytest.raises(SerializationError, match=message):
        decode_protobuf(kind, data)
