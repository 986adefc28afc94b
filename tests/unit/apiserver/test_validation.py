"""Shared validators: Kubernetes' wording, field paths, and ObjectMeta rules."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.api.codec import dict_to_message
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.meta.v1 import meta_pb2
from pilothouse.services.apiserver.validation import (
    invalid,
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_valid_path_segment_name,
    is_valid_port_name,
    name_is_dns_label,
    name_is_dns_subdomain,
    not_supported,
    required,
    validate_annotations,
    validate_int_or_percent,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
    validate_resource_requirements,
)


def meta(**fields: Any) -> meta_pb2.ObjectMeta:
    msg = dict_to_message(meta_pb2.ObjectMeta, fields)
    assert isinstance(msg, meta_pb2.ObjectMeta)
    return msg


DNS_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a", True), ("my-name", True), ("123-abc", True), ("a" * 63, True), ("a" * 64, False),
     ("My", False), ("-a", False), ("a-", False), ("a.b", False), ("", False)],
)
def test_dns1123_label(value: str, ok: bool) -> None:
    assert (is_dns1123_label(value) == []) is ok


def test_dns1123_label_message_is_kubernetes_wording() -> None:
    assert is_dns1123_label("Foo") == [DNS_LABEL_MSG]
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [("example.com", True), ("a", True), ("a..b", False), ("A.com", False),
     ("a" * 254, False), (".a", False)],
)
def test_dns1123_subdomain(value: str, ok: bool) -> None:
    assert (is_dns1123_subdomain(value) == []) is ok


@pytest.mark.parametrize(("value", "ok"), [("web", True), ("1web", False), ("web-1", True)])
def test_dns1035_label(value: str, ok: bool) -> None:
    assert (is_dns1035_label(value) == []) is ok


def test_generate_name_prefix_may_end_with_dash() -> None:
    assert name_is_dns_subdomain("web-", True) == []
    assert name_is_dns_subdomain("web-", False) != []
    assert name_is_dns_label("web-", True) == []


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("http", []),
        ("http-alt", []),
        ("a" * 16, ["must be no more than 15 characters"]),
        ("HTTP", ["must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                  "must contain at least one letter (a-z)"]),
        ("a--b", ["must not contain consecutive hyphens"]),
        ("123", ["must contain at least one letter (a-z)"]),
        ("-ab", ["must not begin or end with a hyphen"]),
    ],
)
def test_port_name(value: str, errors: list[str]) -> None:
    assert is_valid_port_name(value) == errors


@pytest.mark.parametrize(
    ("value", "ok"), [("PATH", True), ("my.env-name", True), ("1ABC", False), ("A B", False)]
)
def test_env_var_name(value: str, ok: bool) -> None:
    assert (is_env_var_name(value) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("key.name", True), ("KEY_NAME", True), (".", False), ("..", False), ("..a", False),
     ("a/b", False), ("a" * 254, False)],
)
def test_config_map_key(value: str, ok: bool) -> None:
    assert (is_config_map_key(value) == []) is ok


def test_path_segment_names() -> None:
    assert is_valid_path_segment_name("system:controller:x") == []
    assert is_valid_path_segment_name("..") == ["may not be '..'"]
    assert is_valid_path_segment_name("a/b") == ["may not contain '/'"]


def test_cause_builders_read_like_field_errors() -> None:
    assert required("spec.containers").message == "Required value"
    assert required("x", "must be set").message == "Required value: must be set"
    assert invalid("spec.replicas", -1, "must be greater than or equal to 0").message == \
        "Invalid value: -1: must be greater than or equal to 0"
    cause = not_supported("spec.restartPolicy", "Sometimes", ("Always", "Never"))
    assert cause.message == \
        'Unsupported value: "Sometimes": supported values: "Always", "Never"'
    assert cause.reason == "FieldValueNotSupported"
    assert cause.field == "spec.restartPolicy"


def test_labels_keys_and_values() -> None:
    assert validate_labels({"app": "web", "example.com/tier": "front"}, "metadata.labels") == []
    causes = validate_labels({"bad key": "v", "k": "-v-"}, "metadata.labels")
    assert [c.field for c in causes] == ["metadata.labels", "metadata.labels"]
    assert causes[0].message.startswith('Invalid value: "bad key": name part must consist')
    assert causes[1].message.startswith('Invalid value: "-v-": a valid label must be')


def test_annotations_total_size() -> None:
    causes = validate_annotations({"a": "x" * (256 * 1024)}, "metadata.annotations")
    assert [(c.reason, c.message) for c in causes] == [
        ("FieldValueTooLong", "Too long: may not be more than 262144 bytes")]


def _resources(limits: dict[str, str], requests: dict[str, str]) -> core_pb2.ResourceRequirements:
    msg = dict_to_message(core_pb2.ResourceRequirements, {"limits": limits, "requests": requests})
    assert isinstance(msg, core_pb2.ResourceRequirements)
    return msg


def test_resources_requests_within_limits() -> None:
    ok = _resources({"cpu": "1", "memory": "1Gi"}, {"cpu": "500m", "memory": "1Gi"})
    assert validate_resource_requirements(ok, "r") == []
    causes = validate_resource_requirements(_resources({"cpu": "500m"}, {"cpu": "1"}), "r")
    assert [(c.field, c.message) for c in causes] == [
        ("r.requests[cpu]", 'Invalid value: "1": must be less than or equal to cpu limit of 500m')]


def test_resources_negative_and_unknown_names() -> None:
    causes = validate_resource_requirements(_resources({"cpu": "-1"}, {"gpu": "1"}), "r")
    assert ("r.limits[cpu]", 'Invalid value: "-1": must be greater than or equal to 0') in \
        [(c.field, c.message) for c in causes]
    assert ("r.requests[gpu]", 'Invalid value: "gpu": must be a standard resource for '
            "containers") in [(c.field, c.message) for c in causes]
    assert validate_resource_requirements(_resources({"example.com/gpu": "1"}, {}), "r") == []


@pytest.mark.parametrize(
    ("value", "message"),
    [("25%", None), (3, None), ("101%", 'Invalid value: "101%": must not be greater than 100%'),
     (-1, "Invalid value: -1: must be greater than or equal to 0"),
     ("abc", "Invalid value: \"abc\": a valid percent string must be a numeric string followed "
      "by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")],
)
def test_int_or_percent(value: int | str, message: str | None) -> None:
    from pilothouse.api.intstr import from_json

    causes = validate_int_or_percent(from_json(value), "spec.x")
    assert [c.message for c in causes] == ([message] if message else [])


META_CASES = [
    ("ok", {"name": "web", "namespace": "default"}, True, []),
    ("no name", {"namespace": "default"}, True,
     [("metadata.name", "Required value: name or generateName is required")]),
    ("generateName only", {"generateName": "web-", "name": "web-abcde", "namespace": "d"},
     True, []),
    ("bad name", {"name": "Web", "namespace": "default"}, True, [("metadata.name", None)]),
    ("missing namespace", {"name": "web"}, True, [("metadata.namespace", "Required value")]),
    ("namespace on cluster kind", {"name": "n1", "namespace": "default"}, False,
     [("metadata.namespace", "Forbidden: not allowed on this type")]),
    ("bad label", {"name": "web", "namespace": "d", "labels": {"a": "b c"}}, True,
     [("metadata.labels", None)]),
    ("two controllers", {"name": "w", "namespace": "d", "ownerReferences": [
        {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": True}]}, True,
     [("metadata.ownerReferences", None)]),
    ("owner without uid", {"name": "w", "namespace": "d", "ownerReferences": [
        {"apiVersion": "v1", "kind": "A", "name": "a"}]}, True,
     [("metadata.ownerReferences[0].uid", 'Invalid value: "": uid must not be empty')]),
    ("orphan and foreground", {"name": "w", "namespace": "d",
                               "finalizers": ["orphan", "foregroundDeletion"]}, True,
     [("metadata.finalizers", None)]),
]


@pytest.mark.parametrize(("data", "namespaced", "expected"),
                         [c[1:] for c in META_CASES], ids=[c[0] for c in META_CASES])
def test_object_meta(data: dict[str, Any], namespaced: bool,
                     expected: list[tuple[str, str | None]]) -> None:
    causes = validate_object_meta(meta(**data), namespaced, name_validator=name_is_dns_subdomain)
    assert [c.field for c in causes] == [f for f, _ in expected]
    for cause, (_, message) in zip(causes, expected, strict=True):
        if message is not None:
            assert cause.message == message


def test_object_meta_uses_the_kinds_name_rule() -> None:
    m = meta(name="a.b")
    assert validate_object_meta(m, False, name_validator=name_is_dns_subdomain) == []
    causes = validate_object_meta(m, False, name_validator=name_is_dns_label)
    assert [c.field for c in causes] == ["metadata.name"]


def test_object_meta_update_keeps_identity() -> None:
    old = meta(name="a", namespace="d", uid="1")
    assert validate_object_meta_update(meta(name="a", namespace="d", uid="1"), old) == []
    causes = validate_object_meta_update(meta(name="b", namespace="d", uid="2"), old)
    assert [(c.field, c.message) for c in causes] == [
        ("metadata.name", 'Invalid value: "b": field is immutable'),
        ("metadata.uid", 'Invalid value: "2": field is immutable')]
