"""Objects as bytes and as documents: storage values, protobuf frames, JSON, YAML.

Storage values carry their encoding, as in Kubernetes' own etcd layout:

- built-in kinds: ``k8s\\x00`` + a ``runtime.Unknown`` envelope whose
  ``typeMeta`` names apiVersion/kind and whose ``raw`` is the object's
  protobuf bytes — the same framing as the ``application/vnd.kubernetes.protobuf``
  content type, so one codec serves storage and the wire;
- custom resources: the object's JSON.

``decode_value`` tells them apart by the prefix, so the registry, the watch
cache and storage treat both alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import yaml
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from yaml.nodes import MappingNode

from pilothouse.api.codec import DecodeError, FieldError, dict_to_message, message_to_dict
from pilothouse.api.kinds import Kind, KindRegistry
from pilothouse.gen.k8s.runtime import runtime_pb2

PROTOBUF_MAGIC = b"k8s\x00"
PROTOBUF_CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# An object at the edge: a message for built-in kinds, a dict for custom resources.
Object = Message | dict[str, Any]


class SerializationError(ValueError):
    """Bytes or a document that cannot become an object of the expected kind."""


# ---------------------------------------------------------------------------
# Protobuf framing (storage and the wire)


def encode_protobuf(kind: Kind, msg: Message) -> bytes:
    envelope = runtime_pb2.Unknown()
    envelope.typeMeta.apiVersion = kind.api_version
    envelope.typeMeta.kind = kind.kind
    # Deterministic: map entries (labels, annotations, resources) in key order. The
    # registry skips a write whose bytes equal the stored ones; with maps in hash
    # order, an unchanged status update became a write, an event, a resync and
    # another write — a controller loop that never rests.
    envelope.raw = msg.SerializeToString(deterministic=True)
    envelope.contentEncoding = ""
    envelope.contentType = ""
    return PROTOBUF_MAGIC + envelope.SerializeToString()


def decode_protobuf_envelope(data: bytes) -> runtime_pb2.Unknown:
    if not data.startswith(PROTOBUF_MAGIC):
        raise SerializationError("not a Kubernetes protobuf frame (missing k8s\\0 prefix)")
    envelope = runtime_pb2.Unknown()
    try:
        envelope.ParseFromString(data[len(PROTOBUF_MAGIC):])
    except ProtobufDecodeError as exc:
        raise SerializationError(f"corrupt protobuf envelope: {exc}") from None
    return envelope


def decode_protobuf(kind: Kind, data: bytes) -> Message:
    envelope = decode_protobuf_envelope(data)
    meta = envelope.typeMeta
    if (meta.kind and meta.kind != kind.kind) or (
        meta.apiVersion and meta.apiVersion != kind.api_version
    ):
        raise SerializationError(
            f"expected {kind.kind}, got {envelope.typeMeta.apiVersion}/{envelope.typeMeta.kind}"
        )
    msg = kind.new()
    try:
        msg.ParseFromString(envelope.raw)
    except ProtobufDecodeError as exc:
        raise SerializationError(f"corrupt {kind.kind} protobuf: {exc}") from None
    return msg


# ---------------------------------------------------------------------------
# Storage values


def encode_value(kind: Kind, obj: Object) -> bytes:
    """The storage value of ``obj``."""
    if isinstance(obj, Message):
        return encode_protobuf(kind, obj)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def decode_value(kind: Kind, data: bytes) -> Object:
    """An object back from its storage value (either encoding)."""
    if data.startswith(PROTOBUF_MAGIC):
        return decode_protobuf(kind, data)
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SerializationError(f"corrupt JSON value: {exc}") from None
    if kind.message is not None:
        return object_from_dict(kind, obj, strict=False)
    if not isinstance(obj, dict):
        raise SerializationError("stored custom resource is not a JSON object")
    return obj


# ---------------------------------------------------------------------------
# JSON documents (the REST edge)


def object_to_dict(kind: Kind, obj: Object) -> dict[str, Any]:
    """The JSON document of ``obj``: apiVersion and kind first, as Kubernetes writes."""
    if isinstance(obj, dict):
        out = {"apiVersion": kind.api_version, "kind": kind.kind}
        out.update((k, v) for k, v in obj.items() if k not in out)
        return out
    out = {"apiVersion": kind.api_version, "kind": kind.kind}
    out.update(message_to_dict(obj))
    return out


def object_from_dict(kind: Kind, data: Any, *, strict: bool = True) -> Message:
    """A built-in object from its JSON document (apiVersion/kind checked, then dropped)."""
    if not isinstance(data, dict):
        raise DecodeError([FieldError("", "expected a JSON object")])
    body = dict(data)
    api_version = body.pop("apiVersion", None)
    kind_name = body.pop("kind", None)
    if api_version is not None and api_version != kind.api_version:
        raise DecodeError([FieldError("apiVersion", f"expected {kind.api_version!r}, "
                                                    f"got {api_version!r}")])
    if kind_name is not None and kind_name != kind.kind:
        raise DecodeError([FieldError("kind", f"expected {kind.kind!r}, got {kind_name!r}")])
    if kind.message is None:
        raise TypeError(f"{kind.kind} is a custom resource")
    return dict_to_message(kind.message, body, strict=strict)


def dumps(document: Any) -> bytes:
    """Compact JSON, as the apiserver writes it."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ManifestLoader(_BaseLoader):
    """YAML as Kubernetes reads it (sigs.k8s.io/yaml turns YAML into JSON first).

    - timestamps stay strings (``2024-01-01T00:00:00Z`` is a string in JSON);
    - mapping keys become strings (``1: a`` has the key ``"1"``);
    - a key given twice is an error, as in Kubernetes' strict decoding.
    """


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int | float):
        return json.dumps(key)
    raise yaml.constructor.ConstructorError(None, None, f"unsupported mapping key {key!r}")


def _construct_mapping(loader: Any, node: MappingNode) -> dict[str, Any]:
    loader.flatten_mapping(node)
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = _json_key(loader.construct_object(key_node, deep=True))
        if key in out:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f'duplicate field "{key}"', key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_ManifestLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def load_documents(text: str | bytes) -> Iterator[Any]:
    """The documents of a YAML (or JSON) stream; empty documents are skipped."""
    try:
        for doc in yaml.load_all(text, Loader=_ManifestLoader):  # a SafeLoader subclass
            if doc is not None:
                yield doc
    except yaml.YAMLError as exc:
        raise SerializationError(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise SerializationError("invalid YAML: nested too deeply") from None


def load_manifest(registry: KindRegistry, text: str | bytes) -> list[tuple[Kind, Message]]:
    """Decode every document of a manifest of built-in kinds into (kind, object), strictly.

    Errors name the document (its index, kind and name) and the field path.
    A custom resource is an error here; ``load_objects`` accepts them too.
    """
    out: list[tuple[Kind, Message]] = []
    for kind, obj in load_objects(registry, text):
        if not isinstance(obj, Message):
            raise SerializationError(f"{kind.kind} is a custom resource: use load_objects")
        out.append((kind, obj))
    return out


def load_objects(registry: KindRegistry, text: str | bytes) -> list[tuple[Kind, Object]]:
    """Like ``load_manifest``, but custom resources come back as their JSON dicts
    (not yet validated against their CRD's schema: that is the registry's job)."""
    out: list[tuple[Kind, Object]] = []
    for index, doc in enumerate(load_documents(text)):
        if not isinstance(doc, dict):
            raise SerializationError(f"document {index}: expected an object")
        api_version, kind_name = doc.get("apiVersion"), doc.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind_name, str):
            raise SerializationError(f"document {index}: apiVersion and kind are required")
        kind = registry.by_kind(api_version, kind_name)
        if kind is None:
            raise SerializationError(
                f'document {index}: no matches for kind "{kind_name}" in version "{api_version}"'
            )
        metadata = doc.get("metadata")
        name = metadata.get("name", "") if isinstance(metadata, dict) else ""
        if kind.message is None:
            if metadata is not None and not isinstance(metadata, dict):
                raise SerializationError(
                    f"document {index} ({kind_name}): metadata: expected object")
            out.append((kind, doc))
            continue
        try:
            out.append((kind, object_from_dict(kind, doc)))
        except DecodeError as exc:
            raise SerializationError(f"document {index} ({kind_name} {name!r}): {exc}") from None
    return out
