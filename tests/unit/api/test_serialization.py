"""Storage values, JSON documents and manifest loading."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.api.codec import DecodeError
from pilothouse.api.kinds import Kind, KindRegistry
from pilothouse.api.serialization import (
    PROTOBUF_MAGIC,
    SerializationError,
    decode_value,
    dumps,
    encode_value,
    load_documents,
    load_manifest,
    load_objects,
    object_from_dict,
    object_to_dict,
)
from pilothouse.gen.k8s.core.v1 import core_pb2

REGISTRY = KindRegistry.builtin()
CRONTAB = Kind(group="stable.example.com", version="v1", kind="CronTab", plural="crontabs",
               namespaced=True, message=None)


def kind(api_version: str, name: str) -> Kind:
    found = REGISTRY.by_kind(api_version, name)
    assert found is not None
    return found


POD = kind("v1", "Pod")


def test_builtin_values_are_framed_protobuf_and_custom_values_json() -> None:
    pod = object_from_dict(POD, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
    value = encode_value(POD, pod)
    assert value.startswith(PROTOBUF_MAGIC)
    assert decode_value(POD, value) == pod
    cr = {"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "c"},
          "spec": {"cronSpec": "* * * * */5", "ratio": 0.5}}
    stored = encode_value(CRONTAB, cr)
    assert stored == dumps(cr)
    assert decode_value(CRONTAB, stored) == cr


def test_a_builtin_object_stored_as_json_still_decodes() -> None:
    value = b'{"metadata":{"name":"p"},"spec":{"nodeName":"n","futureField":1}}'
    pod = decode_value(POD, value)
    assert object_to_dict(POD, pod) == {"apiVersion": "v1", "kind": "Pod",
                                        "metadata": {"name": "p"}, "spec": {"nodeName": "n"}}


@pytest.mark.parametrize(
    ("kind_", "value", "message"),
    [
        (POD, b"{not json", "corrupt JSON value"),
        (POD, b"\xff\xfe", "corrupt JSON value"),
        (CRONTAB, b"[1, 2]", "not a JSON object"),
        (CRONTAB, b"nope", "corrupt JSON value"),
        (POD, PROTOBUF_MAGIC + b"\x0a\x05", "corrupt protobuf envelope"),
    ],
)
def test_corrupt_values_are_serialization_errors(kind_: Kind, value: bytes, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        decode_value(kind_, value)


def test_object_to_dict_puts_apiversion_and_kind_first() -> None:
    pod = object_from_dict(POD, {"metadata": {"name": "p"}})
    assert list(object_to_dict(POD, pod))[:3] == ["apiVersion", "kind", "metadata"]
    cr = object_to_dict(CRONTAB, {"spec": {}, "metadata": {"name": "c"}})
    assert list(cr)[:2] == ["apiVersion", "kind"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"apiVersion": "v2", "kind": "Pod"}, "apiVersion: expected 'v1', got 'v2'"),
        ({"apiVersion": "apps/v1", "kind": "Pod"}, "apiVersion: expected 'v1'"),
        ({"apiVersion": "v1", "kind": "Service"}, "kind: expected 'Pod', got 'Service'"),
        ({"apiVersion": 1, "kind": "Pod"}, "apiVersion: expected 'v1', got 1"),
        ([{"kind": "Pod"}], "expected a JSON object"),
        ("Pod", "expected a JSON object"),
        (None, "expected a JSON object"),
        ({"kind": "Pod", "spec": {"containers": [{"name": "c", "imagee": "x"}]}},
         'unknown field "spec.containers[0].imagee"'),
    ],
)
def test_object_from_dict_rejects(data: Any, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        object_from_dict(POD, data)
    assert message in str(info.value)


def test_object_from_dict_accepts_missing_type_meta() -> None:
    pod = object_from_dict(POD, {"metadata": {"name": "p"}})
    assert isinstance(pod, core_pb2.Pod) and pod.metadata.name == "p"


MANIFEST = """
# a comment
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
  annotations:
    at: 2024-01-01T00:00:00Z
data:
  1: one
  true: "yes"
  day: 2024-01-01
---
---
apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  ports: [{port: 80, targetPort: 8080}]
"""


def test_load_manifest() -> None:
    objects = load_manifest(REGISTRY, MANIFEST)
    assert [(k.kind, o.metadata.name) for k, o in objects] == [("ConfigMap", "cm"),
                                                               ("Service", "svc")]
    cm = object_to_dict(objects[0][0], objects[0][1])
    # As Kubernetes reads YAML: timestamps stay strings, keys become strings.
    assert cm["metadata"]["annotations"] == {"at": "2024-01-01T00:00:00Z"}
    assert cm["data"] == {"1": "one", "true": "yes", "day": "2024-01-01"}


def test_load_documents_reads_json_and_skips_empty_documents() -> None:
    assert list(load_documents('{"a": [1, 2.5, null]}')) == [{"a": [1, 2.5, None]}]
    assert list(load_documents(b"---\n---\na: 1\n")) == [{"a": 1}]
    assert list(load_documents("")) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [\n", "invalid YAML"),
        ("a: 1\na: 2\n", 'duplicate field "a"'),
        ("metadata:\n  name: x\n  name: y\n", 'duplicate field "name"'),
        ("a: *nope\n", "invalid YAML"),
        ("a: !!python/object:os.system x\n", "invalid YAML"),
        ("{" * 5000, "invalid YAML"),
    ],
)
def test_bad_yaml_is_a_serialization_error(text: str, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        list(load_documents(text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- 1\n- 2\n", "document 0: expected an object"),
        ("just text\n", "document 0: expected an object"),
        ("kind: Pod\n", "document 0: apiVersion and kind are required"),
        ("apiVersion: v1\nkind: 3\n", "document 0: apiVersion and kind are required"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v9\nkind: Pod\n",
         'document 1: no matches for kind "Pod" in version "v9"'),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n"
         "  - name: c\n    imagee: x\n",
         "document 0 (Pod 'web'): strict decoding error: unknown field "
         '"spec.containers[0].imagee"'),
        ("apiVersion: v1\nkind: Pod\nmetadata: 7\n",
         "document 0 (Pod ''): metadata: expected object, got number"),
        ("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: '%%%'}\n",
         "document 0 (Secret 's'): data[a]: illegal base64 data"),
    ],
)
def test_bad_manifests_name_the_document_and_path(text: str, message: str) -> None:
    with pytest.raises(SerializationError) as info:
        load_manifest(REGISTRY, text)
    assert message in str(info.value)


def test_load_objects_returns_custom_resources_as_dicts() -> None:
    registry = KindRegistry.builtin()
    registry.add(CRONTAB)
    text = ("apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: c}\n"
            "spec: {cronSpec: '* * * * */5'}\n---\napiVersion: v1\nkind: Namespace\n"
            "metadata: {name: n}\n")
    (cr_kind, cr), (ns_kind, ns) = load_objects(registry, text)
    assert cr_kind is CRONTAB and cr == {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
                                         "metadata": {"name": "c"},
                                         "spec": {"cronSpec": "* * * * */5"}}
    assert ns_kind.kind == "Namespace" and isinstance(ns, core_pb2.Namespace)
    with pytest.raises(SerializationError, match="custom resource"):
        load_manifest(registry, text)
    with pytest.raises(SerializationError, match="metadata: expected object"):
        load_objects(registry, "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: []\n")


def test_protobuf_frames_do_not_depend_on_map_insertion_order() -> None:
    """The registry skips writes whose bytes equal the stored ones; equal objects must
    encode to equal bytes however their maps were filled (else controllers loop)."""
    from pilothouse.api.kinds import KindRegistry
    from pilothouse.api.serialization import encode_protobuf
    from pilothouse.gen.k8s.apps.v1 import apps_pb2

    kind = KindRegistry.builtin().by_kind("apps/v1", "ReplicaSet")
    assert kind is not None
    forward, backward = apps_pb2.ReplicaSet(), apps_pb2.ReplicaSet()
    keys = [f"key-{i}" for i in range(40)]
    for key in keys:
        forward.metadata.labels[key] = "v"
        forward.spec.selector.matchLabels[key] = "v"
    for key in reversed(keys):
        backward.metadata.labels[key] = "v"
        backward.spec.selector.matchLabels[key] = "v"
    assert encode_protobuf(kind, forward) == encode_protobuf(kind, backward)
