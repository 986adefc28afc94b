"""OpenAPI documents of the served kinds: ``/openapi/v2`` and ``/openapi/v3``.

kubectl reads these, not the Go types: ``explain`` walks the schemas,
``apply`` takes strategic-merge-patch keys from them, and before sending a
body with ``fieldValidation`` kubectl 1.32 looks in ``/openapi/v3`` for a PATCH
operation of the object's group-version-kind that accepts that parameter
(failing that it falls back to client-side validation against
``/openapi/v2``). So the documents are generated here from what the server
really serves:

- Definitions come from the protobuf descriptors of the kinds, with the JSON
  names, inlining and omitempty facts of ``k8s_json_fields`` and the special
  JSON types of ``codec`` (Quantity, IntOrString, Time, RawExtension, ...).
  Names are Kubernetes' own (``io.k8s.api.core.v1.Pod``), derived from the
  proto package, so refs, ``x-kubernetes-group-version-kind`` lists and
  patch extensions look as they do against Kubernetes.
- Required fields, list types and map/struct types are the ``+optional``,
  ``+listType``/``+listMapKey`` and ``+mapType``/``+structType`` markers of
  k8s.io/api, apimachinery and apiextensions-apiserver v0.32 (read once from
  their types.go files, kept below as ``_SCHEMA_FACTS``); patch strategies and
  merge keys come from ``k8s_json_fields.PATCH``.
- Paths: per kind the operations its verbs allow, with
  ``x-kubernetes-action`` and a single-object ``x-kubernetes-group-version-kind``
  as Kubernetes writes them; subresources status/scale/binding/eviction/...

Generation walks hundreds of messages, so ``OpenAPIDocuments`` keeps the
serialized bytes per fingerprint of the kind set and rebuilds only when it
changes (a CRD established or removed).
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from pilothouse import KUBERNETES_VERSION
from pilothouse.api import codec
from pilothouse.api.k8s_json_fields import FIELDS, PATCH
from pilothouse.api.kinds import EVICTION_MESSAGE, SCALE_MESSAGE, Kind
from pilothouse.gen.k8s.authentication.v1 import authentication_pb2 as authn_v1
from pilothouse.gen.k8s.meta.v1 import meta_pb2 as meta_v1

Schema = dict[str, Any]
# protobuf's Descriptor (upb and pure-Python classes differ; both quack alike).
DescriptorT = Any
# (group, version, kind) -> the openAPIV3Schema of a custom resource version.
CustomSchemas = Mapping[tuple[str, str, str], Mapping[str, Any]]

V2_PREFIX = "#/definitions/"
V3_PREFIX = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
OBJECT_META = META + "ObjectMeta"
LIST_META = META + "ListMeta"
STATUS = META + "Status"
DELETE_OPTIONS = META + "DeleteOptions"
WATCH_EVENT = META + "WatchEvent"
PATCH_BODY = META + "Patch"

PRODUCES = ["application/json", "application/yaml"]
PATCH_TYPES = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
]


def definition_name(full_name: str) -> str:
    """Kubernetes' OpenAPI name of a proto message: ``k8s.io.api.core.v1.Pod`` ->
    ``io.k8s.api.core.v1.Pod``; the apiextensions package's ``_`` is Go's ``-``."""
    if not full_name.startswith("k8s.io."):
        return full_name
    *package, name = full_name.removeprefix("k8s.io.").split(".")
    return ".".join(["io", "k8s", *(p.replace("_", "-") for p in package), name])


def custom_definition_name(group: str, version: str, kind: str) -> str:
    """The name Kubernetes gives a custom resource's schema: the group reversed
    (``stable.example.com`` -> ``com.example.stable.v1.CronTab``)."""
    return ".".join([*reversed(group.split(".")), version, kind])


def group_version_path(group: str, version: str) -> str:
    """The ``/openapi/v3`` key of a group-version: ``api/v1``, ``apis/apps/v1``."""
    return f"api/{version}" if not group else f"apis/{group}/{version}"


# ---------------------------------------------------------------------------
# Facts per message


@dataclass(frozen=True, slots=True)
class _FieldFacts:
    required: bool = False
    list_type: str = ""
    list_map_keys: tuple[str, ...] = ()
    map_type: str = ""


_parsed_facts: dict[str, tuple[dict[str, _FieldFacts], str]] = {}


def _facts_of(full_name: str) -> tuple[dict[str, _FieldFacts], str]:
    """(json name -> facts, the message's own struct type) from ``_SCHEMA_FACTS``."""
    cached = _parsed_facts.get(full_name)
    if cached is not None:
        return cached
    fields: dict[str, _FieldFacts] = {}
    struct_type = ""
    for token in _SCHEMA_FACTS.get(full_name.removeprefix("k8s.io."), "").split():
        name, _, codes = token.partition("=")
        required, list_type, map_type = False, "", ""
        keys: tuple[str, ...] = ()
        for code in codes.split("|"):
            if code == "R":
                required = True
            elif code.startswith("L"):
                list_type, _, key_text = code[1:].partition("/")
                keys = tuple(key_text.split(",")) if key_text else ()
            elif code.startswith(("M", "S")):
                map_type = code[1:]
        if name == "@":
            struct_type = map_type
        else:
            fields[name] = _FieldFacts(required, list_type, keys, map_type)
    _parsed_facts[full_name] = (fields, struct_type)
    return fields, struct_type


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


# Request kinds that are not served as resources but carry apiVersion/kind.
_TYPE_META_EXTRA = frozenset({
    SCALE_MESSAGE.DESCRIPTOR.full_name,
    EVICTION_MESSAGE.DESCRIPTOR.full_name,
    authn_v1.TokenRequest.DESCRIPTOR.full_name,
    meta_v1.DeleteOptions.DESCRIPTOR.full_name,
    meta_v1.Status.DESCRIPTOR.full_name,
})
# Extra definitions' kinds: the message and the GVKs Kubernetes lists for it.
_SUBRESOURCE_KINDS: dict[str, tuple[DescriptorT, tuple[str, str, str]]] = {
    "scale": (SCALE_MESSAGE.DESCRIPTOR, ("autoscaling", "v1", "Scale")),
    "eviction": (EVICTION_MESSAGE.DESCRIPTOR, ("policy", "v1", "Eviction")),
    "token": (authn_v1.TokenRequest.DESCRIPTOR, ("authentication.k8s.io", "v1", "TokenRequest")),
}

_DESCRIPTIONS = {
    "apiVersion": "APIVersion defines the versioned schema of this representation of an object.",
    "kind": "Kind is a string value representing the REST resource this object represents.",
}


def _special_schema(full_name: str, *, v3: bool) -> Schema | None:
    """Schemas of the types whose JSON is not their protobuf structure."""
    if full_name in (codec.QUANTITY, codec.QUANTITY_VALUE):
        if v3:
            return {"description": "A fixed-point number: 500m, 1Gi, 2.5, 1e3.",
                    "oneOf": [{"type": "string"}, {"type": "number"}]}
        return {"description": "A fixed-point number: 500m, 1Gi, 2.5, 1e3.", "type": "string"}
    if full_name == codec.INT_OR_STRING:
        return {"description": "An int32 or a string.", "format": "int-or-string",
                "type": "string"}
    if full_name in (codec.TIME, codec.MICRO_TIME):
        return {"description": "An RFC 3339 date and time (UTC).", "format": "date-time",
                "type": "string"}
    if full_name == codec.DURATION:
        return {"description": "A Go duration such as 1h2m3s.", "type": "string"}
    if full_name == codec.FIELDS_V1:
        return {"description": "Set of fields, in the managed-fields JSON form.",
                "type": "object"}
    if full_name == codec.RAW_EXTENSION:
        return {"description": "An embedded object, kept as raw JSON.", "type": "object"}
    if full_name == codec.EXT_JSON:
        return {"description": "Any JSON value."}
    if full_name == codec.PROPS_OR_ARRAY:
        return {"description": "A JSON schema, or an array of JSON schemas."}
    if full_name == codec.PROPS_OR_BOOL:
        return {"description": "A JSON schema, or a boolean."}
    if full_name == codec.PROPS_OR_STRINGS:
        return {"description": "A JSON schema, or an array of strings."}
    return None


_SCALARS: dict[int, Schema] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_INT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_SINT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_SFIXED64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_FIXED64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}

# Parameters: name -> (type, description).
_PARAMS: dict[str, tuple[str, str]] = {
    "allowWatchBookmarks": ("boolean", "Ask for BOOKMARK events on a watch."),
    "continue": ("string", "The continue token of the previous page of a list."),
    "dryRun": ("string", "When All, run every stage of the request but persist nothing."),
    "fieldManager": ("string", "The name of the actor making the change."),
    "fieldSelector": ("string", "Restrict the list by the objects' fields."),
    "fieldValidation": ("string", "Ignore, Warn or Strict: how to treat unknown or "
                                  "duplicate fields in the body."),
    "force": ("boolean", "Apply requests: take over fields owned by other managers."),
    "gracePeriodSeconds": ("integer", "Seconds before the object is deleted."),
    "ignoreStoreReadErrorWithClusterBreakingPotential": (
        "boolean", "Delete an object whose stored form cannot be read."),
    "labelSelector": ("string", "Restrict the list by the objects' labels."),
    "limit": ("integer", "The maximum number of items in one page of a list."),
    "name": ("string", "name of the object"),
    "namespace": ("string", "object name and auth scope, such as for teams and projects"),
    "orphanDependents": ("boolean", "Deprecated: use propagationPolicy."),
    "pretty": ("string", "If 'true', the output is pretty printed."),
    "propagationPolicy": ("string", "Orphan, Background or Foreground garbage collection."),
    "resourceVersion": ("string", "Which version of the data to serve."),
    "resourceVersionMatch": ("string", "How resourceVersion applies to a list."),
    "sendInitialEvents": ("boolean", "Start a watch with the current state as ADDED events."),
    "timeoutSeconds": ("integer", "Timeout of a list or watch call."),
    "watch": ("boolean", "Watch for changes instead of listing."),
}
_LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
                "resourceVersion", "resourceVersionMatch", "sendInitialEvents",
                "timeoutSeconds", "watch")
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds",
                  "ignoreStoreReadErrorWithClusterBreakingPotential", "orphanDependents",
                  "propagationPolicy")


def _group_id(group: str) -> str:
    """``rbac.authorization.k8s.io`` -> ``RbacAuthorization``; core -> ``Core``."""
    if not group:
        return "Core"
    return "".join(p[:1].upper() + p[1:] for p in group.removesuffix(".k8s.io").split("."))


# ---------------------------------------------------------------------------
# The builder


@dataclass
class _Op:
    """One operation, rendered for v2 or v3 by ``_Builder.operation``."""

    method: str
    action: str
    operation_id: str
    description: str
    gvk: dict[str, str]
    response: str  # definition name of the 200 response
    params: tuple[str, ...] = ()
    body: str = ""  # definition name of the request body
    codes: tuple[str, ...] = ("200",)
    watch: bool = False


@dataclass
class _Builder:
    v3: bool
    custom_schemas: CustomSchemas
    definitions: dict[str, Schema] = field(default_factory=dict)
    paths: dict[str, Schema] = field(default_factory=dict)
    gvks: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    type_meta: set[str] = field(default_factory=set)

    @property
    def prefix(self) -> str:
        return V3_PREFIX if self.v3 else V2_PREFIX

    def ref(self, name: str) -> Schema:
        return {"$ref": self.prefix + name}

    def add_gvk(self, name: str, group: str, version: str, kind: str) -> None:
        entries = self.gvks.setdefault(name, [])
        entry = _gvk(group, version, kind)
        if entry not in entries:
            entries.append(entry)

    # -- definitions --------------------------------------------------------

    def message_ref(self, desc: DescriptorT) -> Schema:
        return self.ref(self.message_definition(desc))

    def message_definition(self, desc: DescriptorT) -> str:
        name = definition_name(desc.full_name)
        if name not in self.definitions:
            self.definitions[name] = {}  # claimed first: message types are recursive
            self.definitions[name] = self._message_schema(desc)
        return name

    def _message_schema(self, desc: DescriptorT) -> Schema:
        special = _special_schema(desc.full_name, v3=self.v3)
        if special is not None:
            return special
        properties: dict[str, Schema] = {}
        required: list[str] = []
        if desc.full_name in self.type_meta or _is_list(desc):
            properties["apiVersion"] = {"description": _DESCRIPTIONS["apiVersion"],
                                        "type": "string"}
            properties["kind"] = {"description": _DESCRIPTIONS["kind"], "type": "string"}
        self._collect(desc, properties, required)
        schema: Schema = {"type": "object", "properties": dict(sorted(properties.items()))}
        if required:
            schema["required"] = required
        _, struct_type = _facts_of(desc.full_name)
        if struct_type:
            schema["x-kubernetes-map-type"] = struct_type
        return schema

    def _collect(self, desc: DescriptorT, properties: dict[str, Schema],
                 required: list[str]) -> None:
        json_facts = FIELDS.get(desc.full_name, {})
        patch_facts = PATCH.get(desc.full_name, {})
        schema_facts, _ = _facts_of(desc.full_name)
        for fd in desc.fields:
            json_name, flags = json_facts.get(fd.name, (fd.name, codec.OMITEMPTY))
            if json_name == "-":
                continue
            if flags & codec.INLINE and fd.message_type is not None:
                self._collect(fd.message_type, properties, required)
                continue
            schema = self._field_schema(fd)
            extensions: Schema = {}
            facts = schema_facts.get(json_name, _FieldFacts())
            if facts.required:
                required.append(json_name)
            if facts.list_type:
                extensions["x-kubernetes-list-type"] = facts.list_type
            if facts.list_map_keys:
                extensions["x-kubernetes-list-map-keys"] = list(facts.list_map_keys)
            if facts.map_type:
                extensions["x-kubernetes-map-type"] = facts.map_type
            strategy, merge_key = patch_facts.get(json_name, ("", ""))
            if merge_key:
                extensions["x-kubernetes-patch-merge-key"] = merge_key
            if strategy:
                extensions["x-kubernetes-patch-strategy"] = strategy
            properties[json_name] = self._with_extensions(schema, extensions)

    def _with_extensions(self, schema: Schema, extensions: Schema) -> Schema:
        if "$ref" in schema and self.v3:
            # OpenAPI 3.0 ignores siblings of $ref, so Kubernetes wraps a field's
            # ref in allOf (kubectl's patch-meta and explain follow allOf[0]).
            schema = {"allOf": [schema]}
        return {**schema, **extensions}

    def _field_schema(self, fd: FieldDescriptor) -> Schema:
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value = self._value_schema(fd.message_type.fields_by_name["value"])
            return {"type": "object", "additionalProperties": value}
        if fd.is_repeated:
            return {"type": "array", "items": self._value_schema(fd)}
        return self._value_schema(fd)

    def _value_schema(self, fd: FieldDescriptor) -> Schema:
        message = fd.message_type
        if message is not None:
            if message.full_name in codec.STRING_LISTS:
                return {"type": "array", "items": {"type": "string"}}
            return self.message_ref(message)
        scalar = _SCALARS.get(fd.type)
        if scalar is None:
            raise TypeError(f"{fd.full_name}: no OpenAPI type for protobuf type {fd.type}")
        return dict(scalar)

    def kind_definition(self, kind: Kind) -> tuple[str, str]:
        """Define ``kind`` and its list; returns their definition names."""
        if kind.message is not None:
            desc = kind.message.DESCRIPTOR
            self.type_meta.add(desc.full_name)
            name = self.message_definition(desc)
            list_desc = desc.file.message_types_by_name.get(desc.name + "List")
            list_name = self.message_definition(list_desc) if list_desc is not None else ""
        else:
            name, list_name = self._custom_definitions(kind)
        self.add_gvk(name, kind.group, kind.version, kind.kind)
        if list_name:
            self.add_gvk(list_name, kind.group, kind.version, kind.list_kind)
        return name, list_name

    def _custom_definitions(self, kind: Kind) -> tuple[str, str]:
        name = custom_definition_name(kind.group, kind.version, kind.kind)
        list_name = name + "List"
        given = self.custom_schemas.get((kind.group, kind.version, kind.kind))
        schema: Schema = copy.deepcopy(dict(given)) if given else {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}
        if not self.v3:
            schema = _v2_compatible(schema)
        properties = schema.setdefault("properties", {})
        properties["apiVersion"] = {"description": _DESCRIPTIONS["apiVersion"],
                                    "type": "string"}
        properties["kind"] = {"description": _DESCRIPTIONS["kind"], "type": "string"}
        meta_ref = self.message_ref(meta_v1.ObjectMeta.DESCRIPTOR)
        properties["metadata"] = {"allOf": [meta_ref]} if self.v3 else meta_ref
        schema.setdefault("type", "object")
        self.definitions[name] = schema
        list_meta = self.message_ref(meta_v1.ListMeta.DESCRIPTOR)
        self.definitions[list_name] = {
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"description": _DESCRIPTIONS["apiVersion"], "type": "string"},
                "items": {"type": "array", "items": self.ref(name)},
                "kind": {"description": _DESCRIPTIONS["kind"], "type": "string"},
                "metadata": {"allOf": [list_meta]} if self.v3 else list_meta,
            },
        }
        return name, list_name

    def extra_definitions(self, group_versions: Iterable[tuple[str, str]]) -> None:
        """Status, DeleteOptions, WatchEvent and Patch, as every document has them."""
        self.type_meta.update(_TYPE_META_EXTRA)
        status = self.message_definition(meta_v1.Status.DESCRIPTOR)
        self.add_gvk(status, "", "v1", "Status")
        delete_options = self.message_definition(meta_v1.DeleteOptions.DESCRIPTOR)
        watch_event = self.message_definition(meta_v1.WatchEvent.DESCRIPTOR)
        self.definitions[watch_event].setdefault("required", ["type", "object"])
        for group, version in group_versions:
            self.add_gvk(delete_options, group, version, "DeleteOptions")
            self.add_gvk(watch_event, group, version, "WatchEvent")
        self.definitions[PATCH_BODY] = {
            "description": "A patch of one of the types named by the request's Content-Type.",
            "type": "object",
        }

    def finish_definitions(self) -> dict[str, Schema]:
        for name, gvks in self.gvks.items():
            if name in self.definitions:
                self.definitions[name]["x-kubernetes-group-version-kind"] = gvks
        return dict(sorted(self.definitions.items()))

    # -- paths --------------------------------------------------------------

    def kind_paths(self, kind: Kind) -> None:
        obj, list_name = self.kind_definition(kind)
        verbs = set(kind.verbs)
        gvk = _gvk(kind.group, kind.version, kind.kind)
        root = "/api/v1" if not kind.group else f"/apis/{kind.group}/{kind.version}"
        ns = "/namespaces/{namespace}" if kind.namespaced else ""
        scope = "Namespaced" if kind.namespaced else ""
        gv = _group_id(kind.group) + kind.version[:1].upper() + kind.version[1:]
        base = f"{gv}{scope}{kind.kind}"
        path_params = ("namespace",) if kind.namespaced else ()
        coll = f"{root}{ns}/{kind.plural}"
        item = coll + "/{name}"
        status = STATUS

        def op(method: str, action: str, op_id: str, what: str, response: str,
               params: tuple[str, ...] = (), body: str = "",
               codes: tuple[str, ...] = ("200",), watch: bool = False,
               op_gvk: dict[str, str] = gvk) -> _Op:
            return _Op(method, action, op_id, what, op_gvk, response, params, body, codes, watch)

        collection: list[_Op] = []
        if "list" in verbs and list_name:
            collection.append(op("get", "list", f"list{base}", f"list or watch objects of kind "
                                 f"{kind.kind}", list_name, _LIST_PARAMS))
        if "create" in verbs:
            collection.append(op("post", "post", f"create{base}", f"create a {kind.kind}", obj,
                                 _WRITE_PARAMS, obj, ("200", "201", "202")))
        if "deletecollection" in verbs:
            collection.append(op("delete", "deletecollection", f"delete{gv}Collection{scope}"
                                 f"{kind.kind}", f"delete collection of {kind.kind}", status,
                                 _LIST_PARAMS + _DELETE_PARAMS, DELETE_OPTIONS))
        self.add_path(coll, path_params, collection)
        item_ops: list[_Op] = []
        if "get" in verbs:
            item_ops.append(op("get", "get", f"read{base}", f"read the specified {kind.kind}",
                               obj))
        if "update" in verbs:
            item_ops.append(op("put", "put", f"replace{base}",
                               f"replace the specified {kind.kind}", obj, _WRITE_PARAMS, obj,
                               ("200", "201")))
        if "patch" in verbs:
            item_ops.append(op("patch", "patch", f"patch{base}",
                               f"partially update the specified {kind.kind}", obj,
                               (*_WRITE_PARAMS, "force"), PATCH_BODY, ("200", "201")))
        if "delete" in verbs:
            item_ops.append(op("delete", "delete", f"delete{base}", f"delete a {kind.kind}",
                               status, _DELETE_PARAMS, DELETE_OPTIONS, ("200", "202")))
        self.add_path(item, (*path_params, "name"), item_ops)
        if kind.namespaced and "list" in verbs and list_name:
            self.add_path(f"{root}/{kind.plural}", (), [
                op("get", "list", f"list{gv}{kind.kind}ForAllNamespaces",
                   f"list or watch objects of kind {kind.kind}", list_name, _LIST_PARAMS)])
        if "watch" in verbs:
            self.add_path(f"{root}/watch{ns}/{kind.plural}", path_params, [
                op("get", "watchlist", f"watch{base}List", f"watch individual changes to a "
                   f"list of {kind.kind}", WATCH_EVENT, _LIST_PARAMS, watch=True)])
            self.add_path(f"{root}/watch{ns}/{kind.plural}/{{name}}", (*path_params, "name"), [
                op("get", "watch", f"watch{base}", f"watch changes to an object of kind "
                   f"{kind.kind}", WATCH_EVENT, _LIST_PARAMS, watch=True)])
            if kind.namespaced:
                self.add_path(f"{root}/watch/{kind.plural}", (), [
                    op("get", "watchlist", f"watch{gv}{kind.kind}ListForAllNamespaces",
                       f"watch individual changes to a list of {kind.kind}", WATCH_EVENT,
                       _LIST_PARAMS, watch=True)])
        for sub in kind.subresources:
            self._subresource_paths(kind, sub, item, (*path_params, "name"), base, obj, gvk)

    def _subresource_paths(self, kind: Kind, sub: str, item: str, params: tuple[str, ...],
                           base: str, obj: str, gvk: dict[str, str]) -> None:
        title = sub[:1].upper() + sub[1:]
        sub_kind = _SUBRESOURCE_KINDS.get(sub)
        if sub_kind is not None:
            desc, (group, version, kind_name) = sub_kind
            self.type_meta.add(desc.full_name)
            target = self.message_definition(desc)
            self.add_gvk(target, group, version, kind_name)
            target_gvk = _gvk(group, version, kind_name)
        elif sub == "binding":
            binding = kind.message.DESCRIPTOR.file.message_types_by_name.get("Binding") \
                if kind.message is not None else None
            if binding is None:
                return
            self.type_meta.add(binding.full_name)
            target = self.message_definition(binding)
            self.add_gvk(target, "", "v1", "Binding")
            target_gvk = _gvk("", "v1", "Binding")
        else:
            target, target_gvk = obj, gvk
        path = f"{item}/{sub}"
        ops: list[_Op] = []
        if sub in ("status", "scale", "ephemeralcontainers", "resize", "approval"):
            ops = [
                _Op("get", "get", f"read{base}{title}", f"read {sub} of the specified "
                    f"{kind.kind}", target_gvk, target),
                _Op("put", "put", f"replace{base}{title}", f"replace {sub} of the specified "
                    f"{kind.kind}", target_gvk, target, _WRITE_PARAMS, target, ("200", "201")),
                _Op("patch", "patch", f"patch{base}{title}", f"partially update {sub} of the "
                    f"specified {kind.kind}", target_gvk, target, (*_WRITE_PARAMS, "force"),
                    PATCH_BODY, ("200", "201")),
            ]
        elif sub == "finalize":
            ops = [_Op("put", "put", f"replace{base}Finalize", f"replace finalize of the "
                       f"specified {kind.kind}", target_gvk, target, _WRITE_PARAMS, target,
                       ("200", "201"))]
        elif sub in ("binding", "eviction", "token"):
            ops = [_Op("post", "post", f"create{base}{title}", f"create {sub} of a {kind.kind}",
                       target_gvk, target, _WRITE_PARAMS, target, ("200", "201", "202"))]
        # log, exec, attach, portforward and proxy are connections, not objects:
        # kubectl finds them through discovery, so they are left out here.
        if ops:
            self.add_path(path, params, ops)

    def add_path(self, path: str, path_params: tuple[str, ...], ops: list[_Op]) -> None:
        if not ops:
            return
        item: Schema = {op.method: self.operation(op) for op in ops}
        params = [self.parameter(p, "path") for p in path_params]
        params.append(self.parameter("pretty", "query"))
        item["parameters"] = params
        self.paths[path] = item

    def parameter(self, name: str, where: str) -> Schema:
        type_, description = _PARAMS[name]
        param: Schema = {"description": description, "in": where, "name": name}
        if where == "path":
            param["required"] = True
        if self.v3:
            param["schema"] = {"type": type_, "uniqueItems": True}
        else:
            param["type"] = type_
            param["uniqueItems"] = True
        return param

    def operation(self, op: _Op) -> Schema:
        group = op.gvk["group"]
        tag_id = _group_id(group)
        tag = tag_id[:1].lower() + tag_id[1:] + "_" + op.gvk["version"]
        produces = [*PRODUCES, "application/json;stream=watch"] if op.watch else PRODUCES
        responses: Schema = {}
        for code in op.codes:
            text = {"200": "OK", "201": "Created", "202": "Accepted"}[code]
            if self.v3:
                responses[code] = {"description": text, "content": {
                    mt: {"schema": self.ref(op.response)} for mt in produces}}
            else:
                responses[code] = {"description": text, "schema": self.ref(op.response)}
        responses["401"] = {"description": "Unauthorized"}
        out: Schema = {
            "description": op.description,
            "operationId": op.operation_id,
            "tags": [tag],
        }
        params = [self.parameter(p, "query") for p in op.params]
        if self.v3:
            if params:
                out["parameters"] = params
            if op.body:
                types = PATCH_TYPES if op.method == "patch" else ["*/*"]
                out["requestBody"] = {"content": {t: {"schema": self.ref(op.body)}
                                                  for t in types}, "required": True}
        else:
            out["consumes"] = PATCH_TYPES if op.method == "patch" else ["*/*"]
            out["produces"] = produces
            out["schemes"] = ["https"]
            if op.body:
                params.insert(0, {"in": "body", "name": "body", "required": op.method != "delete",
                                  "schema": self.ref(op.body)})
            if params:
                out["parameters"] = params
        out["responses"] = responses
        out["x-kubernetes-action"] = op.action
        out["x-kubernetes-group-version-kind"] = dict(op.gvk)
        return out


def _is_list(desc: DescriptorT) -> bool:
    meta = desc.fields_by_name.get("metadata")
    return (meta is not None and meta.message_type is not None
            and meta.message_type.full_name == meta_v1.ListMeta.DESCRIPTOR.full_name
            and "items" in desc.fields_by_name)


_V2_UNSUPPORTED = ("nullable", "oneOf", "anyOf", "not")


def _v2_compatible(schema: Any) -> Any:
    """Drop the OpenAPI 3 constructs that Swagger 2.0 has no words for."""
    if isinstance(schema, dict):
        return {k: _v2_compatible(v) for k, v in schema.items() if k not in _V2_UNSUPPORTED}
    if isinstance(schema, list):
        return [_v2_compatible(v) for v in schema]
    return schema


def _served_group_versions(kinds: Iterable[Kind]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for kind in kinds:
        seen[(kind.group, kind.version)] = None
    return list(seen)


_INFO = {"title": "Kubernetes", "version": KUBERNETES_VERSION}
_SECURITY_SCHEME = {"in": "header", "name": "authorization", "type": "apiKey"}


def build_openapi_v2(kinds: Iterable[Kind], *,
                     custom_schemas: CustomSchemas | None = None) -> dict[str, Any]:
    """The Swagger 2.0 document of every served kind (``/openapi/v2``)."""
    kinds = list(kinds)
    builder = _Builder(v3=False, custom_schemas=custom_schemas or {})
    builder.extra_definitions(_served_group_versions(kinds))
    for kind in _sorted(kinds):
        builder.kind_paths(kind)
    return {
        "swagger": "2.0",
        "info": dict(_INFO),
        "paths": dict(sorted(builder.paths.items())),
        "definitions": builder.finish_definitions(),
        "securityDefinitions": {"BearerToken": dict(_SECURITY_SCHEME,
                                                    description="Bearer Token authentication")},
        "security": [{"BearerToken": []}],
    }


def build_openapi_v3_group(kinds: Iterable[Kind], group: str, version: str, *,
                           custom_schemas: CustomSchemas | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0 document of one group-version (``/openapi/v3/apis/<g>/<v>``):
    its paths and every schema they reach. Raises KeyError for a group-version
    that no kind is served in."""
    kinds = list(kinds)
    mine = [k for k in kinds if k.group == group and k.version == version]
    if not mine:
        raise KeyError(f"no kinds are served in {group_version_path(group, version)}")
    builder = _Builder(v3=True, custom_schemas=custom_schemas or {})
    builder.extra_definitions(_served_group_versions(kinds))
    for kind in _sorted(mine):
        builder.kind_paths(kind)
    return {
        "openapi": "3.0.0",
        "info": dict(_INFO),
        "paths": dict(sorted(builder.paths.items())),
        "components": {
            "schemas": _reachable(builder.finish_definitions(), builder.paths),
            "securitySchemes": {"BearerToken": dict(_SECURITY_SCHEME,
                                                    description="Bearer Token authentication")},
        },
        "security": [{"BearerToken": []}],
    }


def _reachable(definitions: dict[str, Schema], paths: dict[str, Schema]) -> dict[str, Schema]:
    """Only the schemas the paths reach (extra_definitions adds a few that a
    group's document may not need)."""
    keep: set[str] = set()
    todo = list(_refs(paths))
    while todo:
        name = todo.pop()
        if name in keep or name not in definitions:
            continue
        keep.add(name)
        todo.extend(_refs(definitions[name]))
    return {k: v for k, v in definitions.items() if k in keep}


def _refs(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item.rpartition("/")[2]
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def _sorted(kinds: Iterable[Kind]) -> list[Kind]:
    return sorted(kinds, key=lambda k: (k.group, k.version, k.plural))


def content_hash(body: bytes) -> str:
    """The hash in ``serverRelativeURL``: SHA-512, upper-case hex, as Kubernetes."""
    return hashlib.sha512(body).hexdigest().upper()


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def build_openapi_v3_index(kinds: Iterable[Kind], *,
                           custom_schemas: CustomSchemas | None = None) -> dict[str, Any]:
    """``/openapi/v3``: each group-version's path and its content-addressed URL."""
    kinds = list(kinds)
    paths: dict[str, Any] = {}
    for group, version in sorted(_served_group_versions(kinds)):
        body = _dumps(build_openapi_v3_group(kinds, group, version,
                                             custom_schemas=custom_schemas))
        key = group_version_path(group, version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={content_hash(body)}"}
    return {"paths": paths}


# ---------------------------------------------------------------------------
# Cached, serialized documents


def kinds_fingerprint(kinds: Iterable[Kind],
                      custom_schemas: CustomSchemas | None = None) -> str:
    """A digest of everything the documents depend on."""
    parts = sorted(
        (k.group, k.version, k.kind, k.plural, k.namespaced, tuple(sorted(k.verbs)),
         tuple(k.subresources), k.message.DESCRIPTOR.full_name if k.message else "")
        for k in kinds
    )
    digest = hashlib.sha256(repr(parts).encode())
    if custom_schemas:
        digest.update(_dumps(sorted((list(key), dict(value))
                                    for key, value in custom_schemas.items())))
    return digest.hexdigest()


@dataclass(frozen=True)
class _Generation:
    fingerprint: str
    v2: bytes
    index: bytes
    groups: dict[str, tuple[bytes, str]]  # "apis/apps/v1" -> (document, hash)


class OpenAPIDocuments:
    """Serialized OpenAPI documents, rebuilt only when the kind set changes.

    Call with the current kinds on each request: the fingerprint is cheap, the
    documents are built once per distinct kind set (the last one is kept).
    Thread-safe; building happens outside no lock twice for the same input.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: _Generation | None = None

    def _generation(self, kinds: Iterable[Kind],
                    custom_schemas: CustomSchemas | None) -> _Generation:
        kinds = list(kinds)
        fingerprint = kinds_fingerprint(kinds, custom_schemas)
        current = self._current
        if current is not None and current.fingerprint == fingerprint:
            return current
        with self._lock:
            current = self._current
            if current is not None and current.fingerprint == fingerprint:
                return current
            groups: dict[str, tuple[bytes, str]] = {}
            for group, version in sorted(_served_group_versions(kinds)):
                body = _dumps(build_openapi_v3_group(kinds, group, version,
                                                     custom_schemas=custom_schemas))
                groups[group_version_path(group, version)] = (body, content_hash(body))
            index = _dumps({"paths": {
                key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
                for key, (_, digest) in groups.items()}})
            v2 = _dumps(build_openapi_v2(kinds, custom_schemas=custom_schemas))
            current = _Generation(fingerprint, v2, index, groups)
            self._current = current
            return current

    def v2(self, kinds: Iterable[Kind], *, custom_schemas: CustomSchemas | None = None) -> bytes:
        """``/openapi/v2`` as JSON bytes."""
        return self._generation(kinds, custom_schemas).v2

    def v3_index(self, kinds: Iterable[Kind], *,
                 custom_schemas: CustomSchemas | None = None) -> bytes:
        """``/openapi/v3`` as JSON bytes."""
        return self._generation(kinds, custom_schemas).index

    def v3_group(self, kinds: Iterable[Kind], path: str, *,
                 custom_schemas: CustomSchemas | None = None) -> tuple[bytes, str] | None:
        """``/openapi/v3/<path>`` (``api/v1``, ``apis/apps/v1``) as (JSON bytes, hash),
        or None when no such group-version is served."""
        return self._generation(kinds, custom_schemas).groups.get(path.strip("/"))


# ---------------------------------------------------------------------------
# Facts: +optional (required), +listType/+listMapKey, +mapType/+structType
# markers of k8s.io/api, apimachinery meta/v1 and apiextensions-apiserver v1 at
# v0.32.9, per message (without the ``k8s.io.`` prefix): ``json=codes`` where
# R = required, L<type>[/<keys>] = list type and map keys, M/S<type> = map type;
# ``@`` is the message itself.

_SCHEMA_FACTS: dict[str, str] = {
    "api.admissionregistration.v1.AuditAnnotation": "key=R valueExpression=R",
    "api.admissionregistration.v1.ExpressionWarning": "fieldRef=R warning=R",
    "api.admissionregistration.v1.MatchCondition": "expression=R name=R",
    "api.admissionregistration.v1.MatchResources": (
        "@=Satomic excludeResourceRules=Latomic resourceRules=Latomic"
    ),
    "api.admissionregistration.v1.MutatingWebhook": (
        "admissionReviewVersions=R|Latomic clientConfig=R matchConditions=Lmap/name name=R "
        "rules=Latomic sideEffects=R"
    ),
    "api.admissionregistration.v1.MutatingWebhookConfiguration": "webhooks=Lmap/name",
    "api.admissionregistration.v1.MutatingWebhookConfigurationList": "items=R",
    "api.admissionregistration.v1.NamedRuleWithOperations": "@=Satomic resourceNames=Latomic",
    "api.admissionregistration.v1.ParamKind": "@=Satomic",
    "api.admissionregistration.v1.ParamRef": "@=Satomic",
    "api.admissionregistration.v1.Rule": "apiGroups=Latomic apiVersions=Latomic resources=Latomic",
    "api.admissionregistration.v1.RuleWithOperations": "operations=Latomic",
    "api.admissionregistration.v1.ServiceReference": "name=R namespace=R",
    "api.admissionregistration.v1.TypeChecking": "expressionWarnings=Latomic",
    "api.admissionregistration.v1.ValidatingAdmissionPolicyBindingList": "items=R",
    "api.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpec": "validationActions=Lset",
    "api.admissionregistration.v1.ValidatingAdmissionPolicyList": "items=R",
    "api.admissionregistration.v1.ValidatingAdmissionPolicySpec": (
        "auditAnnotations=Latomic matchConditions=Lmap/name validations=Latomic "
        "variables=Lmap/name"
    ),
    "api.admissionregistration.v1.ValidatingAdmissionPolicyStatus": "conditions=Lmap/type",
    "api.admissionregistration.v1.ValidatingWebhook": (
        "admissionReviewVersions=R|Latomic clientConfig=R matchConditions=Lmap/name name=R "
        "rules=Latomic sideEffects=R"
    ),
    "api.admissionregistration.v1.ValidatingWebhookConfiguration": "webhooks=Lmap/name",
    "api.admissionregistration.v1.ValidatingWebhookConfigurationList": "items=R",
    "api.admissionregistration.v1.Validation": "expression=R",
    "api.admissionregistration.v1.Variable": "@=Satomic expression=R name=R",
    "api.apps.v1.ControllerRevision": "revision=R",
    "api.apps.v1.ControllerRevisionList": "items=R",
    "api.apps.v1.DaemonSetCondition": "status=R type=R",
    "api.apps.v1.DaemonSetList": "items=R",
    "api.apps.v1.DaemonSetSpec": "selector=R template=R",
    "api.apps.v1.DaemonSetStatus": (
        "conditions=Lmap/type currentNumberScheduled=R desiredNumberScheduled=R "
        "numberMisscheduled=R numberReady=R"
    ),
    "api.apps.v1.DeploymentCondition": "status=R type=R",
    "api.apps.v1.DeploymentList": "items=R",
    "api.apps.v1.DeploymentSpec": "selector=R template=R",
    "api.apps.v1.DeploymentStatus": "conditions=Lmap/type",
    "api.apps.v1.ReplicaSetCondition": "status=R type=R",
    "api.apps.v1.ReplicaSetList": "items=R",
    "api.apps.v1.ReplicaSetSpec": "selector=R",
    "api.apps.v1.ReplicaSetStatus": "conditions=Lmap/type replicas=R",
    "api.apps.v1.StatefulSetCondition": "status=R type=R",
    "api.apps.v1.StatefulSetList": "items=R",
    "api.apps.v1.StatefulSetSpec": (
        "selector=R serviceName=R template=R volumeClaimTemplates=Latomic"
    ),
    "api.apps.v1.StatefulSetStatus": "conditions=Lmap/type replicas=R",
    "api.authentication.v1.TokenRequest": "spec=R",
    "api.authentication.v1.TokenRequestSpec": "audiences=R|Latomic",
    "api.authentication.v1.TokenRequestStatus": "expirationTimestamp=R token=R",
    "api.authentication.v1.TokenReview": "spec=R",
    "api.authentication.v1.TokenReviewSpec": "audiences=Latomic",
    "api.authentication.v1.TokenReviewStatus": "audiences=Latomic",
    "api.authentication.v1.UserInfo": "groups=Latomic",
    "api.authorization.v1.FieldSelectorAttributes": "requirements=Latomic",
    "api.authorization.v1.LabelSelectorAttributes": "requirements=Latomic",
    "api.authorization.v1.LocalSubjectAccessReview": "spec=R",
    "api.authorization.v1.NonResourceRule": "nonResourceURLs=Latomic verbs=R|Latomic",
    "api.authorization.v1.ResourceRule": (
        "apiGroups=Latomic resourceNames=Latomic resources=Latomic verbs=R|Latomic"
    ),
    "api.authorization.v1.SelfSubjectAccessReview": "spec=R",
    "api.authorization.v1.SelfSubjectRulesReview": "spec=R",
    "api.authorization.v1.SubjectAccessReview": "spec=R",
    "api.authorization.v1.SubjectAccessReviewSpec": "groups=Latomic",
    "api.authorization.v1.SubjectAccessReviewStatus": "allowed=R",
    "api.authorization.v1.SubjectRulesReviewStatus": (
        "incomplete=R nonResourceRules=R|Latomic resourceRules=R|Latomic"
    ),
    "api.autoscaling.v1.ContainerResourceMetricSource": "container=R name=R",
    "api.autoscaling.v1.ContainerResourceMetricStatus": "container=R currentAverageValue=R name=R",
    "api.autoscaling.v1.CrossVersionObjectReference": "@=Satomic kind=R name=R",
    "api.autoscaling.v1.ExternalMetricSource": "metricName=R",
    "api.autoscaling.v1.ExternalMetricStatus": "currentValue=R metricName=R",
    "api.autoscaling.v1.HorizontalPodAutoscalerCondition": "status=R type=R",
    "api.autoscaling.v1.HorizontalPodAutoscalerList": "items=R",
    "api.autoscaling.v1.HorizontalPodAutoscalerSpec": "maxReplicas=R scaleTargetRef=R",
    "api.autoscaling.v1.HorizontalPodAutoscalerStatus": "currentReplicas=R desiredReplicas=R",
    "api.autoscaling.v1.MetricSpec": "type=R",
    "api.autoscaling.v1.MetricStatus": "type=R",
    "api.autoscaling.v1.ObjectMetricSource": "metricName=R target=R targetValue=R",
    "api.autoscaling.v1.ObjectMetricStatus": "currentValue=R metricName=R target=R",
    "api.autoscaling.v1.PodsMetricSource": "metricName=R targetAverageValue=R",
    "api.autoscaling.v1.PodsMetricStatus": "currentAverageValue=R metricName=R",
    "api.autoscaling.v1.ResourceMetricSource": "name=R",
    "api.autoscaling.v1.ResourceMetricStatus": "currentAverageValue=R name=R",
    "api.autoscaling.v1.ScaleStatus": "replicas=R",
    "api.autoscaling.v2.ContainerResourceMetricSource": "container=R name=R target=R",
    "api.autoscaling.v2.ContainerResourceMetricStatus": "container=R current=R name=R",
    "api.autoscaling.v2.CrossVersionObjectReference": "kind=R name=R",
    "api.autoscaling.v2.ExternalMetricSource": "metric=R target=R",
    "api.autoscaling.v2.ExternalMetricStatus": "current=R metric=R",
    "api.autoscaling.v2.HPAScalingPolicy": "periodSeconds=R type=R value=R",
    "api.autoscaling.v2.HPAScalingRules": "policies=Latomic",
    "api.autoscaling.v2.HorizontalPodAutoscalerCondition": "status=R type=R",
    "api.autoscaling.v2.HorizontalPodAutoscalerList": "items=R",
    "api.autoscaling.v2.HorizontalPodAutoscalerSpec": (
        "maxReplicas=R metrics=Latomic scaleTargetRef=R"
    ),
    "api.autoscaling.v2.HorizontalPodAutoscalerStatus": (
        "conditions=Lmap/type currentMetrics=Latomic desiredReplicas=R"
    ),
    "api.autoscaling.v2.MetricIdentifier": "name=R",
    "api.autoscaling.v2.MetricSpec": "type=R",
    "api.autoscaling.v2.MetricStatus": "type=R",
    "api.autoscaling.v2.MetricTarget": "type=R",
    "api.autoscaling.v2.ObjectMetricSource": "describedObject=R metric=R target=R",
    "api.autoscaling.v2.ObjectMetricStatus": "current=R describedObject=R metric=R",
    "api.autoscaling.v2.PodsMetricSource": "metric=R target=R",
    "api.autoscaling.v2.PodsMetricStatus": "current=R metric=R",
    "api.autoscaling.v2.ResourceMetricSource": "name=R target=R",
    "api.autoscaling.v2.ResourceMetricStatus": "current=R name=R",
    "api.batch.v1.CronJobList": "items=R",
    "api.batch.v1.CronJobSpec": "jobTemplate=R schedule=R",
    "api.batch.v1.CronJobStatus": "active=Latomic",
    "api.batch.v1.JobCondition": "status=R type=R",
    "api.batch.v1.JobList": "items=R",
    "api.batch.v1.JobSpec": "template=R",
    "api.batch.v1.JobStatus": "conditions=Latomic",
    "api.batch.v1.PodFailurePolicy": "rules=R|Latomic",
    "api.batch.v1.PodFailurePolicyOnExitCodesRequirement": "operator=R values=R|Lset",
    "api.batch.v1.PodFailurePolicyOnPodConditionsPattern": "status=R type=R",
    "api.batch.v1.PodFailurePolicyRule": "action=R onPodConditions=Latomic",
    "api.batch.v1.SuccessPolicy": "rules=R|Latomic",
    "api.batch.v1.UncountedTerminatedPods": "failed=Lset succeeded=Lset",
    "api.certificates.v1.CertificateSigningRequest": "spec=R",
    "api.certificates.v1.CertificateSigningRequestCondition": "status=R type=R",
    "api.certificates.v1.CertificateSigningRequestList": "items=R",
    "api.certificates.v1.CertificateSigningRequestSpec": (
        "groups=Latomic request=R|Latomic signerName=R usages=Latomic"
    ),
    "api.certificates.v1.CertificateSigningRequestStatus": (
        "certificate=Latomic conditions=Lmap/type"
    ),
    "api.coordination.v1.LeaseList": "items=R",
    "api.core.v1.AWSElasticBlockStoreVolumeSource": "volumeID=R",
    "api.core.v1.AppArmorProfile": "type=R",
    "api.core.v1.AttachedVolume": "devicePath=R name=R",
    "api.core.v1.AvoidPods": "preferAvoidPods=Latomic",
    "api.core.v1.AzureDiskVolumeSource": "diskName=R diskURI=R",
    "api.core.v1.AzureFilePersistentVolumeSource": "secretName=R shareName=R",
    "api.core.v1.AzureFileVolumeSource": "secretName=R shareName=R",
    "api.core.v1.Binding": "target=R",
    "api.core.v1.CSIPersistentVolumeSource": "driver=R volumeHandle=R",
    "api.core.v1.CSIVolumeSource": "driver=R",
    "api.core.v1.Capabilities": "add=Latomic drop=Latomic",
    "api.core.v1.CephFSPersistentVolumeSource": "monitors=R|Latomic",
    "api.core.v1.CephFSVolumeSource": "monitors=R|Latomic",
    "api.core.v1.CinderPersistentVolumeSource": "volumeID=R",
    "api.core.v1.CinderVolumeSource": "volumeID=R",
    "api.core.v1.ClusterTrustBundleProjection": "path=R",
    "api.core.v1.ComponentCondition": "status=R type=R",
    "api.core.v1.ComponentStatus": "conditions=Lmap/type",
    "api.core.v1.ComponentStatusList": "items=R",
    "api.core.v1.ConfigMapKeySelector": "@=Satomic key=R",
    "api.core.v1.ConfigMapList": "items=R",
    "api.core.v1.ConfigMapNodeConfigSource": "kubeletConfigKey=R name=R namespace=R",
    "api.core.v1.ConfigMapProjection": "items=Latomic",
    "api.core.v1.ConfigMapVolumeSource": "items=Latomic",
    "api.core.v1.Container": (
        "args=Latomic command=Latomic env=Lmap/name envFrom=Latomic name=R "
        "ports=Lmap/containerPort,protocol resizePolicy=Latomic volumeDevices=Lmap/devicePath "
        "volumeMounts=Lmap/mountPath"
    ),
    "api.core.v1.ContainerImage": "names=Latomic",
    "api.core.v1.ContainerPort": "containerPort=R",
    "api.core.v1.ContainerResizePolicy": "resourceName=R restartPolicy=R",
    "api.core.v1.ContainerStateTerminated": "exitCode=R",
    "api.core.v1.ContainerStatus": (
        "allocatedResourcesStatus=Lmap/name image=R imageID=R name=R ready=R restartCount=R "
        "volumeMounts=Lmap/mountPath"
    ),
    "api.core.v1.DaemonEndpoint": "Port=R",
    "api.core.v1.DownwardAPIProjection": "items=Latomic",
    "api.core.v1.DownwardAPIVolumeFile": "path=R",
    "api.core.v1.DownwardAPIVolumeSource": "items=Latomic",
    "api.core.v1.EndpointAddress": "@=Satomic ip=R",
    "api.core.v1.EndpointPort": "@=Satomic port=R",
    "api.core.v1.EndpointSubset": "addresses=Latomic notReadyAddresses=Latomic ports=Latomic",
    "api.core.v1.Endpoints": "subsets=Latomic",
    "api.core.v1.EndpointsList": "items=R",
    "api.core.v1.EnvVar": "name=R",
    "api.core.v1.EphemeralContainerCommon": (
        "args=Latomic command=Latomic env=Lmap/name envFrom=Latomic name=R "
        "ports=Lmap/containerPort,protocol resizePolicy=Latomic volumeDevices=Lmap/devicePath "
        "volumeMounts=Lmap/mountPath"
    ),
    "api.core.v1.Event": "involvedObject=R metadata=R",
    "api.core.v1.EventList": "items=R",
    "api.core.v1.ExecAction": "command=Latomic",
    "api.core.v1.FCVolumeSource": "targetWWNs=Latomic wwids=Latomic",
    "api.core.v1.FlexPersistentVolumeSource": "driver=R",
    "api.core.v1.FlexVolumeSource": "driver=R",
    "api.core.v1.GCEPersistentDiskVolumeSource": "pdName=R",
    "api.core.v1.GRPCAction": "port=R",
    "api.core.v1.GitRepoVolumeSource": "repository=R",
    "api.core.v1.GlusterfsPersistentVolumeSource": "endpoints=R path=R",
    "api.core.v1.GlusterfsVolumeSource": "endpoints=R path=R",
    "api.core.v1.HTTPGetAction": "httpHeaders=Latomic port=R",
    "api.core.v1.HTTPHeader": "name=R value=R",
    "api.core.v1.HostAlias": "hostnames=Latomic ip=R",
    "api.core.v1.HostIP": "ip=R",
    "api.core.v1.HostPathVolumeSource": "path=R",
    "api.core.v1.ISCSIPersistentVolumeSource": "iqn=R lun=R portals=Latomic targetPortal=R",
    "api.core.v1.ISCSIVolumeSource": "iqn=R lun=R portals=Latomic targetPortal=R",
    "api.core.v1.KeyToPath": "key=R path=R",
    "api.core.v1.LimitRangeItem": "type=R",
    "api.core.v1.LimitRangeList": "items=R",
    "api.core.v1.LimitRangeSpec": "limits=R|Latomic",
    "api.core.v1.LinuxContainerUser": "gid=R supplementalGroups=Latomic uid=R",
    "api.core.v1.LoadBalancerIngress": "ports=Latomic",
    "api.core.v1.LoadBalancerStatus": "ingress=Latomic",
    "api.core.v1.LocalObjectReference": "@=Satomic",
    "api.core.v1.LocalVolumeSource": "path=R",
    "api.core.v1.ModifyVolumeStatus": "status=R",
    "api.core.v1.NFSVolumeSource": "path=R server=R",
    "api.core.v1.NamespaceCondition": "status=R type=R",
    "api.core.v1.NamespaceList": "items=R",
    "api.core.v1.NamespaceSpec": "finalizers=Latomic",
    "api.core.v1.NamespaceStatus": "conditions=Lmap/type",
    "api.core.v1.NodeAddress": "address=R type=R",
    "api.core.v1.NodeAffinity": "preferredDuringSchedulingIgnoredDuringExecution=Latomic",
    "api.core.v1.NodeCondition": "status=R type=R",
    "api.core.v1.NodeList": "items=R",
    "api.core.v1.NodeSelector": "@=Satomic nodeSelectorTerms=R|Latomic",
    "api.core.v1.NodeSelectorRequirement": "key=R operator=R values=Latomic",
    "api.core.v1.NodeSelectorTerm": "@=Satomic matchExpressions=Latomic matchFields=Latomic",
    "api.core.v1.NodeSpec": "podCIDRs=Lset taints=Latomic",
    "api.core.v1.NodeStatus": (
        "addresses=Lmap/type conditions=Lmap/type images=Latomic runtimeHandlers=Latomic "
        "volumesAttached=Latomic volumesInUse=Latomic"
    ),
    "api.core.v1.NodeSystemInfo": (
        "architecture=R bootID=R containerRuntimeVersion=R kernelVersion=R kubeProxyVersion=R "
        "kubeletVersion=R machineID=R operatingSystem=R osImage=R systemUUID=R"
    ),
    "api.core.v1.ObjectFieldSelector": "@=Satomic fieldPath=R",
    "api.core.v1.ObjectReference": "@=Satomic",
    "api.core.v1.PersistentVolumeClaimCondition": "status=R type=R",
    "api.core.v1.PersistentVolumeClaimList": "items=R",
    "api.core.v1.PersistentVolumeClaimSpec": "accessModes=Latomic",
    "api.core.v1.PersistentVolumeClaimStatus": (
        "accessModes=Latomic allocatedResourceStatuses=Mgranular conditions=Lmap/type"
    ),
    "api.core.v1.PersistentVolumeClaimTemplate": "spec=R",
    "api.core.v1.PersistentVolumeClaimVolumeSource": "claimName=R",
    "api.core.v1.PersistentVolumeList": "items=R",
    "api.core.v1.PersistentVolumeSpec": (
        "accessModes=Latomic claimRef=Sgranular mountOptions=Latomic"
    ),
    "api.core.v1.PhotonPersistentDiskVolumeSource": "pdID=R",
    "api.core.v1.PodAffinity": (
        "preferredDuringSchedulingIgnoredDuringExecution=Latomic "
        "requiredDuringSchedulingIgnoredDuringExecution=Latomic"
    ),
    "api.core.v1.PodAffinityTerm": (
        "matchLabelKeys=Latomic mismatchLabelKeys=Latomic namespaces=Latomic topologyKey=R"
    ),
    "api.core.v1.PodAntiAffinity": (
        "preferredDuringSchedulingIgnoredDuringExecution=Latomic "
        "requiredDuringSchedulingIgnoredDuringExecution=Latomic"
    ),
    "api.core.v1.PodCondition": "status=R type=R",
    "api.core.v1.PodDNSConfig": "nameservers=Latomic options=Latomic searches=Latomic",
    "api.core.v1.PodExecOptions": "command=R|Latomic",
    "api.core.v1.PodIP": "ip=R",
    "api.core.v1.PodList": "items=R",
    "api.core.v1.PodOS": "name=R",
    "api.core.v1.PodPortForwardOptions": "ports=Latomic",
    "api.core.v1.PodReadinessGate": "conditionType=R",
    "api.core.v1.PodResourceClaim": "name=R",
    "api.core.v1.PodResourceClaimStatus": "name=R",
    "api.core.v1.PodSchedulingGate": "name=R",
    "api.core.v1.PodSecurityContext": "supplementalGroups=Latomic sysctls=Latomic",
    "api.core.v1.PodSpec": (
        "containers=R|Lmap/name ephemeralContainers=Lmap/name hostAliases=Lmap/ip "
        "imagePullSecrets=Lmap/name initContainers=Lmap/name nodeSelector=Matomic "
        "readinessGates=Latomic resourceClaims=Lmap/name schedulingGates=Lmap/name "
        "tolerations=Latomic topologySpreadConstraints=Lmap/topologyKey,whenUnsatisfiable "
        "volumes=Lmap/name"
    ),
    "api.core.v1.PodStatus": (
        "conditions=Lmap/type containerStatuses=Latomic ephemeralContainerStatuses=Latomic "
        "hostIPs=Latomic initContainerStatuses=Latomic podIPs=Lmap/ip "
        "resourceClaimStatuses=Lmap/name"
    ),
    "api.core.v1.PodTemplateList": "items=R",
    "api.core.v1.PortStatus": "port=R protocol=R",
    "api.core.v1.PortworxVolumeSource": "volumeID=R",
    "api.core.v1.PreferAvoidPodsEntry": "podSignature=R",
    "api.core.v1.PreferredSchedulingTerm": "preference=R weight=R",
    "api.core.v1.ProjectedVolumeSource": "sources=Latomic",
    "api.core.v1.QuobyteVolumeSource": "registry=R volume=R",
    "api.core.v1.RBDPersistentVolumeSource": "image=R monitors=R|Latomic",
    "api.core.v1.RBDVolumeSource": "image=R monitors=R|Latomic",
    "api.core.v1.RangeAllocation": "data=R range=R",
    "api.core.v1.ReplicationControllerCondition": "status=R type=R",
    "api.core.v1.ReplicationControllerList": "items=R",
    "api.core.v1.ReplicationControllerSpec": "selector=Matomic",
    "api.core.v1.ReplicationControllerStatus": "conditions=Lmap/type replicas=R",
    "api.core.v1.ResourceClaim": "name=R",
    "api.core.v1.ResourceFieldSelector": "@=Satomic resource=R",
    "api.core.v1.ResourceHealth": "resourceID=R",
    "api.core.v1.ResourceQuotaList": "items=R",
    "api.core.v1.ResourceQuotaSpec": "scopes=Latomic",
    "api.core.v1.ResourceRequirements": "claims=Lmap/name",
    "api.core.v1.ResourceStatus": "name=R resources=Lmap/resourceID",
    "api.core.v1.ScaleIOPersistentVolumeSource": "gateway=R secretRef=R system=R",
    "api.core.v1.ScaleIOVolumeSource": "gateway=R secretRef=R system=R",
    "api.core.v1.ScopeSelector": "@=Satomic matchExpressions=Latomic",
    "api.core.v1.ScopedResourceSelectorRequirement": "operator=R scopeName=R values=Latomic",
    "api.core.v1.SeccompProfile": "type=R",
    "api.core.v1.SecretKeySelector": "@=Satomic key=R",
    "api.core.v1.SecretList": "items=R",
    "api.core.v1.SecretProjection": "items=Latomic",
    "api.core.v1.SecretReference": "@=Satomic",
    "api.core.v1.SecretVolumeSource": "items=Latomic",
    "api.core.v1.ServiceAccount": "imagePullSecrets=Latomic secrets=Lmap/name",
    "api.core.v1.ServiceAccountList": "items=R",
    "api.core.v1.ServiceAccountTokenProjection": "path=R",
    "api.core.v1.ServiceList": "items=R",
    "api.core.v1.ServicePort": "port=R",
    "api.core.v1.ServiceSpec": (
        "clusterIPs=Latomic externalIPs=Latomic ipFamilies=Latomic "
        "loadBalancerSourceRanges=Latomic ports=Lmap/port,protocol selector=Matomic"
    ),
    "api.core.v1.ServiceStatus": "conditions=Lmap/type",
    "api.core.v1.SleepAction": "seconds=R",
    "api.core.v1.Sysctl": "name=R value=R",
    "api.core.v1.TCPSocketAction": "port=R",
    "api.core.v1.Taint": "effect=R key=R",
    "api.core.v1.TopologySelectorLabelRequirement": "key=R values=R|Latomic",
    "api.core.v1.TopologySelectorTerm": "@=Satomic matchLabelExpressions=Latomic",
    "api.core.v1.TopologySpreadConstraint": (
        "matchLabelKeys=Latomic maxSkew=R topologyKey=R whenUnsatisfiable=R"
    ),
    "api.core.v1.TypedLocalObjectReference": "@=Satomic kind=R name=R",
    "api.core.v1.TypedObjectReference": "kind=R name=R",
    "api.core.v1.Volume": "name=R",
    "api.core.v1.VolumeDevice": "devicePath=R name=R",
    "api.core.v1.VolumeMount": "mountPath=R name=R",
    "api.core.v1.VolumeMountStatus": "mountPath=R name=R",
    "api.core.v1.VsphereVirtualDiskVolumeSource": "volumePath=R",
    "api.core.v1.WeightedPodAffinityTerm": "podAffinityTerm=R weight=R",
    "api.discovery.v1.Endpoint": "addresses=R|Lset",
    "api.discovery.v1.EndpointHints": "forZones=Latomic",
    "api.discovery.v1.EndpointPort": "@=Satomic",
    "api.discovery.v1.EndpointSlice": "addressType=R endpoints=R|Latomic ports=Latomic",
    "api.discovery.v1.EndpointSliceList": "items=R",
    "api.discovery.v1.ForZone": "name=R",
    "api.events.v1.Event": "eventTime=R",
    "api.events.v1.EventList": "items=R",
    "api.events.v1.EventSeries": "count=R lastObservedTime=R",
    "api.flowcontrol.v1.FlowDistinguisherMethod": "type=R",
    "api.flowcontrol.v1.FlowSchemaList": "items=R",
    "api.flowcontrol.v1.FlowSchemaSpec": "priorityLevelConfiguration=R rules=Latomic",
    "api.flowcontrol.v1.FlowSchemaStatus": "conditions=Lmap/type",
    "api.flowcontrol.v1.GroupSubject": "name=R",
    "api.flowcontrol.v1.LimitResponse": "type=R",
    "api.flowcontrol.v1.NonResourcePolicyRule": "nonResourceURLs=R|Lset verbs=R|Lset",
    "api.flowcontrol.v1.PolicyRulesWithSubjects": (
        "nonResourceRules=Latomic resourceRules=Latomic subjects=R|Latomic"
    ),
    "api.flowcontrol.v1.PriorityLevelConfigurationList": "items=R",
    "api.flowcontrol.v1.PriorityLevelConfigurationReference": "name=R",
    "api.flowcontrol.v1.PriorityLevelConfigurationSpec": "type=R",
    "api.flowcontrol.v1.PriorityLevelConfigurationStatus": "conditions=Lmap/type",
    "api.flowcontrol.v1.ResourcePolicyRule": (
        "apiGroups=R|Lset namespaces=Lset resources=R|Lset verbs=R|Lset"
    ),
    "api.flowcontrol.v1.ServiceAccountSubject": "name=R namespace=R",
    "api.flowcontrol.v1.Subject": "kind=R",
    "api.flowcontrol.v1.UserSubject": "name=R",
    "api.networking.v1.HTTPIngressPath": "backend=R pathType=R",
    "api.networking.v1.HTTPIngressRuleValue": "paths=R|Latomic",
    "api.networking.v1.IPBlock": "cidr=R except=Latomic",
    "api.networking.v1.IngressClassList": "items=R",
    "api.networking.v1.IngressClassParametersReference": "kind=R name=R",
    "api.networking.v1.IngressList": "items=R",
    "api.networking.v1.IngressLoadBalancerIngress": "ports=Latomic",
    "api.networking.v1.IngressLoadBalancerStatus": "ingress=Latomic",
    "api.networking.v1.IngressPortStatus": "port=R protocol=R",
    "api.networking.v1.IngressServiceBackend": "name=R",
    "api.networking.v1.IngressSpec": "rules=Latomic tls=Latomic",
    "api.networking.v1.IngressTLS": "hosts=Latomic",
    "api.networking.v1.NetworkPolicyEgressRule": "ports=Latomic to=Latomic",
    "api.networking.v1.NetworkPolicyIngressRule": "from=Latomic ports=Latomic",
    "api.networking.v1.NetworkPolicyList": "items=R",
    "api.networking.v1.NetworkPolicySpec": (
        "egress=Latomic ingress=Latomic podSelector=R policyTypes=Latomic"
    ),
    "api.networking.v1.ServiceBackendPort": "@=Satomic",
    "api.node.v1.RuntimeClass": "handler=R",
    "api.node.v1.RuntimeClassList": "items=R",
    "api.node.v1.Scheduling": "nodeSelector=Matomic tolerations=Latomic",
    "api.policy.v1.PodDisruptionBudgetList": "items=R",
    "api.policy.v1.PodDisruptionBudgetStatus": (
        "conditions=Lmap/type currentHealthy=R desiredHealthy=R disruptionsAllowed=R "
        "expectedPods=R"
    ),
    "api.rbac.v1.AggregationRule": "clusterRoleSelectors=Latomic",
    "api.rbac.v1.ClusterRole": "rules=Latomic",
    "api.rbac.v1.ClusterRoleBinding": "roleRef=R subjects=Latomic",
    "api.rbac.v1.ClusterRoleBindingList": "items=R",
    "api.rbac.v1.ClusterRoleList": "items=R",
    "api.rbac.v1.PolicyRule": (
        "apiGroups=Latomic nonResourceURLs=Latomic resourceNames=Latomic resources=Latomic "
        "verbs=R|Latomic"
    ),
    "api.rbac.v1.Role": "rules=Latomic",
    "api.rbac.v1.RoleBinding": "roleRef=R subjects=Latomic",
    "api.rbac.v1.RoleBindingList": "items=R",
    "api.rbac.v1.RoleList": "items=R",
    "api.rbac.v1.RoleRef": "@=Satomic apiGroup=R kind=R name=R",
    "api.rbac.v1.Subject": "@=Satomic kind=R name=R",
    "api.scheduling.v1.PriorityClass": "value=R",
    "api.scheduling.v1.PriorityClassList": "items=R",
    "api.storage.v1.CSIDriver": "spec=R",
    "api.storage.v1.CSIDriverList": "items=R",
    "api.storage.v1.CSIDriverSpec": "tokenRequests=Latomic volumeLifecycleModes=Lset",
    "api.storage.v1.CSINode": "spec=R",
    "api.storage.v1.CSINodeDriver": "name=R nodeID=R topologyKeys=Latomic",
    "api.storage.v1.CSINodeList": "items=R",
    "api.storage.v1.CSINodeSpec": "drivers=R|Lmap/name",
    "api.storage.v1.CSIStorageCapacity": "storageClassName=R",
    "api.storage.v1.CSIStorageCapacityList": "items=R",
    "api.storage.v1.StorageClass": "allowedTopologies=Latomic mountOptions=Latomic provisioner=R",
    "api.storage.v1.StorageClassList": "items=R",
    "api.storage.v1.TokenRequest": "audience=R",
    "api.storage.v1.VolumeAttachment": "spec=R",
    "api.storage.v1.VolumeAttachmentList": "items=R",
    "api.storage.v1.VolumeAttachmentSpec": "attacher=R nodeName=R source=R",
    "api.storage.v1.VolumeAttachmentStatus": "attached=R",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.ConversionRequest": (
        "desiredAPIVersion=R objects=R|Latomic uid=R"
    ),
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.ConversionResponse": (
        "convertedObjects=R|Latomic result=R uid=R"
    ),
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceColumnDefinition": (
        "jsonPath=R name=R type=R"
    ),
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceConversion": "strategy=R",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition": "spec=R",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionCondition": (
        "status=R type=R"
    ),
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionList": "items=R",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionNames": (
        "categories=Latomic kind=R plural=R shortNames=Latomic"
    ),
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec": (
        "group=R names=R scope=R versions=R|Latomic"
    ),
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus": (
        "conditions=Lmap/type storedVersions=Latomic"
    ),
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion": (
        "additionalPrinterColumns=Latomic name=R selectableFields=Latomic served=R storage=R"
    ),
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceSubresourceScale": (
        "specReplicasPath=R statusReplicasPath=R"
    ),
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps": (
        "allOf=Latomic anyOf=Latomic enum=Latomic oneOf=Latomic required=Latomic "
        "x-kubernetes-list-map-keys=Latomic x-kubernetes-validations=Lmap/rule"
    ),
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.SelectableField": "jsonPath=R",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.ServiceReference": "name=R namespace=R",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.ValidationRule": "rule=R",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.WebhookConversion": (
        "conversionReviewVersions=R|Latomic"
    ),
    "apimachinery.pkg.apis.meta.v1.APIGroup": (
        "name=R serverAddressByClientCIDRs=Latomic versions=R|Latomic"
    ),
    "apimachinery.pkg.apis.meta.v1.APIGroupList": "groups=R|Latomic",
    "apimachinery.pkg.apis.meta.v1.APIResource": (
        "categories=Latomic kind=R name=R namespaced=R shortNames=Latomic singularName=R "
        "verbs=R"
    ),
    "apimachinery.pkg.apis.meta.v1.APIResourceList": "groupVersion=R resources=R|Latomic",
    "apimachinery.pkg.apis.meta.v1.APIVersions": (
        "serverAddressByClientCIDRs=R|Latomic versions=R|Latomic"
    ),
    "apimachinery.pkg.apis.meta.v1.ApplyOptions": "dryRun=Latomic fieldManager=R force=R",
    "apimachinery.pkg.apis.meta.v1.Condition": (
        "lastTransitionTime=R message=R reason=R status=R type=R"
    ),
    "apimachinery.pkg.apis.meta.v1.CreateOptions": "dryRun=Latomic",
    "apimachinery.pkg.apis.meta.v1.DeleteOptions": "dryRun=Latomic",
    "apimachinery.pkg.apis.meta.v1.FieldSelectorRequirement": "key=R operator=R values=Latomic",
    "apimachinery.pkg.apis.meta.v1.GroupVersionForDiscovery": "groupVersion=R version=R",
    "apimachinery.pkg.apis.meta.v1.LabelSelector": "@=Satomic matchExpressions=Latomic",
    "apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement": "key=R operator=R values=Latomic",
    "apimachinery.pkg.apis.meta.v1.List": "items=R",
    "apimachinery.pkg.apis.meta.v1.ObjectMeta": (
        "finalizers=Lset managedFields=Latomic ownerReferences=Lmap/uid"
    ),
    "apimachinery.pkg.apis.meta.v1.OwnerReference": "@=Satomic apiVersion=R kind=R name=R uid=R",
    "apimachinery.pkg.apis.meta.v1.PartialObjectMetadataList": "items=R",
    "apimachinery.pkg.apis.meta.v1.PatchOptions": "dryRun=Latomic",
    "apimachinery.pkg.apis.meta.v1.RootPaths": "paths=R|Latomic",
    "apimachinery.pkg.apis.meta.v1.ServerAddressByClientCIDR": "clientCIDR=R serverAddress=R",
    "apimachinery.pkg.apis.meta.v1.Status": "details=Latomic",
    "apimachinery.pkg.apis.meta.v1.StatusDetails": "causes=Latomic",
    "apimachinery.pkg.apis.meta.v1.Table": "columnDefinitions=R|Latomic rows=R|Latomic",
    "apimachinery.pkg.apis.meta.v1.TableColumnDefinition": (
        "description=R format=R name=R priority=R type=R"
    ),
    "apimachinery.pkg.apis.meta.v1.TableRow": "conditions=Latomic",
    "apimachinery.pkg.apis.meta.v1.TableRowCondition": "status=R type=R",
    "apimachinery.pkg.apis.meta.v1.UpdateOptions": "dryRun=Latomic",
}
