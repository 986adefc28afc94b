"""JSON patch, merge patch and strategic merge patch (services/apiserver/patch.py).

Strategic merge cases use the real schemas of Pod, Deployment, Service and
CustomResourceDefinition; expected results follow Kubernetes' strategicpatch
behaviour (its test tables are the source of the ordering facts)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.gen.k8s.apiextensions.v1 import apiextensions_pb2
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.apiserver.patch import (
    PatchConflict,
    PatchError,
    PatchSchema,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    create_merge_patch,
    schema_for,
)

POD = schema_for(core_pb2.Pod.DESCRIPTOR)
DEPLOYMENT = schema_for(apps_pb2.Deployment.DESCRIPTOR)
SERVICE = schema_for(core_pb2.Service.DESCRIPTOR)
CRD = schema_for(apiextensions_pb2.CustomResourceDefinition.DESCRIPTOR)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def container(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


def make_pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": list(containers) or [container("app", image="nginx")], **spec},
    }


def make_deployment(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": list(containers)},
            },
            **spec,
        },
    }


def names(items: list[dict[str, Any]]) -> list[Any]:
    return [i["name"] for i in items]


# ---------------------------------------------------------------------------
# JSON patch (RFC 6902)

DOC = {"a": {"b": 1, "c": [1, 2, 3]}, "x~y": 1, "p/q": 2, "flag": True}

JSON_PATCH_CASES = [
    pytest.param(
        [{"op": "add", "path": "/a/d", "value": 4}],
        {**DOC, "a": {"b": 1, "c": [1, 2, 3], "d": 4}},
        id="add-object-member",
    ),
    pytest.param(
        [{"op": "add", "path": "/a/b", "value": 9}],
        {**DOC, "a": {"b": 9, "c": [1, 2, 3]}},
        id="add-replaces-existing-member",
    ),
    pytest.param(
        [{"op": "add", "path": "/a/c/1", "value": 9}],
        {**DOC, "a": {"b": 1, "c": [1, 9, 2, 3]}},
        id="add-inserts-into-array",
    ),
    pytest.param(
        [{"op": "add", "path": "/a/c/3", "value": 9}],
        {**DOC, "a": {"b": 1, "c": [1, 2, 3, 9]}},
        id="add-at-array-length",
    ),
    pytest.param(
        [{"op": "add", "path": "/a/c/-", "value": 9}],
        {**DOC, "a": {"b": 1, "c": [1, 2, 3, 9]}},
        id="add-dash-appends",
    ),
    pytest.param(
        [{"op": "add", "path": "", "value": {"new": 1}}],
        {"new": 1},
        id="add-root-replaces-document",
    ),
    pytest.param(
        [{"op": "replace", "path": "/x~0y", "value": 5}],
        {**DOC, "x~y": 5},
        id="pointer-escape-tilde",
    ),
    pytest.param(
        [{"op": "replace", "path": "/p~1q", "value": 5}],
        {**DOC, "p/q": 5},
        id="pointer-escape-slash",
    ),
    pytest.param(
        [{"op": "remove", "path": "/a/b"}], {**DOC, "a": {"c": [1, 2, 3]}}, id="remove-member"
    ),
    pytest.param(
        [{"op": "remove", "path": "/a/c/0"}],
        {**DOC, "a": {"b": 1, "c": [2, 3]}},
        id="remove-array-element",
    ),
    pytest.param(
        [{"op": "replace", "path": "/a/c/2", "value": "z"}],
        {**DOC, "a": {"b": 1, "c": [1, 2, "z"]}},
        id="replace-array-element",
    ),
    pytest.param(
        [{"op": "move", "from": "/a/b", "path": "/moved"}],
        {**DOC, "a": {"c": [1, 2, 3]}, "moved": 1},
        id="move-member",
    ),
    pytest.param(
        [{"op": "move", "from": "/a/c/0", "path": "/a/c/2"}],
        {**DOC, "a": {"b": 1, "c": [2, 3, 1]}},
        id="move-within-array",
    ),
    pytest.param([{"op": "move", "from": "/a", "path": "/a"}], DOC, id="move-onto-itself"),
    pytest.param(
        [{"op": "copy", "from": "/a/c", "path": "/copied"}],
        {**DOC, "copied": [1, 2, 3]},
        id="copy-member",
    ),
    pytest.param(
        [
            {"op": "test", "path": "/a/c", "value": [1, 2, 3]},
            {"op": "test", "path": "/a/b", "value": 1.0},
            {"op": "replace", "path": "/flag", "value": False},
        ],
        {**DOC, "flag": False},
        id="test-passes-then-replace",
    ),
    pytest.param([], DOC, id="empty-patch"),
]


@pytest.mark.parametrize(("patch", "expected"), JSON_PATCH_CASES)
def test_json_patch(patch: list[Any], expected: Any) -> None:
    original = copy.deepcopy(DOC)
    assert apply_json_patch(DOC, patch) == expected
    assert original == DOC  # input untouched


def test_json_patch_copy_is_independent_of_its_source() -> None:
    result = apply_json_patch(
        DOC,
        [
            {"op": "copy", "from": "/a", "path": "/b"},
            {"op": "add", "path": "/b/c/-", "value": 4},
        ],
    )
    assert result["a"]["c"] == [1, 2, 3]
    assert result["b"]["c"] == [1, 2, 3, 4]


JSON_PATCH_ERRORS = [
    pytest.param({"op": "add"}, 400, "must be a list", id="patch-not-a-list"),
    pytest.param(["add"], 400, "must be an object", id="operation-not-an-object"),
    pytest.param([{"op": "frobnicate", "path": "/a"}], 422, "unknown op", id="unknown-op"),
    pytest.param([{"path": "/a"}], 422, "unknown op", id="missing-op"),
    pytest.param([{"op": "remove"}], 422, "JSON pointer", id="missing-path"),
    pytest.param(
        [{"op": "remove", "path": "a/b"}],
        422,
        'must start with "/"',
        id="pointer-without-leading-slash",
    ),
    pytest.param(
        [{"op": "remove", "path": "/x~2y"}], 422, "'~' must be followed", id="pointer-bad-escape"
    ),
    pytest.param(
        [{"op": "add", "path": "/a/c/4", "value": 0}], 422, "out of bounds", id="add-index-past-end"
    ),
    pytest.param(
        [{"op": "add", "path": "/a/c/01", "value": 0}],
        422,
        "invalid array index",
        id="index-with-leading-zero",
    ),
    pytest.param(
        [{"op": "add", "path": "/a/c/-1", "value": 0}],
        422,
        "invalid array index",
        id="negative-index",
    ),
    pytest.param(
        [{"op": "remove", "path": "/a/c/-"}], 422, "invalid array index", id="remove-dash"
    ),
    pytest.param(
        [{"op": "remove", "path": "/a/nope"}], 422, "missing path", id="remove-missing-member"
    ),
    pytest.param([{"op": "remove", "path": ""}], 422, "whole document", id="remove-root"),
    pytest.param(
        [{"op": "replace", "path": "/nope", "value": 1}],
        422,
        "missing key",
        id="replace-missing-member",
    ),
    pytest.param(
        [{"op": "add", "path": "/nope/deeper", "value": 1}],
        422,
        "missing path",
        id="add-under-missing-parent",
    ),
    pytest.param(
        [{"op": "add", "path": "/flag/deeper", "value": 1}],
        422,
        "missing path",
        id="add-under-scalar",
    ),
    pytest.param([{"op": "add", "path": "/a"}], 422, 'missing "value"', id="add-without-value"),
    pytest.param([{"op": "copy", "path": "/b"}], 422, '"from"', id="copy-without-from"),
    pytest.param(
        [{"op": "copy", "from": "/nope", "path": "/b"}],
        422,
        "missing from path",
        id="copy-from-missing",
    ),
    pytest.param(
        [{"op": "move", "from": "/a", "path": "/a/b/c"}], 422, "own child", id="move-into-own-child"
    ),
]


@pytest.mark.parametrize(("patch", "code", "message"), JSON_PATCH_ERRORS)
def test_json_patch_errors(patch: Any, code: int, message: str) -> None:
    with pytest.raises(PatchError, match=message) as err:
        apply_json_patch(DOC, patch)
    assert err.value.code == code
    assert err.value.reason == ("BadRequest" if code == 400 else "Invalid")
    assert not isinstance(err.value, PatchConflict)


TEST_OP_FAILURES = [
    pytest.param({"op": "test", "path": "/a/b", "value": 2}, id="different-number"),
    pytest.param({"op": "test", "path": "/flag", "value": 1}, id="true-is-not-1"),
    pytest.param({"op": "test", "path": "/a/b", "value": "1"}, id="string-is-not-number"),
    pytest.param({"op": "test", "path": "/a/c", "value": [1, 2]}, id="different-array"),
    pytest.param({"op": "test", "path": "/nope", "value": None}, id="missing-path"),
]


@pytest.mark.parametrize("operation", TEST_OP_FAILURES)
def test_json_patch_failed_test_op_is_a_conflict_answered_422(operation: dict[str, Any]) -> None:
    patch = [{"op": "replace", "path": "/flag", "value": False}, operation]
    with pytest.raises(PatchConflict, match="test failed") as err:
        apply_json_patch(DOC, patch)
    assert err.value.code == 422
    assert DOC["flag"] is True  # all or nothing: the doc is never modified


# ---------------------------------------------------------------------------
# Merge patch (RFC 7386)

MERGE_PATCH_CASES = [  # the RFC 7386 appendix, with object patches
    pytest.param({"a": "b"}, {"a": "c"}, {"a": "c"}, id="rfc-replace-value"),
    pytest.param({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}, id="rfc-add-member"),
    pytest.param({"a": "b"}, {"a": None}, {}, id="rfc-null-deletes"),
    pytest.param({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}, id="rfc-null-deletes-one"),
    pytest.param({"a": ["b"]}, {"a": "c"}, {"a": "c"}, id="rfc-list-to-string"),
    pytest.param({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}, id="rfc-string-to-list"),
    pytest.param(
        {"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}, id="rfc-nested-merge"
    ),
    pytest.param({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}, id="rfc-lists-replace"),
    pytest.param({"e": None}, {"a": 1}, {"e": None, "a": 1}, id="rfc-existing-null-kept"),
    pytest.param(
        {}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}, id="rfc-nested-null-on-missing"
    ),
    pytest.param([1, 2], {"a": 1}, {"a": 1}, id="non-object-doc-becomes-object"),
    pytest.param(
        {"a": {"x": 1}},
        {"a": {"$patch": "delete"}},
        {"a": {"x": 1, "$patch": "delete"}},
        id="no-directives-in-merge-patch",
    ),
]


@pytest.mark.parametrize(("doc", "patch", "expected"), MERGE_PATCH_CASES)
def test_merge_patch(doc: Any, patch: Any, expected: Any) -> None:
    original = copy.deepcopy(doc)
    assert apply_merge_patch(doc, patch) == expected
    assert doc == original


@pytest.mark.parametrize(
    "patch",
    [
        pytest.param([{"a": 1}], id="list"),
        pytest.param("a", id="string"),
        pytest.param(None, id="null"),
    ],
)
def test_merge_patch_must_be_an_object(patch: Any) -> None:
    with pytest.raises(PatchError, match="must be a JSON object") as err:
        apply_merge_patch({"a": 1}, patch)
    assert err.value.code == 400


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner.filter(lambda v: v is not None), max_size=3)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(
    st.text(max_size=3), json_values.filter(lambda v: v is not None), max_size=4
)


@settings(max_examples=300, deadline=None)  # no wall-clock limit on a shared machine
@given(doc=json_objects, target=json_objects)
def test_merge_patch_of_the_diff_gives_the_target(
    doc: dict[str, Any], target: dict[str, Any]
) -> None:
    patch = create_merge_patch(doc, target)
    assert apply_merge_patch(doc, patch) == target
    # a merge patch is JSON: it survives a round trip
    assert apply_merge_patch(doc, json.loads(json.dumps(patch))) == target


# ---------------------------------------------------------------------------
# Strategic merge patch: schemas


def walk(schema: PatchSchema, *steps: str) -> PatchSchema:
    """Follow field names ("[]" for list items / map values) down a schema."""
    node: PatchSchema | None = schema
    for step in steps:
        assert node is not None, steps
        node = node.items() if step == "[]" else node.child(step)
    assert node is not None, steps
    return node


STRATEGY_CASES = [
    pytest.param(POD, ("spec",), "containers", ("merge", "name"), id="pod-containers"),
    pytest.param(POD, ("spec",), "initContainers", ("merge", "name"), id="pod-initContainers"),
    pytest.param(POD, ("spec",), "volumes", ("merge,retainKeys", "name"), id="pod-volumes"),
    pytest.param(POD, ("spec",), "imagePullSecrets", ("merge", "name"), id="imagePullSecrets"),
    pytest.param(POD, ("spec",), "tolerations", ("", ""), id="tolerations-none"),
    pytest.param(
        POD, ("spec", "containers", "[]"), "ports", ("merge", "containerPort"), id="container-ports"
    ),
    pytest.param(POD, ("spec", "containers", "[]"), "env", ("merge", "name"), id="container-env"),
    pytest.param(
        POD,
        ("spec", "containers", "[]"),
        "volumeMounts",
        ("merge", "mountPath"),
        id="container-volumeMounts",
    ),
    pytest.param(POD, ("spec", "containers", "[]"), "args", ("", ""), id="container-args-none"),
    # EphemeralContainer inlines EphemeralContainerCommon, strategies included
    pytest.param(
        POD,
        ("spec", "ephemeralContainers", "[]"),
        "env",
        ("merge", "name"),
        id="ephemeral-container-env-inline",
    ),
    pytest.param(POD, ("metadata",), "finalizers", ("merge", ""), id="finalizers"),
    pytest.param(POD, ("metadata",), "ownerReferences", ("merge", "uid"), id="ownerReferences"),
    pytest.param(POD, ("status",), "conditions", ("merge", "type"), id="pod-conditions"),
    pytest.param(SERVICE, ("spec",), "ports", ("merge", "port"), id="service-ports"),
    pytest.param(DEPLOYMENT, ("spec",), "strategy", ("retainKeys", ""), id="deployment-strategy"),
    pytest.param(
        DEPLOYMENT,
        ("spec", "template", "spec"),
        "containers",
        ("merge", "name"),
        id="deployment-template-containers",
    ),
]


@pytest.mark.parametrize(("schema", "steps", "field", "expected"), STRATEGY_CASES)
def test_schema_strategies_come_from_the_go_tags(
    schema: PatchSchema, steps: tuple[str, ...], field: str, expected: tuple[str, str]
) -> None:
    assert walk(schema, *steps).strategy(field) == expected


def test_schema_inline_fields_maps_and_leaves() -> None:
    volume = walk(POD, "spec", "volumes", "[]")
    # Volume.volumeSource is inline: its members are fields of the volume
    assert volume.has_field("emptyDir") and volume.has_field("name")
    assert not volume.has_field("volumeSource")
    assert walk(volume, "configMap").has_field("defaultMode")
    labels = walk(POD, "metadata", "labels")
    assert labels.has_field("anything") and labels.child("x") is None
    # quantities are opaque leaves, not objects to merge into
    assert walk(POD, "spec", "containers", "[]", "resources", "limits").items() is None
    assert walk(POD, "spec", "containers", "[]").child("nope") is None


# ---------------------------------------------------------------------------
# Strategic merge patch: behaviour

SMP_CASES = [
    pytest.param(
        make_pod(container("app", image="nginx", command=["sh"]), container("side", image="b")),
        {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}},
        lambda r: (
            r["spec"]["containers"]
            == [container("app", image="nginx:1.27", command=["sh"]), container("side", image="b")]
        ),
        id="containers-merge-by-name",
    ),
    pytest.param(
        make_pod(container("a"), container("b")),
        {"spec": {"containers": [{"name": "c", "image": "x"}]}},
        # Kubernetes: with no order information a new item goes first
        lambda r: names(r["spec"]["containers"]) == ["c", "a", "b"],
        id="new-container-without-order-goes-first",
    ),
    pytest.param(
        make_pod(container("a"), container("b"), container("c")),
        {"spec": {"containers": [{"name": "c", "x": 1}, {"name": "a", "x": 1}]}},
        # named items in patch order, server-only item where the server had it
        lambda r: names(r["spec"]["containers"]) == ["b", "c", "a"],
        id="patch-order-interleaves-server-only-items",
    ),
    pytest.param(
        make_pod(
            container("app", ports=[{"containerPort": 80, "name": "http"}, {"containerPort": 443}])
        ),
        {
            "spec": {
                "containers": [{"name": "app", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]
            }
        },
        lambda r: (
            r["spec"]["containers"][0]["ports"]
            == [{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}]
        ),
        id="ports-merge-by-containerPort",
    ),
    pytest.param(
        make_pod(
            container(
                "app",
                env=[{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {}}}],
            )
        ),
        {
            "spec": {
                "containers": [
                    {"name": "app", "env": [{"name": "B", "valueFrom": None, "value": "2"}]}
                ]
            }
        },
        lambda r: (
            r["spec"]["containers"][0]["env"]
            == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
        ),
        id="env-merge-by-name-null-deletes-in-item",
    ),
    pytest.param(
        make_pod(container("app", volumeMounts=[{"mountPath": "/a", "name": "v1"}])),
        {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "volumeMounts": [
                            {"mountPath": "/a", "readOnly": True},
                            {"mountPath": "/b", "name": "v2"},
                        ],
                    }
                ]
            }
        },
        lambda r: (
            r["spec"]["containers"][0]["volumeMounts"]
            == [
                {"mountPath": "/a", "name": "v1", "readOnly": True},
                {"mountPath": "/b", "name": "v2"},
            ]
        ),
        id="volumeMounts-merge-by-mountPath",
    ),
    pytest.param(
        make_pod(tolerations=[{"key": "a", "operator": "Exists"}]),
        {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}},
        lambda r: r["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}],
        id="tolerations-replace-no-strategy",
    ),
    pytest.param(
        make_pod(container("app", args=["a", "b"])),
        {"spec": {"containers": [{"name": "app", "args": ["c"]}]}},
        lambda r: r["spec"]["containers"][0]["args"] == ["c"],
        id="scalar-list-without-strategy-replaces",
    ),
    pytest.param(
        {**make_pod(), "metadata": {"name": "p", "finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": ["b", "c", "c"]}},
        lambda r: r["metadata"]["finalizers"] == ["a", "b", "c"],
        id="finalizers-merge-as-set",
    ),
    pytest.param(
        {**make_pod(), "metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}}},
        {"metadata": {"labels": {"tier": None, "env": "prod"}}},
        lambda r: r["metadata"]["labels"] == {"app": "web", "env": "prod"},
        id="labels-map-merge-null-deletes",
    ),
    pytest.param(
        make_pod(nodeSelector={"a": "1"}),
        {"spec": {"nodeSelector": None, "hostname": "h"}},
        lambda r: "nodeSelector" not in r["spec"] and r["spec"]["hostname"] == "h",
        id="null-deletes-field",
    ),
    pytest.param(
        make_pod(),
        {"spec": {"nodeName": None}},
        lambda r: r == make_pod(),
        id="null-for-absent-field-is-a-no-op",
    ),
    pytest.param(
        make_pod(container("a"), container("b"), container("a", image="dup")),
        {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}},
        lambda r: r["spec"]["containers"] == [container("b")],
        id="patch-delete-list-item-all-duplicates",
    ),
    pytest.param(
        make_pod(container("a"), container("b")),
        {"spec": {"containers": [{"name": "z", "image": "i"}, {"$patch": "replace"}]}},
        lambda r: r["spec"]["containers"] == [container("z", image="i")],
        id="patch-replace-list",
    ),
    pytest.param(
        make_pod(container("a")),
        {"spec": {"containers": [{"$patch": "replace"}]}},
        lambda r: r["spec"]["containers"] == [],
        id="patch-replace-list-with-nothing",
    ),
    pytest.param(
        make_pod(),
        {"metadata": {"labels": {"$patch": "replace", "only": "me"}}},
        lambda r: r["metadata"]["labels"] == {"only": "me"},
        id="patch-replace-map",
    ),
    pytest.param(
        make_pod(),
        {"metadata": {"labels": {"$patch": "delete"}}},
        lambda r: r["metadata"]["labels"] == {},
        id="patch-delete-map-empties-it",
    ),
    pytest.param(
        make_pod(),
        {"metadata": {"annotations": {"$patch": "delete"}}},
        lambda r: "annotations" not in r["metadata"],
        id="patch-delete-absent-map-stays-absent",
    ),
    pytest.param(
        make_pod(),
        {"metadata": {"labels": {"$patch": "merge", "x": "y"}}},
        lambda r: r["metadata"]["labels"] == {"app": "web", "x": "y"},
        id="patch-merge-map-is-the-default",
    ),
    pytest.param(
        make_pod(),
        {"$patch": "replace", "kind": "Pod", "metadata": {"name": "n"}},
        lambda r: r == {"kind": "Pod", "metadata": {"name": "n"}},
        id="patch-replace-whole-object",
    ),
    pytest.param(
        {**make_pod(), "metadata": {"name": "p", "finalizers": ["a", "b", "c"]}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "nope"]}},
        lambda r: r["metadata"]["finalizers"] == ["a", "c"],
        id="deleteFromPrimitiveList",
    ),
    pytest.param(
        make_pod(container("app", args=["x", "y"])),
        {"spec": {"containers": [{"name": "app", "$deleteFromPrimitiveList/args": ["x"]}]}},
        lambda r: r["spec"]["containers"][0]["args"] == ["y"],
        id="deleteFromPrimitiveList-on-list-without-strategy",
    ),
    pytest.param(
        make_pod(),
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}},
        lambda r: "finalizers" not in r["metadata"],
        id="deleteFromPrimitiveList-never-adds-the-list",
    ),
    pytest.param(
        make_pod(container("a"), container("b"), container("c")),
        {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}},
        lambda r: names(r["spec"]["containers"]) == ["c", "a", "b"],
        id="setElementOrder-reorders",
    ),
    pytest.param(
        make_pod(container("1"), container("2"), container("9"), container("3"), container("4")),
        {
            "spec": {
                "$setElementOrder/containers": [
                    {"name": "2"},
                    {"name": "1"},
                    {"name": "4"},
                    {"name": "3"},
                ]
            }
        },
        # server-only "9" keeps its place relative to its server neighbours
        lambda r: names(r["spec"]["containers"]) == ["2", "1", "9", "4", "3"],
        id="setElementOrder-with-server-only-item",
    ),
    pytest.param(
        make_pod(container("a"), container("b")),
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                "containers": [{"name": "c", "image": "new"}],
            }
        },
        lambda r: names(r["spec"]["containers"]) == ["a", "b", "c"],
        id="setElementOrder-appends-new-item-where-told",
    ),
    pytest.param(
        make_pod(container("a"), container("b")),
        {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "x"}, {"name": "a"}]}},
        lambda r: names(r["spec"]["containers"]) == ["b", "a"],
        id="setElementOrder-names-missing-item",
    ),
    pytest.param(
        make_pod(container("1"), container("2", image="b"), container("4", image="c")),
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
                "containers": [{"name": "3"}, {"name": "1", "$patch": "delete"}],
            }
        },
        # Kubernetes ranks server-only "4" against the live list with "1"
        # deleted and "3" added in its place: 2, 4, 3
        lambda r: names(r["spec"]["containers"]) == ["2", "4", "3"],
        id="setElementOrder-add-and-delete-with-server-only-item",
    ),
    pytest.param(
        make_pod(container("1"), container("4", image="c")),
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
                "containers": [{"name": "2"}, {"name": "3"}, {"name": "1", "$patch": "delete"}],
            }
        },
        lambda r: names(r["spec"]["containers"]) == ["4", "2", "3"],
        id="setElementOrder-replaces-deleted-item-after-server-only-item",
    ),
    pytest.param(
        {**make_pod(), "metadata": {"name": "p", "finalizers": ["a", "x", "b"]}},
        {
            "metadata": {
                "$setElementOrder/finalizers": ["b", "a"],
                "$deleteFromPrimitiveList/finalizers": ["x"],
            }
        },
        lambda r: r["metadata"]["finalizers"] == ["b", "a"],
        id="setElementOrder-and-delete-on-scalar-list",
    ),
    pytest.param(
        make_pod(),
        {
            "spec": {
                "$setElementOrder/initContainers": [{"name": "i"}],
                "initContainers": [{"name": "i", "image": "busybox", "x": None}],
            }
        },
        lambda r: r["spec"]["initContainers"] == [container("i", image="busybox")],
        id="setElementOrder-on-new-list",
    ),
    pytest.param(
        make_deployment(container("app")),
        {
            "spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}
            }
        },
        lambda r: r["spec"]["strategy"] == {"type": "Recreate"},
        id="retainKeys-deployment-strategy",
    ),
    pytest.param(
        make_deployment(container("app")),
        {"spec": {"strategy": {"type": "Recreate"}}},
        lambda r: (
            r["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
        ),
        id="retainKeys-strategy-without-directive-merges",
    ),
    pytest.param(
        make_pod(volumes=[{"name": "data", "emptyDir": {}}, {"name": "other", "emptyDir": {}}]),
        {
            "spec": {
                "volumes": [
                    {
                        "$retainKeys": ["configMap", "name"],
                        "name": "data",
                        "configMap": {"name": "cfg"},
                    }
                ]
            }
        },
        lambda r: (
            r["spec"]["volumes"]
            == [{"name": "data", "configMap": {"name": "cfg"}}, {"name": "other", "emptyDir": {}}]
        ),
        id="retainKeys-volume-source-switch",
    ),
    pytest.param(
        make_pod(container("app", ports=[{"containerPort": 80}])),
        {"spec": {"containers": [{"name": "app", "ports": {"not": "a list"}}]}},
        lambda r: r["spec"]["containers"][0]["ports"] == {"not": "a list"},
        id="type-change-replaces",  # decoding rejects it later, as in Kubernetes
    ),
    pytest.param(
        make_pod(),
        {
            "spec": {
                "containers": [{"name": "app", "ports": [{"containerPort": 8080}]}],
                "dnsConfig": {"options": [{"name": "ndots", "value": None}]},
            }
        },
        lambda r: (
            r["spec"]["containers"][0]["ports"] == [{"containerPort": 8080}]
            and r["spec"]["dnsConfig"] == {"options": [{"name": "ndots"}]}
        ),
        id="nulls-dropped-from-new-values",
    ),
    pytest.param(
        {
            "kind": "Service",
            "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "name": "https"}]},
        },
        {"spec": {"ports": [{"port": 443, "targetPort": "https"}]}},
        lambda r: (
            r["spec"]["ports"]
            == [
                {"port": 80, "targetPort": 8080},
                {"port": 443, "name": "https", "targetPort": "https"},
            ]
        ),
        id="service-ports-merge-by-port",
    ),
]


@pytest.mark.parametrize(("doc", "patch", "check"), SMP_CASES)
def test_strategic_merge_patch(doc: dict[str, Any], patch: dict[str, Any], check: Any) -> None:
    schema = (
        SERVICE
        if doc.get("kind") == "Service"
        else (DEPLOYMENT if doc.get("kind") == "Deployment" else POD)
    )
    original, patch_copy = copy.deepcopy(doc), copy.deepcopy(patch)
    result = apply_strategic_merge_patch(doc, patch, schema)
    assert check(result), result
    assert doc == original and patch == patch_copy  # inputs untouched
    assert "$" not in json.dumps(result)  # no directive survives


def test_merge_key_values_compare_as_json() -> None:
    pod = make_pod(container("app", ports=[{"containerPort": 80}, {"containerPort": 81}]))
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "ports": [
                        {"containerPort": 80.0, "name": "float-matches-int"},
                        {"containerPort": "81", "name": "string-is-another-key"},
                    ],
                }
            ]
        }
    }
    ports = apply_strategic_merge_patch(pod, patch, POD)["spec"]["containers"][0]["ports"]
    assert {"containerPort": 80, "name": "float-matches-int"} in ports
    assert {"containerPort": 81} in ports
    assert {"containerPort": "81", "name": "string-is-another-key"} in ports


def test_dollar_named_fields_are_fields_not_directives() -> None:
    # JSONSchemaProps has fields named "$schema" and "$ref"; CRD versions
    # have no patch strategy, so the list is replaced as a whole.
    crd = {"spec": {"group": "example.com", "versions": [{"name": "v1beta1"}]}}
    version = {
        "name": "v1",
        "schema": {
            "openAPIV3Schema": {
                "$schema": "http://json-schema.org/draft-04/schema#",
                "properties": {"spec": {"$ref": "#/a"}},
            }
        },
    }
    result = apply_strategic_merge_patch(crd, {"spec": {"versions": [version]}}, CRD)
    assert result == {"spec": {"group": "example.com", "versions": [version]}}
    # merged into a schema object, "$ref" and "$schema" are fields
    props = schema_for(apiextensions_pb2.JSONSchemaProps.DESCRIPTOR)
    doc = {"type": "object", "properties": {"s": {"type": "string"}}}
    patch = {"$schema": "x", "properties": {"s": {"$ref": "#/b", "type": None}}}
    assert apply_strategic_merge_patch(doc, patch, props) == {
        "type": "object",
        "$schema": "x",
        "properties": {"s": {"$ref": "#/b"}},
    }


# ---------------------------------------------------------------------------
# Strategic merge patch: the patches `kubectl apply` sends


def test_kubectl_apply_patch_for_a_deployment() -> None:
    """Shaped like kubectl 1.32's three-way patch: the manifest changed the
    image, dropped env B, switched the volume from emptyDir to a configMap,
    changed the rollout strategy and replicas, removed a label; a controller
    added a container and a field in between (kept)."""
    live = make_deployment(
        container(
            "web",
            image="nginx:1.26",
            env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            volumeMounts=[{"mountPath": "/data", "name": "data"}],
            terminationMessagePath="/dev/termination-log",
        ),
        container("sidecar", image="envoy"),
    )
    live["metadata"]["labels"] = {"app": "web", "tier": "fe"}
    live["metadata"]["annotations"] = {
        LAST_APPLIED: '{"old": true}\n',
        "deployment.kubernetes.io/revision": "3",
    }
    live["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    patch = {
        "metadata": {
            "annotations": {LAST_APPLIED: '{"new": true}\n'},
            "labels": {"tier": None},
        },
        "spec": {
            "replicas": 3,
            "strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}],
                    "$setElementOrder/volumes": [{"name": "data"}],
                    "containers": [
                        {
                            "$setElementOrder/env": [{"name": "A"}],
                            "env": [{"$patch": "delete", "name": "B"}],
                            "image": "nginx:1.27",
                            "name": "web",
                        }
                    ],
                    "volumes": [
                        {
                            "$retainKeys": ["configMap", "name"],
                            "configMap": {"name": "cfg"},
                            "emptyDir": None,
                            "name": "data",
                        }
                    ],
                }
            },
        },
    }
    result = apply_strategic_merge_patch(live, patch, DEPLOYMENT)
    assert result["metadata"]["annotations"] == {
        LAST_APPLIED: '{"new": true}\n',
        "deployment.kubernetes.io/revision": "3",
    }
    assert result["metadata"]["labels"] == {"app": "web"}
    spec = result["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "Recreate"}
    pod_spec = spec["template"]["spec"]
    assert pod_spec["containers"] == [
        container(
            "web",
            image="nginx:1.27",
            env=[{"name": "A", "value": "1"}],
            volumeMounts=[{"mountPath": "/data", "name": "data"}],
            terminationMessagePath="/dev/termination-log",
        ),
        container("sidecar", image="envoy"),
    ]
    assert pod_spec["volumes"] == [{"name": "data", "configMap": {"name": "cfg"}}]
    assert spec["selector"] == {"matchLabels": {"app": "web"}}


def test_kubectl_apply_adding_env_and_port_keeps_manifest_order() -> None:
    live = make_pod(
        container(
            "app", image="x", env=[{"name": "A", "value": "1"}], ports=[{"containerPort": 80}]
        )
    )
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [
                {
                    "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                    "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 9090}],
                    "env": [{"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 9090, "name": "metrics"}],
                    "name": "app",
                }
            ],
        }
    }
    app = apply_strategic_merge_patch(live, patch, POD)["spec"]["containers"][0]
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert app["ports"] == [{"containerPort": 80}, {"containerPort": 9090, "name": "metrics"}]


def test_kubectl_apply_with_no_changes_is_identity() -> None:
    live = make_deployment(container("web", image="nginx"))
    live["metadata"]["annotations"] = {LAST_APPLIED: "{}\n"}
    patch = {"metadata": {"annotations": {LAST_APPLIED: "{}\n"}}}
    assert apply_strategic_merge_patch(live, patch, DEPLOYMENT) == live


# ---------------------------------------------------------------------------
# Strategic merge patch: errors

SMP_ERRORS = [
    pytest.param(make_pod(), [{"spec": {}}], 400, "must be a JSON object", id="patch-not-object"),
    pytest.param([make_pod()], {"spec": {}}, 400, "want an object", id="doc-not-object"),
    pytest.param(
        make_pod(),
        {"spec": {"containers": [{"image": "x"}]}},
        422,
        "does not contain declared merge key: name",
        id="missing-merge-key-in-patch",
    ),
    pytest.param(
        make_pod(container("a"), {"image": "no-name"}),
        {"spec": {"containers": [{"name": "a", "image": "x"}]}},
        422,
        "does not contain declared merge key",
        id="missing-merge-key-in-object",
    ),
    pytest.param(
        make_pod(),
        {"spec": {"containers": ["app"]}},
        422,
        "list element types are not identical",
        id="merging-list-item-not-object",
    ),
    pytest.param(
        make_pod(),
        {"spec": {"containers": [{"$patch": "delete"}]}},
        422,
        "does not contain declared merge key",
        id="delete-item-without-merge-key",
    ),
    pytest.param(
        {**make_pod(), "metadata": {"finalizers": ["a"]}},
        {"metadata": {"finalizers": [1]}},
        422,
        "not identical",
        id="mixed-scalar-types",
    ),
    pytest.param(
        {**make_pod(), "metadata": {"finalizers": [["a"]]}},
        {"metadata": {"finalizers": [["b"]]}},
        422,
        "lists of lists",
        id="lists-of-lists",
    ),
    pytest.param(
        make_pod(), {"spec": {"$frobnicate": 1}}, 400, "unknown directive", id="unknown-directive"
    ),
    pytest.param(
        make_pod(),
        {"spec": {"$patch": "frobnicate"}},
        400,
        "unknown patch type",
        id="unknown-patch-type-in-map",
    ),
    pytest.param(
        make_pod(),
        {"spec": {"containers": [{"name": "a", "$patch": "x"}]}},
        400,
        "unknown patch type",
        id="unknown-patch-type-in-list",
    ),
    pytest.param(
        make_pod(),
        {"spec": {"containers": [{"$patch": "merge"}]}},
        400,
        "merging lists cannot yet be specified",
        id="patch-merge-in-list",
    ),
    pytest.param(
        make_deployment(),
        {"spec": {"strategy": {"$retainKeys": "type"}}},
        400,
        "retainKeys",
        id="retainKeys-not-a-list",
    ),
    pytest.param(
        make_deployment(),
        {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
        400,
        "not listed in \\$retainKeys",
        id="retainKeys-missing-patched-field",
    ),
    pytest.param(
        make_pod(container("1"), container("3"), container("2")),
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
                "containers": [{"name": "3", "x": 1}, {"name": "1", "x": 1}],
            }
        },
        400,
        "doesn't match",
        id="setElementOrder-order-mismatch",
    ),
    pytest.param(
        make_pod(),
        {"spec": {"$setElementOrder/containers": {"name": "a"}}},
        400,
        "setElementOrder list",
        id="setElementOrder-not-a-list",
    ),
    pytest.param(
        make_pod(),
        {"spec": {"$setElementOrder": [], "$setElementOrderX": []}},
        400,
        "setElementOrder list",
        id="setElementOrder-without-field",
    ),
    pytest.param(
        make_pod(),
        {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}},
        400,
        "primitive list",
        id="deleteFromPrimitiveList-not-a-list",
    ),
    pytest.param(
        make_pod(container("a")),
        {"spec": {"$deleteFromPrimitiveList/containers": [{"name": "a"}]}},
        400,
        "not a list of scalars",
        id="deleteFromPrimitiveList-on-objects",
    ),
]


@pytest.mark.parametrize(("doc", "patch", "code", "message"), SMP_ERRORS)
def test_strategic_merge_patch_errors(doc: Any, patch: Any, code: int, message: str) -> None:
    with pytest.raises(PatchError, match=message) as err:
        apply_strategic_merge_patch(
            doc, patch, POD if "strategy" not in json.dumps(patch) else DEPLOYMENT
        )
    assert err.value.code == code


def test_deeply_nested_input_is_a_clean_error() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    for apply in (
        lambda: apply_merge_patch({}, deep),
        lambda: apply_strategic_merge_patch({}, deep, POD),
        lambda: apply_json_patch({}, [{"op": "add", "path": "/x", "value": deep}]),
    ):
        with pytest.raises(PatchError, match="nests too deeply") as err:
            apply()
        assert err.value.code == 400


def test_schemaless_strategic_merge_behaves_like_merge_patch_for_maps() -> None:
    doc = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    patch = {"a": {"c": [3], "e": None}, "d": None}
    assert apply_strategic_merge_patch(doc, patch, None) == apply_merge_patch(doc, patch)
