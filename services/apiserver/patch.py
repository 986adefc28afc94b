"""The three patch formats of the Kubernetes API, as pure functions over JSON values.

- ``apply_json_patch``: RFC 6902 (``application/json-patch+json``).
- ``apply_merge_patch``: RFC 7386 (``application/merge-patch+json``).
- ``apply_strategic_merge_patch``: Kubernetes' strategic merge patch
  (``application/strategic-merge-patch+json``), what ``kubectl apply``,
  ``kubectl edit`` and plain ``kubectl patch`` send.

Values are what ``json.loads`` returns (dict, list, str, int, float, bool,
None). Inputs are never mutated; every function returns a new value.

Strategic merge patch differs from merge patch in lists: a field may declare
``patchStrategy: merge`` with a ``patchMergeKey`` (containers by ``name``,
container ports by ``containerPort``, ...). Such lists are merged item by item
on the key; lists of scalars with strategy merge are merged as sets; all other
lists are replaced. The strategy of each field comes from a ``PatchSchema``;
``schema_for(descriptor)`` builds one from the generated protobuf descriptors
and the Go-tag facts in ``pilothouse.api.k8s_json_fields``. Directives inside
the patch (``$patch``, ``$retainKeys``, ``$deleteFromPrimitiveList/<field>``,
``$setElementOrder/<field>``) steer deletion, replacement and ordering, with
the semantics of Kubernetes' ``strategicpatch`` package (server side only: the
client computes the three-way patch from the last-applied annotation; the
server just applies it).

Where a list item's order is not fixed by ``$setElementOrder``, the result
follows Kubernetes exactly: items named in the patch in patch order,
interleaved with server-only items in their server order; a new item with no
order information goes before the server-only items, as it does in Kubernetes.

Errors are ``PatchError`` with an HTTP ``code`` matching what the Kubernetes
apiserver answers: 400 (BadRequest) for a patch document of the wrong shape,
422 (Invalid) for a patch that cannot be applied to this object. A failed
JSON patch ``test`` operation is ``PatchConflict``, also 422 as in
Kubernetes (its name says what happened, not the status code).

Deliberate differences from Kubernetes, each for a clearer answer:
- ``$patch: merge`` on a map is accepted as the explicit default (Kubernetes
  rejects it as an unknown patch type); in a list it is refused as Kubernetes
  does.
- A map with ``$patch: replace`` for a field absent from the object sets the
  field to the map's content (Kubernetes drops the field).
- Unknown ``$``-keys on a typed object are refused as unknown directives
  (Kubernetes stores them and strict decoding then calls them unknown fields);
  errors Kubernetes answers with 500 (missing merge key, mixed list element
  types) are 422 here.
- JSON patch array indexes must be RFC 6902 indexes (no negative indexes).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pilothouse.api.codec import (
    DURATION,
    EXT_JSON,
    FIELDS_V1,
    INLINE,
    INT_OR_STRING,
    MICRO_TIME,
    PROPS_OR_ARRAY,
    PROPS_OR_BOOL,
    PROPS_OR_STRINGS,
    QUANTITY,
    QUANTITY_VALUE,
    RAW_EXTENSION,
    STRING_LISTS,
    TIME,
)
from pilothouse.api.k8s_json_fields import FIELDS, PATCH

JSON = Any

__all__ = [
    "PatchConflict",
    "PatchError",
    "PatchSchema",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
    "create_merge_patch",
    "schema_for",
]


# ---------------------------------------------------------------------------
# Errors


class PatchError(ValueError):
    """A patch that is malformed (code 400) or cannot be applied (code 422)."""

    def __init__(self, message: str, *, code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    @property
    def reason(self) -> str:
        """The Kubernetes ``Status.reason`` that goes with ``code``."""
        return "BadRequest" if self.code == 400 else "Invalid"


class PatchConflict(PatchError):
    """A JSON patch ``test`` operation failed. Kubernetes answers 422 for it."""


def _bad_request(message: str) -> PatchError:
    return PatchError(message, code=400)


def _show(value: JSON) -> str:
    try:
        text = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _guard_depth(fn: Callable[[], JSON]) -> JSON:
    try:
        return fn()
    except RecursionError:
        raise _bad_request("patch or object nests too deeply") from None


# ---------------------------------------------------------------------------
# JSON equality and kinds (JSON's, not Python's: True is not 1)


def _kind(value: JSON) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    raise _bad_request(f"not a JSON value: {type(value).__name__}")


def _json_equal(a: JSON, b: JSON) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        return False
    if ka == "map":
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if ka == "list":
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ---------------------------------------------------------------------------
# RFC 6902 JSON patch

_INDEX = re.compile(r"0|[1-9][0-9]*")
_MISSING = object()


def _parse_pointer(pointer: JSON, what: str) -> list[str]:
    if not isinstance(pointer, str):
        raise PatchError(f"{what} must be a string JSON pointer, got {_show(pointer)}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f'{what} {pointer!r} is not a JSON pointer: it must start with "/"')
    tokens = []
    for raw in pointer[1:].split("/"):
        if re.search(r"~(?![01])", raw):
            raise PatchError(f"{what} {pointer!r}: '~' must be followed by 0 or 1")
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tokens


def _list_index(tokens: list[str], token: str, length: int, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return length
    if not _INDEX.fullmatch(token):
        raise PatchError(f"invalid array index {token!r} in {_pointer(tokens)!r}")
    index = int(token)
    limit = length if allow_end else length - 1
    if index > limit:
        raise PatchError(f"array index {index} out of bounds in {_pointer(tokens)!r}")
    return index


def _pointer(tokens: list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _get(doc: JSON, tokens: list[str]) -> JSON:
    """The value at tokens, or _MISSING."""
    node = doc
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                return _MISSING
            node = node[token]
        elif isinstance(node, list):
            if not _INDEX.fullmatch(token) or int(token) >= len(node):
                return _MISSING
            node = node[int(token)]
        else:
            return _MISSING
    return node


class _JsonPatcher:
    def __init__(self, doc: JSON) -> None:
        self.doc = doc

    def parent(self, op: str, tokens: list[str]) -> JSON:
        parent = _get(self.doc, tokens[:-1])
        if parent is _MISSING or not isinstance(parent, dict | list):
            raise PatchError(
                f"{op} operation does not apply: doc is missing path: {_pointer(tokens)!r}"
            )
        return parent

    def add(self, tokens: list[str], value: JSON) -> None:
        if not tokens:
            self.doc = value
            return
        parent = self.parent("add", tokens)
        if isinstance(parent, dict):
            parent[tokens[-1]] = value
        else:
            parent.insert(_list_index(tokens, tokens[-1], len(parent), allow_end=True), value)

    def remove(self, tokens: list[str], op: str = "remove") -> JSON:
        if not tokens:
            raise PatchError(f"{op} operation does not apply: cannot remove the whole document")
        parent = self.parent(op, tokens)
        if isinstance(parent, dict):
            if tokens[-1] not in parent:
                raise PatchError(
                    f"{op} operation does not apply: doc is missing path: {_pointer(tokens)!r}"
                )
            return parent.pop(tokens[-1])
        return parent.pop(_list_index(tokens, tokens[-1], len(parent), allow_end=False))

    def replace(self, tokens: list[str], value: JSON) -> None:
        if not tokens:
            self.doc = value
            return
        parent = self.parent("replace", tokens)
        if isinstance(parent, dict):
            if tokens[-1] not in parent:
                raise PatchError(
                    f"replace operation does not apply: doc is missing key: {_pointer(tokens)!r}"
                )
            parent[tokens[-1]] = value
        else:
            parent[_list_index(tokens, tokens[-1], len(parent), allow_end=False)] = value

    def value_at(self, op: str, tokens: list[str]) -> JSON:
        value = _get(self.doc, tokens)
        if value is _MISSING:
            raise PatchError(
                f"{op} operation does not apply: doc is missing from path: {_pointer(tokens)!r}"
            )
        return value


_OPS = ("add", "remove", "replace", "move", "copy", "test")


def apply_json_patch(doc: JSON, patch: JSON) -> JSON:
    """Apply an RFC 6902 JSON patch (a list of operations) to doc.

    A patch that is not a list of objects is a 400; an operation that does
    not apply (missing path, bad index, unknown op, missing value) is a 422
    ``PatchError``; a failed ``test`` is a 422 ``PatchConflict``. The
    operations apply in order, all or nothing."""
    if not isinstance(patch, list):
        raise _bad_request(f"a JSON patch must be a list of operations, got {_kind_name(patch)}")
    return _guard_depth(lambda: _apply_json_patch(copy.deepcopy(doc), patch))


def _kind_name(value: JSON) -> str:
    try:
        return {"map": "an object", "list": "a list", "null": "null"}.get(
            _kind(value), f"a {_kind(value)}"
        )
    except PatchError:
        return type(value).__name__


def _apply_json_patch(doc: JSON, patch: list[JSON]) -> JSON:
    patcher = _JsonPatcher(doc)
    for n, operation in enumerate(patch):
        if not isinstance(operation, dict):
            raise _bad_request(
                f"JSON patch operation {n} must be an object, got {_kind_name(operation)}"
            )
        op = operation.get("op")
        if op not in _OPS:
            raise PatchError(
                f"JSON patch operation {n}: unknown op {_show(op)} (want one of {', '.join(_OPS)})"
            )
        path = _parse_pointer(operation.get("path"), f'operation {n} ({op}): "path"')
        needs_value = op in ("add", "replace", "test")
        if needs_value and "value" not in operation:
            raise PatchError(f'JSON patch operation {n} ({op}): missing "value"')
        value = copy.deepcopy(operation.get("value"))
        if op == "add":
            patcher.add(path, value)
        elif op == "remove":
            patcher.remove(path)
        elif op == "replace":
            patcher.replace(path, value)
        elif op in ("move", "copy"):
            source = _parse_pointer(operation.get("from"), f'operation {n} ({op}): "from"')
            if op == "move":
                if path[: len(source)] == source and len(path) > len(source):
                    raise PatchError(
                        f"move operation does not apply: cannot move "
                        f"{_pointer(source)!r} into its own child {_pointer(path)!r}"
                    )
                if path == source:
                    continue
                patcher.value_at(op, source)
                moved = patcher.remove(source, "move")
                patcher.add(path, moved)
            else:
                patcher.add(path, copy.deepcopy(patcher.value_at(op, source)))
        else:  # test
            actual = _get(patcher.doc, path)
            if actual is _MISSING or not _json_equal(actual, value):
                raise PatchConflict(f"testing value {_pointer(path)!r} failed: test failed")
    return patcher.doc


# ---------------------------------------------------------------------------
# RFC 7386 merge patch


def apply_merge_patch(doc: JSON, patch: JSON) -> JSON:
    """Apply an RFC 7386 merge patch: objects merge recursively, ``null``
    deletes a key, anything else (lists too) replaces.

    As in Kubernetes, the patch itself must be a JSON object (400 otherwise).
    A non-object doc is treated as ``{}`` (RFC 7386). Works for any JSON, so
    it is the path for custom resources, which have no strategic schema."""
    if not isinstance(patch, dict):
        raise _bad_request(f"a merge patch must be a JSON object, got {_kind_name(patch)}")
    return _guard_depth(lambda: _merge_patch(doc, patch))


def _merge_patch(target: JSON, patch: JSON) -> JSON:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def create_merge_patch(original: JSON, modified: JSON) -> JSON:
    """The RFC 7386 merge patch that turns original into modified.

    Exact when modified holds no ``null`` object values (merge patch cannot
    say "set to null"). Useful for tests and for clients computing a patch."""
    if not (isinstance(original, dict) and isinstance(modified, dict)):
        return copy.deepcopy(modified)
    patch: dict[str, JSON] = {}
    for key in original:
        if key not in modified:
            patch[key] = None
    for key, value in modified.items():
        if key not in original:
            patch[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(original[key], dict):
            sub = create_merge_patch(original[key], value)
            if sub:
                patch[key] = sub
        elif not _json_equal(original[key], value):
            patch[key] = copy.deepcopy(value)
    return patch


# ---------------------------------------------------------------------------
# Strategic merge patch: the schema


class PatchSchema(Protocol):
    """How strategic merge patch learns the patch strategy of each field.

    A schema describes one JSON value: an object (a message), a list, or a
    map (an object with free keys). ``None`` wherever a schema is expected
    means "unknown": objects then merge as in merge patch and lists are
    replaced."""

    def child(self, key: str) -> PatchSchema | None:
        """Schema of the value of field ``key`` of this object (for a map:
        the schema of every value). Lists get a schema whose ``items()`` is
        the element schema."""
        ...

    def items(self) -> PatchSchema | None:
        """Schema of the elements of this list, or of the values of this map."""
        ...

    def strategy(self, key: str) -> tuple[str, str]:
        """(patchStrategy, patchMergeKey) of field ``key``: e.g.
        ("merge", "name"), ("merge,retainKeys", "name"), ("retainKeys", ""),
        ("replace", ""), or ("", "") for none."""
        ...

    def has_field(self, key: str) -> bool:
        """Whether ``key`` is a field of this object (always true for maps).
        Used to tell an unknown ``$directive`` from a field named ``$ref``."""
        ...


# Messages whose JSON is a scalar or free-form JSON: no schema below them.
_OPAQUE = frozenset(
    {
        QUANTITY,
        QUANTITY_VALUE,
        INT_OR_STRING,
        TIME,
        MICRO_TIME,
        DURATION,
        FIELDS_V1,
        RAW_EXTENSION,
        EXT_JSON,
        PROPS_OR_ARRAY,
        PROPS_OR_BOOL,
        PROPS_OR_STRINGS,
        *STRING_LISTS,
    }
)


@dataclass(frozen=True)
class _ListSchema:
    element: PatchSchema | None

    def child(self, key: str) -> PatchSchema | None:
        return None

    def items(self) -> PatchSchema | None:
        return self.element

    def strategy(self, key: str) -> tuple[str, str]:
        return ("", "")

    def has_field(self, key: str) -> bool:
        return False


@dataclass(frozen=True)
class _MapSchema:
    value: PatchSchema | None

    def child(self, key: str) -> PatchSchema | None:
        return self.value

    def items(self) -> PatchSchema | None:
        return self.value

    def strategy(self, key: str) -> tuple[str, str]:
        return ("", "")

    def has_field(self, key: str) -> bool:
        return True


@dataclass(eq=False, repr=False)
class _MessageSchema:
    """One protobuf message, its JSON field names (inline fields flattened)
    and their patch strategies. Children are built on first use because the
    types are recursive (JSONSchemaProps)."""

    descriptor: Any
    fields: dict[str, Any] = field(default_factory=dict)  # json name -> FieldDescriptor
    strategies: dict[str, tuple[str, str]] = field(default_factory=dict)
    children: dict[str, PatchSchema | None] = field(default_factory=dict)

    def child(self, key: str) -> PatchSchema | None:
        if key not in self.children:
            fd = self.fields.get(key)
            self.children[key] = None if fd is None else _field_schema(fd)
        return self.children[key]

    def items(self) -> PatchSchema | None:
        return None

    def strategy(self, key: str) -> tuple[str, str]:
        return self.strategies.get(key, ("", ""))

    def has_field(self, key: str) -> bool:
        return key in self.fields

    def __repr__(self) -> str:
        return f"<PatchSchema {self.descriptor.full_name}>"


_schemas: dict[str, _MessageSchema | None] = {}


def _field_schema(fd: Any) -> PatchSchema | None:
    message = fd.message_type
    if message is not None and message.GetOptions().map_entry:
        return _MapSchema(_value_schema(message.fields_by_name["value"]))
    if fd.is_repeated:
        return _ListSchema(_value_schema(fd))
    return _value_schema(fd)


def _value_schema(fd: Any) -> PatchSchema | None:
    if fd.message_type is None:
        return None
    return _message_schema(fd.message_type)


def _message_schema(descriptor: Any) -> _MessageSchema | None:
    name = descriptor.full_name
    if name in _OPAQUE:
        return None
    if name not in _schemas:
        schema = _MessageSchema(descriptor)
        _schemas[name] = schema  # before filling: recursive types refer to it
        _collect_fields(descriptor, schema)
    return _schemas[name]


def _collect_fields(descriptor: Any, schema: _MessageSchema) -> None:
    facts = FIELDS.get(descriptor.full_name, {})
    for fd in descriptor.fields:
        json_name, flags = facts.get(fd.name, (fd.json_name, 0))
        if flags & INLINE and fd.message_type is not None:
            _collect_fields(fd.message_type, schema)
        else:
            schema.fields[json_name] = fd
    schema.strategies.update(PATCH.get(descriptor.full_name, {}))


def schema_for(message_descriptor: Any) -> PatchSchema:
    """The strategic-merge schema of a built-in kind, from its protobuf
    descriptor (``core_pb2.Pod.DESCRIPTOR``). Cached per message type.

    Custom resources have no descriptor and no schema: Kubernetes refuses
    strategic merge patch for them (415), so the caller answers that and
    offers merge patch and JSON patch instead."""
    schema = _message_schema(message_descriptor)
    if schema is None:
        raise ValueError(f"{message_descriptor.full_name} is not an object type")
    return schema


# ---------------------------------------------------------------------------
# Strategic merge patch: applying it

_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM = "$deleteFromPrimitiveList"
_SET_ORDER = "$setElementOrder"
_STRATEGIES = frozenset({"merge", "replace", "retainKeys"})


def apply_strategic_merge_patch(doc: JSON, patch: JSON, schema: PatchSchema | None) -> JSON:
    """Apply a Kubernetes strategic merge patch to the object doc.

    doc and patch must be JSON objects (400 otherwise). ``null`` deletes a
    field; lists follow their field's patch strategy; the directives
    ``$patch``, ``$retainKeys``, ``$deleteFromPrimitiveList/<f>`` and
    ``$setElementOrder/<f>`` apply as in Kubernetes. Result has no
    directives and no nulls from the patch left in it."""
    if not isinstance(patch, dict):
        raise _bad_request(
            f"a strategic merge patch must be a JSON object, got {_kind_name(patch)}"
        )
    if not isinstance(doc, dict):
        raise _bad_request(f"cannot strategic-merge into {_kind_name(doc)}: want an object")
    return _guard_depth(lambda: _merge_map(copy.deepcopy(doc), patch, schema, ""))


def _strategy(schema: PatchSchema | None, key: str) -> tuple[frozenset[str], str]:
    if schema is None:
        return frozenset(), ""
    raw, merge_key = schema.strategy(key)
    strategies = frozenset(s for s in raw.split(",") if s)
    unknown = strategies - _STRATEGIES
    if unknown or {"merge", "replace"} <= strategies:
        raise PatchError(f"unexpected patch strategy {raw!r} for field {key!r}")
    return strategies, merge_key


def _child(schema: PatchSchema | None, key: str) -> PatchSchema | None:
    return None if schema is None else schema.child(key)


def _items(schema: PatchSchema | None) -> PatchSchema | None:
    return None if schema is None else schema.items()


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_directive(key: str) -> bool:
    return key in (_PATCH, _RETAIN_KEYS) or key.startswith((_DELETE_FROM, _SET_ORDER))


def _directive_target(key: str, prefix: str, path: str) -> str:
    head, sep, rest = key.partition("/")
    if head != prefix or not sep or not rest:
        what = "primitive list" if prefix == _DELETE_FROM else "setElementOrder list"
        raise _bad_request(
            f"invalid patch format of {what}: {_at(path, key)!r} must be {prefix}/<field>"
        )
    return rest


def _merge_map(
    original: dict[str, JSON], patch: dict[str, JSON], schema: PatchSchema | None, path: str
) -> dict[str, JSON]:
    """Merge patch into original (which this call owns and mutates)."""
    patch = dict(patch)
    if _PATCH in patch:
        directive = patch.pop(_PATCH)
        if directive == "replace":
            return _merge_map({}, patch, schema, path)
        if directive == "delete":
            return {}
        if directive != "merge":
            raise _bad_request(
                f"unknown patch type: {_show(directive)} in map at "
                f"{path or '<root>'} (want replace, delete or merge)"
            )

    if _RETAIN_KEYS in patch:
        _retain_keys(original, patch, path)

    for key in [k for k in patch if k.startswith(_SET_ORDER)]:
        _set_element_order(original, patch, key, schema, path)

    for key, value in patch.items():
        if key.startswith(_DELETE_FROM):
            _delete_from_primitive_list(original, key, value, path)
            continue
        if key.startswith("$") and schema is not None and not schema.has_field(key):
            raise _bad_request(
                f"unknown directive {_at(path, key)!r} (want $patch, $retainKeys, "
                "$deleteFromPrimitiveList/<field> or $setElementOrder/<field>)"
            )
        if value is None:
            original.pop(key, None)
            continue
        _merge_field(original, key, value, schema, _at(path, key))
    return original


def _merge_field(
    original: dict[str, JSON], key: str, value: JSON, schema: PatchSchema | None, path: str
) -> None:
    strategies, merge_key = _strategy(schema, key)
    child = _child(schema, key)
    current = original.get(key)
    if current is None or _kind(current) != _kind(value):
        # Nothing to merge with: the patch value becomes the field.
        original.pop(key, None)
        fresh = _fresh(value, child, strategies, merge_key, path)
        if fresh is not _MISSING:
            original[key] = fresh
    elif isinstance(value, dict):
        if "replace" in strategies:
            original[key] = _clean(value)
        else:
            original[key] = _merge_map(current, value, child, path)
    elif isinstance(value, list):
        if "merge" in strategies:
            original[key] = _merge_list(current, value, _items(child), merge_key, path)
        else:
            original[key] = _clean(value)
    else:
        original[key] = value


def _fresh(
    value: JSON, schema: PatchSchema | None, strategies: frozenset[str], merge_key: str, path: str
) -> JSON:
    """A patch value for a field the object does not have (yet), directives
    applied against nothing. _MISSING: leave the field out."""
    if isinstance(value, dict):
        if value.get(_PATCH) == "delete":
            return _MISSING
        if "replace" in strategies:
            return _clean(value)
        return _merge_map({}, value, schema, path)
    if isinstance(value, list):
        if "merge" in strategies:
            return _merge_list([], value, _items(schema), merge_key, path)
        return _clean(value)
    return value


def _clean(value: JSON) -> JSON:
    """A patch value taken whole: no nulls in objects, no directives."""
    if isinstance(value, dict):
        return {
            k: _clean(v)
            for k, v in value.items()
            if v is not None and not _is_directive(k) and not _has_patch_marker(v)
        }
    if isinstance(value, list):
        return [_clean(v) for v in value if not _has_patch_marker(v)]
    return value


def _has_patch_marker(value: JSON) -> bool:
    return isinstance(value, dict) and _PATCH in value


def _retain_keys(original: dict[str, JSON], patch: dict[str, JSON], path: str) -> None:
    keep = patch.pop(_RETAIN_KEYS)
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise _bad_request(
            f"invalid patch format of retainKeys at {path or '<root>'}: "
            "$retainKeys must be a list of field names"
        )
    allowed = set(keep)
    for key, value in patch.items():
        if value is None or _is_directive(key):
            continue
        if key not in allowed:
            raise _bad_request(
                f"invalid patch format of retainKeys at {path or '<root>'}: "
                f"field {key!r} is patched but not listed in $retainKeys"
            )
    for key in list(original):
        if key not in allowed:
            del original[key]


def _delete_from_primitive_list(
    original: dict[str, JSON], key: str, value: JSON, path: str
) -> None:
    target = _directive_target(key, _DELETE_FROM, path)
    if not isinstance(value, list):
        raise _bad_request(
            f"invalid patch format of primitive list: {_at(path, key)!r} must be a list"
        )
    current = original.get(target)
    if not isinstance(current, list):
        return  # nothing to delete from (Kubernetes: a no-op)
    if any(isinstance(v, dict | list) for v in (*current, *value)):
        raise _bad_request(
            f"invalid patch format of primitive list: {_at(path, target)!r} "
            "is not a list of scalars"
        )
    original[target] = [v for v in current if not any(_json_equal(v, d) for d in value)]


def _set_element_order(
    original: dict[str, JSON],
    patch: dict[str, JSON],
    key: str,
    schema: PatchSchema | None,
    path: str,
) -> None:
    order = patch.pop(key)
    target = _directive_target(key, _SET_ORDER, path)
    where = _at(path, target)
    if not isinstance(order, list):
        raise _bad_request(
            f"invalid patch format of setElementOrder list: {_at(path, key)!r} must be a list"
        )
    strategies, merge_key = _strategy(schema, target)
    current = original.get(target)
    patch_list = patch.pop(target, None)
    if current is not None and not isinstance(current, list):
        raise PatchError(f"{where}: $setElementOrder names a field that is not a list")
    if patch_list is not None and not isinstance(patch_list, list):
        raise _bad_request(f"{where}: patch value must be a list when $setElementOrder is given")
    if merge_key:
        _require_maps(order, f"$setElementOrder/{target}")
    _check_order(patch_list or [], order, merge_key, where)

    if current is None and patch_list is None:
        return
    server_order = current or []
    if patch_list is None:
        merged = current
    elif current is None:
        merged = _fresh(patch_list, _child(schema, target), strategies, merge_key, where)
    elif "merge" in strategies:
        merged, server_order = _merge_list_with_view(
            current, patch_list, _items(_child(schema, target)), merge_key, where
        )
    else:
        merged = _clean(patch_list)
    if not merged:
        original[target] = merged
        return
    _element_kind([*(current or []), *(patch_list or [])], where)
    ident = _identity(merge_key, where)
    wanted = [ident(o) for o in order]
    named = [m for m in merged if _index_of(wanted, ident(m)) >= 0]
    server_only = [m for m in merged if _index_of(wanted, ident(m)) < 0]
    original[target] = _normalize_order(named, server_only, order, server_order, ident)


def _check_order(patch_list: list[JSON], order: list[JSON], merge_key: str, where: str) -> None:
    """The patch list's items must appear in $setElementOrder, in that order."""
    if not patch_list or not order:
        return
    ident = _identity(merge_key, where)
    items = [p for p in patch_list if not _has_patch_marker(p)]
    position = 0
    for item in items:
        value = ident(item)
        while position < len(order) and not _json_equal(ident(order[position]), value):
            position += 1
        if position == len(order):
            raise _bad_request(
                f"{where}: the order in the patch list {_show(patch_list)} doesn't match "
                f"the $setElementOrder list {_show(order)}"
            )
        position += 1


def _identity(merge_key: str, where: str) -> Callable[[JSON], JSON]:
    if not merge_key:
        return lambda item: item

    def key_of(item: JSON) -> JSON:
        if not isinstance(item, dict):
            raise PatchError(
                f"{where}: expected an object in a list merged by {merge_key!r}, got {_show(item)}"
            )
        if merge_key not in item:
            raise PatchError(
                f"{where}: map: {_show(item)} does not contain declared merge key: {merge_key}"
            )
        return item[merge_key]

    return key_of


def _require_maps(items: Iterable[JSON], where: str) -> None:
    for item in items:
        if not isinstance(item, dict):
            raise PatchError(f"{where}: expected a list of objects, got item {_show(item)}")


def _element_kind(items: list[JSON], where: str) -> str:
    kinds = {_kind(i) for i in items}
    if "list" in kinds:
        raise PatchError(f"{where}: lists of lists are not supported")
    if len(kinds) > 1:
        raise PatchError(f"{where}: list element types are not identical: {_show(items)}")
    return kinds.pop() if kinds else "null"


def _index_of(values: list[JSON], value: JSON) -> int:
    for i, v in enumerate(values):
        if _json_equal(v, value):
            return i
    return -1


def _merge_list(
    current: list[JSON],
    patch: list[JSON],
    item_schema: PatchSchema | None,
    merge_key: str,
    where: str,
) -> list[JSON]:
    """Merge a list with patchStrategy merge (items by merge_key, or scalars
    as a set), then order it the way Kubernetes does."""
    return _merge_list_with_view(current, patch, item_schema, merge_key, where)[0]


def _merge_list_with_view(
    current: list[JSON],
    patch: list[JSON],
    item_schema: PatchSchema | None,
    merge_key: str,
    where: str,
) -> tuple[list[JSON], list[JSON]]:
    """The merged list, and the server order a later `$setElementOrder`
    ranks server-only items by.

    That server order is Kubernetes' observable behaviour: the live list with
    deleted items taken out, followed by as many of the newly added items as
    were deleted (Kubernetes deletes and appends in place within the live
    list's storage, so those additions become part of the order it consults;
    its test tables pin the resulting orders down)."""
    if not current and not patch:
        return current, current
    if _element_kind([*current, *patch], where) != "map":
        merged: list[JSON] = []
        for value in (*current, *patch):
            if _index_of(merged, value) < 0:
                merged.append(value)
        in_patch = [m for m in merged if _index_of(patch, m) >= 0]
        server_only = [m for m in merged if _index_of(patch, m) < 0]
        return _normalize_order(in_patch, server_only, patch, current, lambda v: v), current

    if not merge_key:
        raise PatchError(f"{where}: cannot merge lists of objects without a patch merge key")
    ident = _identity(merge_key, where)
    live = len(current)
    current, patch, replace = _list_directives(current, patch, ident, where)
    if replace:
        current = [_merge_map({}, r, item_schema, where) for r in patch]
        patch = []
    deleted = 0 if replace else live - len(current)
    merged = list(current)
    added: list[JSON] = []
    for item in patch:
        wanted = ident(item)
        for i, existing in enumerate(merged):
            if (
                isinstance(existing, dict)
                and merge_key in existing
                and _json_equal(existing[merge_key], wanted)
            ):
                merged[i] = _merge_map(existing, item, item_schema, f"{where}[{_show(wanted)}]")
                break
        else:
            merged.append(_merge_map({}, item, item_schema, f"{where}[{_show(wanted)}]"))
            added.append(merged[-1])
    keys = [ident(p) for p in patch]
    named = [m for m in merged if _index_of(keys, ident(m)) >= 0]
    server_only = [m for m in merged if _index_of(keys, ident(m)) < 0]
    result = _normalize_order(named, server_only, patch, current, ident)
    return result, [*current, *added[:deleted]]


def _list_directives(
    current: list[JSON], patch: list[JSON], ident: Callable[[JSON], JSON], where: str
) -> tuple[list[JSON], list[JSON], bool]:
    """Apply the `$patch` items of a merging list. Returns (current without
    the deleted items, the ordinary patch items, whether `$patch: replace`
    asked for the ordinary items to replace the whole list)."""
    remaining = []
    replace = False
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"{where}: expected an object in a merging list, got {_show(item)}")
        if _PATCH not in item:
            remaining.append(item)
            continue
        directive = item[_PATCH]
        if directive == "delete":
            doomed = ident(item)
            current = [c for c in current if not _json_equal(ident(c), doomed)]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _bad_request(f"{where}: merging lists cannot yet be specified in the patch")
        else:
            raise _bad_request(
                f"{where}: unknown patch type: {_show(directive)} in list item "
                f"{_show(item)} (want replace or delete)"
            )
    return current, remaining, replace


def _normalize_order(
    named: list[JSON],
    server_only: list[JSON],
    patch_order: list[JSON],
    server_order: list[JSON],
    ident: Callable[[JSON], JSON],
) -> list[JSON]:
    """Items named by the patch in patch order, server-only items in server
    order, interleaved: a server-only item goes before a named item when
    both are in the server list and it came first there."""
    patch_ids = [ident(p) for p in patch_order if not _has_patch_marker(p)]
    server_ids = [ident(s) for s in server_order]

    def by(order: list[JSON]) -> Callable[[JSON], int]:
        def rank(item: JSON) -> int:
            i = _index_of(order, ident(item))
            return i if i >= 0 else len(order)

        return rank

    named = sorted(named, key=by(patch_ids))
    server_only = sorted(server_only, key=by(server_ids))
    result: list[JSON] = []
    i = j = 0
    while i < len(server_only) or j < len(named):
        if j >= len(named):
            result.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            result.append(named[j])
            j += 1
        else:
            left = _index_of(server_ids, ident(server_only[i]))
            right = _index_of(server_ids, ident(named[j]))
            if left >= 0 and right >= 0 and left < right:
                result.append(server_only[i])
                i += 1
            else:
                result.append(named[j])
                j += 1
    return result
