"""OpenAPI v2/v3 documents: structure, Kubernetes names, what kubectl reads from them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator.validation.validators import (
    OpenAPIV2SpecValidator,
    OpenAPIV30SpecValidator,
)

from pilothouse.api.kinds import BUILTIN_KINDS, Kind
from pilothouse.services.apiserver import openapi

CRONTAB = Kind(group="stable.example.com", version="v1", kind="CronTab", plural="crontabs",
               namespaced=True, message=None)
CRONTAB_SCHEMA = {
    "type": "object",
    "properties": {"spec": {"type": "object", "properties": {
        "cronSpec": {"type": "string"}, "replicas": {"type": "integer", "nullable": True}}}},
}


@pytest.fixture(scope="module")
def v2() -> dict[str, Any]:
    return openapi.build_openapi_v2(BUILTIN_KINDS)


@pytest.fixture(scope="module")
def v3_docs() -> dict[tuple[str, str], dict[str, Any]]:
    gvs = sorted({(k.group, k.version) for k in BUILTIN_KINDS})
    return {gv: openapi.build_openapi_v3_group(BUILTIN_KINDS, *gv) for gv in gvs}


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):  # not JSONSchemaProps' "$ref" field
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow allOf[0] and $ref as kubectl's explain and patch-meta code do."""
    if schema.get("allOf"):
        schema = schema["allOf"][0]
    ref = schema.get("$ref")
    if ref:
        prefix, _, name = ref.rpartition("/")
        table = doc["definitions"] if prefix == "#/definitions" else doc["components"]["schemas"]
        return dict(table[name])
    return schema


def _by_gvk(schemas: dict[str, Any], group: str, version: str, kind: str) -> dict[str, Any]:
    wanted = {"group": group, "version": version, "kind": kind}
    found = [s for s in schemas.values() if wanted in s.get("x-kubernetes-group-version-kind", [])]
    assert len(found) == 1, f"{group}/{version} {kind}: {len(found)} schemas"
    return dict(found[0])


# -- names -------------------------------------------------------------------


@pytest.mark.parametrize(("proto", "name"), [
    ("k8s.io.api.core.v1.Pod", "io.k8s.api.core.v1.Pod"),
    ("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
     "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
    ("k8s.io.apimachinery.pkg.api.resource.Quantity",
     "io.k8s.apimachinery.pkg.api.resource.Quantity"),
    ("k8s.io.apimachinery.pkg.util.intstr.IntOrString",
     "io.k8s.apimachinery.pkg.util.intstr.IntOrString"),
    ("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
     "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"),
], ids=["pod", "objectmeta", "quantity", "intorstring", "crd"])
def test_definition_names_are_kubernetes_names(proto: str, name: str) -> None:
    assert openapi.definition_name(proto) == name


def test_custom_definition_name_reverses_the_group() -> None:
    assert openapi.custom_definition_name("stable.example.com", "v1", "CronTab") == \
        "com.example.stable.v1.CronTab"


# -- definitions ---------------------------------------------------------------


def test_every_v2_ref_resolves(v2: dict[str, Any]) -> None:
    refs = set(_refs(v2))
    assert refs, "the document has no refs at all"
    missing = [r for r in refs
               if r.removeprefix("#/definitions/") not in v2["definitions"]]
    assert missing == []
    assert all(r.startswith("#/definitions/") for r in refs)


def test_every_v3_ref_resolves(v3_docs: dict[tuple[str, str], dict[str, Any]]) -> None:
    for gv, doc in v3_docs.items():
        schemas = doc["components"]["schemas"]
        missing = [r for r in _refs(doc)
                   if r.removeprefix("#/components/schemas/") not in schemas]
        assert missing == [], gv


@pytest.mark.parametrize("kind", BUILTIN_KINDS, ids=lambda k: f"{k.group or 'core'}.{k.plural}")
def test_every_kind_has_its_gvk_extension(kind: Kind, v2: dict[str, Any],
                                          v3_docs: dict[tuple[str, str], dict[str, Any]]) -> None:
    schema = _by_gvk(v2["definitions"], kind.group, kind.version, kind.kind)
    assert {"apiVersion", "kind", "metadata"} <= set(schema["properties"])
    v3 = v3_docs[(kind.group, kind.version)]["components"]["schemas"]
    assert _by_gvk(v3, kind.group, kind.version, kind.kind)["properties"].keys() == \
        schema["properties"].keys()


def test_lists_have_gvk_and_required_items(v2: dict[str, Any]) -> None:
    pod_list = _by_gvk(v2["definitions"], "", "v1", "PodList")
    assert pod_list["required"] == ["items"]
    assert pod_list["properties"]["items"]["items"] == {
        "$ref": "#/definitions/io.k8s.api.core.v1.Pod"}


def test_pod_containers_carry_patch_and_list_facts(v2: dict[str, Any],
                                                   v3_docs: dict[tuple[str, str], Any]) -> None:
    for doc, prefix in ((v2, "#/definitions/"),
                        (v3_docs[("", "v1")], "#/components/schemas/")):
        spec = _resolve(doc, _by_gvk(_table(doc), "", "v1", "Pod")["properties"]["spec"])
        containers = spec["properties"]["containers"]
        assert containers["type"] == "array"
        assert containers["items"] == {"$ref": prefix + "io.k8s.api.core.v1.Container"}
        assert containers["x-kubernetes-patch-merge-key"] == "name"
        assert containers["x-kubernetes-patch-strategy"] == "merge"
        assert containers["x-kubernetes-list-type"] == "map"
        assert containers["x-kubernetes-list-map-keys"] == ["name"]
        assert "containers" in spec["required"]
        container = _table(doc)["io.k8s.api.core.v1.Container"]
        assert container["required"] == ["name"]
        ports = container["properties"]["ports"]
        assert ports["x-kubernetes-patch-merge-key"] == "containerPort"
        assert ports["x-kubernetes-list-map-keys"] == ["containerPort", "protocol"]


def _table(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["definitions"] if "definitions" in doc else doc["components"]["schemas"]


def test_retain_keys_and_atomic_struct(v2: dict[str, Any]) -> None:
    defs = v2["definitions"]
    strategy = defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys"
    selector = defs["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]
    assert selector["x-kubernetes-map-type"] == "atomic"
    meta = defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["finalizers"]["x-kubernetes-list-type"] == "set"
    assert meta["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}


def test_special_json_types(v2: dict[str, Any]) -> None:
    defs = v2["definitions"]
    assert defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"
    assert defs["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["format"] == "date-time"
    assert defs["io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"]["format"] == "date-time"
    assert defs["io.k8s.apimachinery.pkg.runtime.RawExtension"]["type"] == "object"
    rule = defs["io.k8s.api.rbac.v1.PolicyRule"]
    assert rule["properties"]["verbs"]["items"] == {"type": "string"}
    assert rule["required"] == ["verbs"]
    user = defs["io.k8s.api.authentication.v1.UserInfo"]["properties"]["extra"]
    assert user["additionalProperties"] == {"type": "array", "items": {"type": "string"}}
    resources = defs["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert resources["additionalProperties"] == {
        "$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"}


def test_inline_fields_appear_in_the_parent(v2: dict[str, Any]) -> None:
    volume = v2["definitions"]["io.k8s.api.core.v1.Volume"]
    assert {"name", "emptyDir", "configMap", "hostPath"} <= set(volume["properties"])
    assert "volumeSource" not in volume["properties"]
    webhooks = v2["definitions"][
        "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration"]["properties"]
    assert "webhooks" in webhooks and "Webhooks" not in webhooks


def test_v3_wraps_field_refs_in_allof(v3_docs: dict[tuple[str, str], Any]) -> None:
    pod = v3_docs[("", "v1")]["components"]["schemas"]["io.k8s.api.core.v1.Pod"]
    assert pod["properties"]["spec"] == {
        "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]}


def test_quantity_is_string_or_number_in_v3(v3_docs: dict[tuple[str, str], Any]) -> None:
    quantity = v3_docs[("", "v1")]["components"]["schemas"][
        "io.k8s.apimachinery.pkg.api.resource.Quantity"]
    assert quantity["oneOf"] == [{"type": "string"}, {"type": "number"}]


# -- paths ---------------------------------------------------------------------


def test_pod_paths_and_actions(v2: dict[str, Any]) -> None:
    paths = v2["paths"]
    item = paths["/api/v1/namespaces/{namespace}/pods/{name}"]
    assert {m: item[m]["x-kubernetes-action"] for m in ("get", "put", "patch", "delete")} == {
        "get": "get", "put": "put", "patch": "patch", "delete": "delete"}
    assert item["get"]["operationId"] == "readCoreV1NamespacedPod"
    assert item["get"]["x-kubernetes-group-version-kind"] == {
        "group": "", "kind": "Pod", "version": "v1"}
    coll = paths["/api/v1/namespaces/{namespace}/pods"]
    assert coll["get"]["x-kubernetes-action"] == "list"
    assert coll["post"]["x-kubernetes-action"] == "post"
    assert coll["delete"]["x-kubernetes-action"] == "deletecollection"
    assert paths["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert paths["/api/v1/watch/namespaces/{namespace}/pods"]["get"][
        "x-kubernetes-action"] == "watchlist"
    assert paths["/api/v1/watch/namespaces/{namespace}/pods/{name}"]["get"][
        "x-kubernetes-action"] == "watch"
    binding = paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"]
    assert binding["x-kubernetes-group-version-kind"]["kind"] == "Binding"
    scale = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling", "kind": "Scale", "version": "v1"}
    assert "application/strategic-merge-patch+json" in scale["consumes"]
    assert "/api/v1/namespaces/{name}" in paths
    assert "delete" not in paths["/api/v1/namespaces"]  # no deletecollection of namespaces
    assert list(paths["/apis/authentication.k8s.io/v1/tokenreviews"]) == ["post", "parameters"]


def _kubectl_supports_field_validation(doc: dict[str, Any], kind: Kind) -> bool:
    """What kubectl's QueryParamVerifierV3 checks before sending fieldValidation."""
    gvk = {"group": kind.group, "version": kind.version, "kind": kind.kind}
    for item in doc["paths"].values():
        patch = item.get("patch")
        if patch is None or patch.get("x-kubernetes-group-version-kind") != gvk:
            continue
        return any(p["name"] == "fieldValidation" and p["in"] == "query"
                   for p in patch.get("parameters", []))
    return False


@pytest.mark.parametrize("kind", [k for k in BUILTIN_KINDS if "patch" in k.verbs],
                         ids=lambda k: f"{k.group or 'core'}.{k.plural}")
def test_kubectl_finds_field_validation_for_every_patchable_kind(
        kind: Kind, v3_docs: dict[tuple[str, str], Any]) -> None:
    assert _kubectl_supports_field_validation(v3_docs[(kind.group, kind.version)], kind)


def test_explain_pods_spec_containers_walks_the_v3_document(
        v3_docs: dict[tuple[str, str], Any]) -> None:
    doc = v3_docs[("", "v1")]
    # kubectl explain finds the GVK on the resource's path, then the schema by GVK.
    gvk = doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"][
        "x-kubernetes-group-version-kind"]
    schema = _by_gvk(doc["components"]["schemas"], gvk["group"], gvk["version"], gvk["kind"])
    for field_name in ("spec", "containers"):
        schema = _resolve(doc, schema["properties"][field_name])
        if schema.get("type") == "array":
            schema = _resolve(doc, schema["items"])
    assert {"name", "image", "ports", "env", "resources"} <= set(schema["properties"])
    assert schema["required"] == ["name"]


def test_v3_group_document_holds_only_its_paths(
        v3_docs: dict[tuple[str, str], Any]) -> None:
    apps = v3_docs[("apps", "v1")]
    assert apps["openapi"].startswith("3.0")
    assert all(p.startswith("/apis/apps/v1/") for p in apps["paths"])
    schemas = apps["components"]["schemas"]
    assert "io.k8s.api.core.v1.Container" in schemas  # reached through the pod template
    assert "io.k8s.api.core.v1.Pod" not in schemas


def test_unknown_group_version_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match=r"apis/nope\.example\.com/v1"):
        openapi.build_openapi_v3_group(BUILTIN_KINDS, "nope.example.com", "v1")
    assert openapi.OpenAPIDocuments().v3_group(BUILTIN_KINDS, "apis/nope/v1") is None


# -- index and cache -----------------------------------------------------------


def test_v3_index_points_at_content_addressed_documents() -> None:
    docs = openapi.OpenAPIDocuments()
    index = json.loads(docs.v3_index(BUILTIN_KINDS))
    assert set(index["paths"]) == {openapi.group_version_path(k.group, k.version)
                                   for k in BUILTIN_KINDS}
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    body, digest = docs.v3_group(BUILTIN_KINDS, "apis/apps/v1") or (b"", "")
    assert url == f"/openapi/v3/apis/apps/v1?hash={digest}"
    assert digest == openapi.content_hash(body) and len(digest) == 128 and digest.isupper()
    assert json.loads(body) == openapi.build_openapi_v3_group(BUILTIN_KINDS, "apps", "v1")
    assert openapi.build_openapi_v3_index(BUILTIN_KINDS) == index


def test_documents_are_cached_until_the_kinds_change() -> None:
    docs = openapi.OpenAPIDocuments()
    first = docs.v2(BUILTIN_KINDS)
    assert docs.v2(list(BUILTIN_KINDS)) is first
    index = docs.v3_index(BUILTIN_KINDS)
    with_crd = [*BUILTIN_KINDS, CRONTAB]
    changed = docs.v3_index(with_crd, custom_schemas={("stable.example.com", "v1", "CronTab"):
                                                      CRONTAB_SCHEMA})
    assert changed != index
    assert "apis/stable.example.com/v1" in json.loads(changed)["paths"]
    assert b"com.example.stable.v1.CronTab" in docs.v2(
        with_crd, custom_schemas={("stable.example.com", "v1", "CronTab"): CRONTAB_SCHEMA})


def test_custom_resource_schema_and_paths() -> None:
    schemas = {("stable.example.com", "v1", "CronTab"): CRONTAB_SCHEMA}
    doc = openapi.build_openapi_v3_group([*BUILTIN_KINDS, CRONTAB], "stable.example.com", "v1",
                                         custom_schemas=schemas)
    crontab = _by_gvk(doc["components"]["schemas"], "stable.example.com", "v1", "CronTab")
    assert crontab["properties"]["spec"]["properties"]["cronSpec"] == {"type": "string"}
    assert _resolve(doc, crontab["properties"]["metadata"])["properties"]["name"] == {
        "type": "string"}
    assert "/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}" in doc["paths"]
    assert _kubectl_supports_field_validation(doc, CRONTAB)
    v2 = openapi.build_openapi_v2([CRONTAB], custom_schemas=schemas)
    spec = v2["definitions"]["com.example.stable.v1.CronTab"]["properties"]["spec"]
    assert "nullable" not in spec["properties"]["replicas"]  # Swagger 2.0 has no nullable
    bare = openapi.build_openapi_v2([CRONTAB])["definitions"]["com.example.stable.v1.CronTab"]
    assert bare["x-kubernetes-preserve-unknown-fields"] is True


def test_fingerprint_depends_on_kinds_and_schemas() -> None:
    base = openapi.kinds_fingerprint(BUILTIN_KINDS)
    assert base == openapi.kinds_fingerprint(list(reversed(BUILTIN_KINDS)))
    assert base != openapi.kinds_fingerprint([*BUILTIN_KINDS, CRONTAB])
    assert openapi.kinds_fingerprint([CRONTAB]) != openapi.kinds_fingerprint(
        [CRONTAB], {("stable.example.com", "v1", "CronTab"): CRONTAB_SCHEMA})


# -- validators ------------------------------------------------------------------

SAMPLE = [k for k in BUILTIN_KINDS if k.kind in (
    "Pod", "Service", "Namespace", "Deployment", "CustomResourceDefinition", "ClusterRole")]


def test_v2_document_is_valid_swagger() -> None:
    # The whole document validates too, but takes seconds: a representative sample.
    document = openapi.build_openapi_v2([*SAMPLE, CRONTAB])
    errors = list(OpenAPIV2SpecValidator(document).iter_errors())
    assert [str(e)[:300] for e in errors] == []


@pytest.mark.parametrize("gv", [("", "v1"), ("apiextensions.k8s.io", "v1"),
                                ("rbac.authorization.k8s.io", "v1")],
                         ids=["core", "apiextensions", "rbac"])
def test_v3_documents_are_valid_openapi(gv: tuple[str, str],
                                        v3_docs: dict[tuple[str, str], Any]) -> None:
    errors = list(OpenAPIV30SpecValidator(v3_docs[gv]).iter_errors())
    assert [str(e)[:300] for e in errors] == []
