"""Kubernetes JSON <-> message: normalisations, strict errors, unions, properties."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilothouse.api.codec import (
    DecodeError,
    EncodeError,
    dict_to_message,
    format_duration,
    format_time,
    message_to_dict,
    messages_to_dicts,
    parse_duration,
    parse_time,
    unknown_fields,
)
from pilothouse.gen.k8s.apiextensions.v1 import apiextensions_pb2 as ext
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.meta.v1 import meta_pb2
from pilothouse.gen.k8s.rbac.v1 import rbac_pb2


def roundtrip(cls: type[Message], data: Any) -> Any:
    return message_to_dict(dict_to_message(cls, data))


def container(**fields: Any) -> dict[str, Any]:
    return {"name": "c", "image": "busybox", **fields}


def pod(**spec: Any) -> dict[str, Any]:
    return {"spec": {"containers": [container()], **spec}}


# ---------------------------------------------------------------------------
# What Kubernetes changes on the way through (the corpus is written without these)

NORMALISATIONS = [
    pytest.param(core_pb2.Container, container(resources={"limits": {"cpu": "0.5"}}),
                 container(resources={"limits": {"cpu": "500m"}}), id="quantity-0.5-is-500m"),
    pytest.param(core_pb2.Container, container(resources={"limits": {"cpu": 0.5, "memory": 1024}}),
                 container(resources={"limits": {"cpu": "500m", "memory": "1024"}}),
                 id="quantity-from-yaml-numbers"),
    pytest.param(core_pb2.Container, container(resources={"requests": {"memory": "1.5Gi"}}),
                 container(resources={"requests": {"memory": "1536Mi"}}),
                 id="quantity-1.5Gi-is-1536Mi"),
    pytest.param(core_pb2.Container, container(resources={"requests": {"cpu": "1000m"}}),
                 container(resources={"requests": {"cpu": "1"}}), id="quantity-1000m-is-1"),
    pytest.param(core_pb2.PodSpec, {**pod()["spec"], "hostNetwork": False},
                 pod()["spec"], id="omitempty-false-is-dropped"),
    pytest.param(core_pb2.PodSpec, {**pod()["spec"], "priority": 0},
                 {**pod()["spec"], "priority": 0}, id="pointer-zero-is-kept"),
    pytest.param(apps_pb2.DeploymentSpec, {"replicas": 0}, {"replicas": 0},
                 id="replicas-0-is-kept"),
    pytest.param(apps_pb2.ReplicaSetSpec, {"replicas": 1, "minReadySeconds": 0},
                 {"replicas": 1}, id="omitempty-int-zero-is-dropped"),
    pytest.param(core_pb2.EnvVar, {"name": "A", "value": ""}, {"name": "A"},
                 id="omitempty-empty-string-is-dropped"),
    pytest.param(meta_pb2.ObjectMeta, {"name": "a", "labels": {}, "annotations": {}},
                 {"name": "a"}, id="empty-maps-are-dropped"),
    pytest.param(meta_pb2.ObjectMeta, {"name": "a", "labels": {"empty": ""}},
                 {"name": "a", "labels": {"empty": ""}}, id="empty-map-values-are-kept"),
    pytest.param(meta_pb2.ObjectMeta, {"name": "a", "creationTimestamp": None},
                 {"name": "a"}, id="null-time-is-absent"),
    pytest.param(meta_pb2.ObjectMeta, {"creationTimestamp": "2025-01-02T03:04:05.999Z"},
                 {"creationTimestamp": "2025-01-02T03:04:05Z"}, id="time-keeps-seconds"),
    pytest.param(meta_pb2.ObjectMeta, {"creationTimestamp": "2025-01-02T05:04:05+02:00"},
                 {"creationTimestamp": "2025-01-02T03:04:05Z"}, id="time-is-written-in-utc"),
    pytest.param(core_pb2.Event, {"eventTime": "2025-01-02T03:04:05.123456789Z"},
                 {"eventTime": "2025-01-02T03:04:05.123456Z", "reportingComponent": "",
                  "reportingInstance": ""},
                 id="microtime-keeps-microseconds-and-required-strings-are-written"),
    pytest.param(core_pb2.Event, {"involvedObject": {}},
                 {"involvedObject": {}, "reportingComponent": "", "reportingInstance": ""},
                 id="non-omitempty-strings-are-written-when-zero"),
    pytest.param(core_pb2.ContainerStatus, {"name": "web"},
                 {"name": "web", "ready": False, "restartCount": 0, "image": "", "imageID": ""},
                 id="non-omitempty-scalars-are-written-when-zero"),
    pytest.param(core_pb2.Secret, {"data": {"a": "YWJj\nZGVm\n"}}, {"data": {"a": "YWJjZGVm"}},
                 id="wrapped-base64-is-accepted"),
    pytest.param(core_pb2.Secret, {"data": {"a": "", "b": "AA=="}, "stringData": {"c": "x y"}},
                 {"data": {"a": "", "b": "AA=="}, "stringData": {"c": "x y"}},
                 id="secret-data-base64-and-stringData-plain"),
    pytest.param(core_pb2.ConfigMap, {"data": {"a": "plain"}, "binaryData": {"b": "AQID"}},
                 {"data": {"a": "plain"}, "binaryData": {"b": "AQID"}},
                 id="configmap-data-plain-binaryData-base64"),
    pytest.param(apps_pb2.StatefulSetSpec,
                 {"volumeClaimTemplates": [{"metadata": {"name": "www"}}]},
                 {"volumeClaimTemplates": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                            "metadata": {"name": "www"}}], "serviceName": ""},
                 id="volumeClaimTemplates-carry-their-type"),
    pytest.param(rbac_pb2.ClusterRole, {"rules": []}, {}, id="empty-list-is-absent"),
    pytest.param(ext.JSONSchemaProps, {"minimum": 1, "maximum": 0.5, "multipleOf": 1.0},
                 {"minimum": 1, "maximum": 0.5, "multipleOf": 1}, id="doubles-print-like-go"),
    pytest.param(ext.JSONSchemaProps, {"maximum": 1e17, "minimum": -0.0001},
                 {"maximum": 100000000000000000, "minimum": -0.0001}, id="large-doubles"),
    pytest.param(core_pb2.ServicePort, {"port": 80, "targetPort": "80"},
                 {"port": 80, "targetPort": "80"}, id="int-or-string-keeps-string-digits"),
    pytest.param(core_pb2.ServicePort, {"port": 80, "targetPort": 8080},
                 {"port": 80, "targetPort": 8080}, id="int-or-string-from-yaml-int"),
    pytest.param(meta_pb2.ObjectMeta, {"labels": {"a": None}}, {"labels": {"a": ""}},
                 id="null-map-value-is-zero-value"),
    pytest.param(core_pb2.Container, container(args=["a", None]), container(args=["a", ""]),
                 id="null-list-item-is-zero-value"),
    pytest.param(core_pb2.Container, container(resources={"limits": {"cpu": None}}),
                 container(resources={"limits": {"cpu": "0"}}), id="null-quantity-is-zero"),
    pytest.param(core_pb2.PodSpec, {"containers": [None]},
                 {"containers": [{"name": ""}]},
                 id="null-list-object-is-empty-object"),
    pytest.param(ext.JSONSchemaProps, {"enum": ["a", None, 1, {"b": [True]}]},
                 {"enum": ["a", None, 1, {"b": [True]}]}, id="raw-json-keeps-null-items"),
    pytest.param(core_pb2.PodStatus, {"phase": "Running", "conditions": []},
                 {"phase": "Running"}, id="empty-conditions-dropped"),
    pytest.param(apps_pb2.Deployment, {"metadata": {"name": "d"}, "status": {}},
                 {"metadata": {"name": "d"}, "status": {}}, id="empty-status-kept-when-present"),
    pytest.param(meta_pb2.ObjectMeta, {"labels": {"b": "2", "a": "1"}},
                 {"labels": {"a": "1", "b": "2"}}, id="map-keys-sorted-like-go"),
    pytest.param(core_pb2.PodSpec, {"containers": [container()], "nodeName": "n",
                                    "apiVersion": "v1"},
                 None, id="unknown-apiVersion-in-podspec-is-rejected"),
]


@pytest.mark.parametrize(("cls", "data", "expected"), NORMALISATIONS)
def test_normalisation(cls: type[Message], data: Any, expected: Any) -> None:
    if expected is None:
        with pytest.raises(DecodeError):
            dict_to_message(cls, data)
        return
    assert roundtrip(cls, data) == expected


def test_map_keys_come_out_sorted() -> None:
    out = roundtrip(meta_pb2.ObjectMeta, {"labels": {"b": "2", "c": "3", "a": "1"}})
    assert list(out["labels"]) == ["a", "b", "c"]


def test_int_or_string_sets_all_three_fields_like_go() -> None:
    port = dict_to_message(core_pb2.ServicePort, {"port": 80, "targetPort": 8080})
    assert port.targetPort.HasField("type") and port.targetPort.HasField("strVal")
    assert (port.targetPort.type, port.targetPort.intVal, port.targetPort.strVal) == (0, 8080, "")
    named = dict_to_message(core_pb2.ServicePort, {"port": 80, "targetPort": "http"})
    assert (named.targetPort.type, named.targetPort.intVal, named.targetPort.strVal) == (
        1, 0, "http")


def test_large_int64_round_trips() -> None:
    data = {"metadata": {"generation": 2**63 - 1}, "spec": {"activeDeadlineSeconds": 2**62}}
    assert roundtrip(core_pb2.Pod, data) == data


def test_nested_typemeta_is_accepted_where_go_embeds_it() -> None:
    spec = {"volumeClaimTemplates": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                      "metadata": {"name": "www"}}], "serviceName": "web"}
    assert roundtrip(apps_pb2.StatefulSetSpec, spec) == spec


def test_messages_to_dicts_matches_message_to_dict() -> None:
    pods = [dict_to_message(core_pb2.Pod, {"metadata": {"name": f"p{i}"}}) for i in range(5)]
    assert messages_to_dicts(pods) == [message_to_dict(p) for p in pods]


# ---------------------------------------------------------------------------
# Strict decoding: every bad input is one DecodeError naming the path

ERRORS = [
    pytest.param(core_pb2.Pod, pod(containers=[container(imagee="x")]),
                 'strict decoding error: unknown field "spec.containers[0].imagee"',
                 id="unknown-field-in-container"),
    pytest.param(core_pb2.Pod, {"spec": {"nodename": "n"}},
                 'unknown field "spec.nodename"', id="unknown-field-is-case-sensitive"),
    pytest.param(core_pb2.Pod, {"metadata": {"labelz": {}}, "spek": {}},
                 'unknown field "metadata.labelz", unknown field "spek"',
                 id="all-unknown-fields-reported"),
    pytest.param(core_pb2.Pod, pod(volumes=[{"name": "v", "emptyDir": {"sizelimit": "1Gi"}}]),
                 'unknown field "spec.volumes[0].emptyDir.sizelimit"', id="unknown-in-inline"),
    pytest.param(apps_pb2.Deployment,
                 {"spec": {"template": {"spec": {"containers": [container(
                     ports=[{"containerPort": 80, "hostport": 1}])]}}}},
                 'unknown field "spec.template.spec.containers[0].ports[0].hostport"',
                 id="unknown-field-deep"),
    pytest.param(ext.CustomResourceDefinition,
                 {"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
                     "properties": {"a": {"type": "string", "x-kubernetes-foo": True}}}}}]}},
                 'unknown field "spec.versions[0].schema.openAPIV3Schema.properties[a].'
                 'x-kubernetes-foo"', id="unknown-field-in-schema"),
    pytest.param(apps_pb2.Deployment, {"spec": {"replicas": "3"}},
                 "spec.replicas: expected integer (int32), got string", id="string-for-int"),
    pytest.param(apps_pb2.Deployment, {"spec": {"replicas": 1.5}},
                 "spec.replicas: expected integer (int32), got 1.5", id="fraction-for-int"),
    pytest.param(apps_pb2.Deployment, {"spec": {"replicas": True}},
                 "spec.replicas: expected integer (int32), got boolean", id="bool-for-int"),
    pytest.param(apps_pb2.Deployment, {"spec": {"replicas": 2**31}},
                 "spec.replicas: 2147483648 is out of range for int32", id="int32-overflow"),
    pytest.param(core_pb2.Pod, {"metadata": {"generation": 2**63}},
                 "metadata.generation: 9223372036854775808 is out of range for int64",
                 id="int64-overflow"),
    pytest.param(core_pb2.Pod, {"spec": {"containers": {}}},
                 "spec.containers: expected array, got object", id="object-for-list"),
    pytest.param(core_pb2.Pod, {"metadata": {"labels": ["a"]}},
                 "metadata.labels: expected object, got array", id="list-for-map"),
    pytest.param(core_pb2.Pod, {"metadata": {"labels": {"a": 1}}},
                 "metadata.labels[a]: expected string, got number", id="number-in-string-map"),
    pytest.param(core_pb2.Pod, {"spec": {"hostNetwork": "true"}},
                 "spec.hostNetwork: expected boolean, got string", id="string-for-bool"),
    pytest.param(core_pb2.Pod, {"spec": "x"}, "spec: expected object, got string",
                 id="string-for-object"),
    pytest.param(core_pb2.Pod, pod(containers=[container(args=["a", 1])]),
                 "spec.containers[0].args[1]: expected string, got number",
                 id="number-in-string-list"),
    pytest.param(core_pb2.Pod, "just a string", "expected object, got string",
                 id="non-object-document"),
    pytest.param(core_pb2.Pod, [1, 2], "expected object, got array", id="array-document"),
    pytest.param(core_pb2.Secret, {"data": {"a": "not base64!"}},
                 "data[a]: illegal base64 data", id="bad-base64"),
    pytest.param(core_pb2.Secret, {"data": {"a": "YWJ"}}, "data[a]: illegal base64 data",
                 id="bad-base64-padding"),
    pytest.param(core_pb2.Secret, {"data": {"a": 12}}, "data[a]: expected base64 string",
                 id="number-for-bytes"),
    pytest.param(core_pb2.Pod, pod(containers=[container(resources={"limits": {"cpu": "1.5.5"}})]),
                 "spec.containers[0].resources.limits[cpu]: invalid quantity '1.5.5'",
                 id="bad-quantity"),
    pytest.param(core_pb2.Pod, pod(containers=[container(resources={"limits": {"cpu": True}})]),
                 "spec.containers[0].resources.limits[cpu]: expected quantity",
                 id="bool-quantity"),
    pytest.param(core_pb2.Pod, pod(containers=[container(resources={"limits": {"cpu": "1Qi"}})]),
                 "limits[cpu]", id="bad-quantity-suffix"),
    pytest.param(core_pb2.Pod, {"metadata": {"creationTimestamp": "yesterday"}},
                 "metadata.creationTimestamp: parsing time 'yesterday'", id="bad-time"),
    pytest.param(core_pb2.Pod, {"metadata": {"creationTimestamp": "2025-13-01T00:00:00Z"}},
                 "metadata.creationTimestamp: parsing time", id="bad-month"),
    pytest.param(core_pb2.Pod, {"metadata": {"creationTimestamp": "2025-01-01"}},
                 "metadata.creationTimestamp: parsing time", id="date-without-time"),
    pytest.param(core_pb2.Pod, {"metadata": {"creationTimestamp": 1700000000}},
                 "metadata.creationTimestamp: expected RFC 3339 time string, got number",
                 id="number-for-time"),
    pytest.param(meta_pb2.Duration, "1x", "time: invalid duration '1x'", id="bad-duration"),
    pytest.param(meta_pb2.Duration, 5, "expected duration string, got number",
                 id="number-for-duration"),
    pytest.param(core_pb2.ServicePort, {"targetPort": 1.5},
                 "targetPort: expected integer or string, got number", id="float-int-or-string"),
    pytest.param(core_pb2.ServicePort, {"targetPort": True},
                 "targetPort: expected integer or string, got boolean", id="bool-int-or-string"),
    pytest.param(core_pb2.ServicePort, {"targetPort": 2**31},
                 "targetPort: 2147483648 is out of range for int32", id="int-or-string-overflow"),
    pytest.param(ext.JSONSchemaProps, {"minimum": "1"}, "minimum: expected number, got string",
                 id="string-for-double"),
    pytest.param(ext.JSONSchemaProps, {"minimum": float("nan")},
                 "minimum: expected a finite number", id="nan-for-double"),
    pytest.param(ext.JSONSchemaProps, {"default": float("inf")},
                 "default: not representable as JSON", id="inf-in-raw-json"),
    pytest.param(ext.JSONSchemaProps, {"default": {1, 2}}, "default: not representable as JSON",
                 id="non-json-python-value"),
    pytest.param(ext.JSONSchemaProps, {"additionalProperties": "yes"},
                 "additionalProperties: expected boolean or object, got string",
                 id="bad-props-or-bool"),
    pytest.param(ext.JSONSchemaProps, {"items": 3}, "items: expected object or array, got number",
                 id="bad-props-or-array"),
    pytest.param(ext.JSONSchemaProps, {"dependencies": {"a": [1]}},
                 "dependencies[a][0]: expected string, got number", id="bad-props-or-strings"),
    pytest.param(core_pb2.Pod, {"metadata": {"name": "bad\ud800"}}, "metadata.name: invalid value",
                 id="lone-surrogate-string"),
    pytest.param(core_pb2.Pod, {"metadata": {"labels": {"k": "\ud800"}}}, "metadata.labels",
                 id="lone-surrogate-in-map"),
    pytest.param(meta_pb2.ObjectMeta, {"managedFields": [{"fieldsV1": []}]},
                 "managedFields[0].fieldsV1: expected object, got array", id="bad-fieldsV1"),
    pytest.param(rbac_pb2.ClusterRole, {"rules": [{"verbs": "get"}]},
                 "rules[0].verbs: expected array, got string", id="string-for-verbs"),
]


@pytest.mark.parametrize(("cls", "data", "message"), ERRORS)
def test_bad_input_is_a_decode_error_naming_the_path(
    cls: type[Message], data: Any, message: str
) -> None:
    with pytest.raises(DecodeError) as info:
        dict_to_message(cls, data)
    assert message in str(info.value)
    assert info.value.errors


def test_unknown_field_errors_carry_paths_and_reason() -> None:
    with pytest.raises(DecodeError) as info:
        dict_to_message(core_pb2.Pod, {"metadata": {"x": 1}, "spec": {"y": 2}})
    assert [(e.path, e.reason) for e in info.value.errors] == [
        ("metadata.x", "FieldValueUnknown"), ("spec.y", "FieldValueUnknown")]


def test_non_strict_decoding_ignores_unknown_fields_but_not_wrong_types() -> None:
    msg = dict_to_message(core_pb2.Pod, {"spec": {"nodeName": "n", "nope": 1}}, strict=False)
    assert message_to_dict(msg) == {"spec": {"nodeName": "n"}}
    with pytest.raises(DecodeError):
        dict_to_message(core_pb2.Pod, {"spec": {"nodeName": 1}}, strict=False)


def test_unknown_fields_lists_paths_for_warnings() -> None:
    assert unknown_fields(core_pb2.Pod, pod(containers=[container(imagee="x")], foo=1)) == [
        "spec.containers[0].imagee", "spec.foo"]
    assert unknown_fields(core_pb2.Pod, {"spec": 1}) == []


def test_deeply_nested_schema_is_a_decode_error() -> None:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(3000):
        schema = {"type": "object", "properties": {"a": schema}}
    with pytest.raises(DecodeError, match="nested too deeply"):
        dict_to_message(ext.JSONSchemaProps, schema)


def test_a_message_with_no_json_form_is_an_encode_error() -> None:
    bad_time = meta_pb2.ObjectMeta()
    bad_time.creationTimestamp.seconds = 2**62
    with pytest.raises(EncodeError):
        message_to_dict(bad_time)
    bad_raw = ext.JSONSchemaProps()
    bad_raw.default.raw = b"\xff not json"
    with pytest.raises(EncodeError):
        message_to_dict(bad_raw)


# ---------------------------------------------------------------------------
# Times and durations

@pytest.mark.parametrize(
    ("text", "seconds", "nanos"),
    [
        ("1970-01-01T00:00:00Z", 0, 0),
        ("2025-01-02T03:04:05Z", 1735787045, 0),
        ("2025-01-02T03:04:05.5Z", 1735787045, 500_000_000),
        ("2025-01-02T03:04:05.123456789Z", 1735787045, 123_456_789),
        ("2025-01-02T04:04:05+01:00", 1735787045, 0),
        ("2025-01-01T22:04:05-05:00", 1735787045, 0),
        ("1969-12-31T23:59:59Z", -1, 0),
    ],
)
def test_parse_time(text: str, seconds: int, nanos: int) -> None:
    assert parse_time(text) == (seconds, nanos)


@pytest.mark.parametrize("text", ["", "2025-01-02", "2025-01-02T03:04:05", "2025-02-30T00:00:00Z",
                                  "2025-01-02T24:00:00Z", "2025-01-02T03:04:60Z",
                                  "2025-01-02T03:04:05+25:00", " 2025-01-02T03:04:05Z"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_format_time() -> None:
    assert format_time(1735787045) == "2025-01-02T03:04:05Z"
    assert format_time(1735787045, 123_456_789, micro=True) == "2025-01-02T03:04:05.123456Z"
    assert format_time(-1) == "1969-12-31T23:59:59Z"


@pytest.mark.parametrize(
    ("text", "nanos", "canonical"),
    [
        ("0", 0, "0s"), ("0s", 0, "0s"), ("1s", 10**9, "1s"), ("1.5s", 1_500_000_000, "1.5s"),
        ("300ms", 300_000_000, "300ms"), ("1h", 3600 * 10**9, "1h0m0s"),
        ("1h2m3.5s", (3723 * 10**9) + 500_000_000, "1h2m3.5s"), ("90s", 90 * 10**9, "1m30s"),
        ("-1m30s", -90 * 10**9, "-1m30s"), ("1.5us", 1500, "1.5µs"), ("2µs", 2000, "2µs"),
        ("7ns", 7, "7ns"), (".5h", 1800 * 10**9, "30m0s"), ("+5s", 5 * 10**9, "5s"),
        ("2562047h47m16.854775807s", 2**63 - 1, "2562047h47m16.854775807s"),
    ],
)
def test_durations(text: str, nanos: int, canonical: str) -> None:
    assert parse_duration(text) == nanos
    assert format_duration(nanos) == canonical
    assert parse_duration(canonical) == nanos


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "1h 2m", "--1s", "1.s.", "3000000h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# ---------------------------------------------------------------------------
# Properties

KEYS = [
    "metadata", "spec", "status", "name", "namespace", "labels", "annotations", "containers",
    "image", "ports", "containerPort", "env", "value", "valueFrom", "resources", "limits",
    "requests", "cpu", "replicas", "template", "selector", "matchLabels", "volumes",
    "emptyDir", "sizeLimit", "targetPort", "creationTimestamp", "conditions", "type",
    "versions", "schema", "openAPIV3Schema", "properties", "items", "additionalProperties",
    "default", "enum", "minimum", "x-kubernetes-preserve-unknown-fields", "group", "names",
    "strategy", "rollingUpdate", "maxSurge", "command", "args", "nodeName", "hostNetwork",
]
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**65), 2**65)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
                | st.sampled_from(["500m", "1Gi", "2025-01-02T03:04:05Z", "http", "25%", "AA=="]))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from([core_pb2.Pod, apps_pb2.Deployment, ext.CustomResourceDefinition]),
       data=JSON_VALUES)
def test_random_json_decodes_or_raises_decode_error(cls: type[Message], data: Any) -> None:
    try:
        msg = dict_to_message(cls, data, strict=bool(len(str(data)) % 2))
    except DecodeError:
        return
    # What decodes encodes, and its JSON form is a fixed point.
    once = message_to_dict(msg)
    assert message_to_dict(dict_to_message(cls, once)) == once


label_keys = st.from_regex(r"\A([a-z0-9.-]{1,20}/)?[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,20}[a-zA-Z0-9])?\Z")
label_values = st.from_regex(r"\A([a-zA-Z0-9]([a-zA-Z0-9_.-]{0,20}[a-zA-Z0-9])?)?\Z")
quantities = st.sampled_from(["100m", "250m", "1", "2", "1500m", "64Mi", "1Gi", "1536Mi", "0",
                              "10k", "1e3", "500M", "128974848"])
env_vars = st.builds(
    lambda name, value, field: {"name": name, "value": value} if value else
    {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field}}},
    st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,10}\Z"), st.text(min_size=0, max_size=10),
    st.sampled_from(["metadata.name", "status.podIP", "spec.nodeName"]),
)
ports = st.builds(lambda n, p, proto: {"name": n, "containerPort": p, "protocol": proto},
                  st.from_regex(r"\A[a-z][a-z0-9]{0,8}\Z"), st.integers(1, 65535),
                  st.sampled_from(["TCP", "UDP", "SCTP"]))


def _container(name: str, image: str, port_list: list[Any], env: list[Any],
               limits: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": image}
    if port_list:
        out["ports"] = port_list
    if env:
        out["env"] = env
    if limits:
        out["resources"] = {"limits": limits, "requests": limits}
    return out


containers = st.builds(
    _container, st.from_regex(r"\A[a-z][a-z0-9-]{0,10}\Z"),
    st.sampled_from(["nginx:1.27", "busybox", "registry.example.com:5000/a/b@sha256:" + "a" * 64]),
    st.lists(ports, max_size=3), st.lists(env_vars, max_size=3),
    st.dictionaries(st.sampled_from(["cpu", "memory", "ephemeral-storage"]), quantities),
)


@settings(max_examples=200, deadline=None)
@given(labels=st.dictionaries(label_keys, label_values, max_size=5),
       annotations=st.dictionaries(label_keys, st.text(max_size=30), max_size=3),
       cs=st.lists(containers, min_size=1, max_size=3),
       replicas=st.integers(0, 2**31 - 1),
       seconds=st.integers(1, 253402300799))  # 0 is the zero time: absent
def test_generated_objects_round_trip(labels: dict[str, str], annotations: dict[str, str],
                                      cs: list[Any], replicas: int, seconds: int) -> None:
    metadata: dict[str, Any] = {"name": "d", "creationTimestamp": format_time(seconds)}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    doc = {"metadata": metadata,
           "spec": {"replicas": replicas, "template": {"spec": {"containers": cs}}}}
    msg = dict_to_message(apps_pb2.Deployment, doc)
    assert message_to_dict(msg) == doc
    again = apps_pb2.Deployment.FromString(msg.SerializeToString())
    assert message_to_dict(again) == doc


def test_clear_go_zero_values_keeps_pointer_zeros_and_nonzero_values() -> None:
    from pilothouse.api.codec import clear_go_zero_values
    from pilothouse.gen.k8s.apps.v1 import apps_pb2

    deploy = apps_pb2.Deployment()
    deploy.spec.replicas = 0  # *int32 in Go: zero is a choice
    deploy.spec.minReadySeconds = 0  # int32: zero is "unset"
    deploy.spec.paused = False
    container = deploy.spec.template.spec.containers.add(name="c", image="")
    container.ports.add(containerPort=80, hostPort=0)
    deploy.spec.template.metadata.labels["app"] = ""
    clear_go_zero_values(deploy)
    assert deploy.spec.HasField("replicas")
    assert not deploy.spec.HasField("minReadySeconds")
    assert not deploy.spec.HasField("paused")
    assert container.name == "c" and not container.HasField("image")
    assert container.ports[0].containerPort == 80
    assert not container.ports[0].HasField("hostPort")
    assert dict(deploy.spec.template.metadata.labels) == {"app": ""}
