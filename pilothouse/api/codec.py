"""Kubernetes JSON <-> protobuf messages.

Objects live as the generated Kubernetes protobuf messages; JSON (and YAML)
exists only at the REST edge. This module converts between the two the way
Kubernetes' own JSON serializer does:

- JSON names and inlined structs come from the Go json tags
  (``k8s_json_fields.FIELDS``): ``Volume.volumeSource`` is inline, so
  ``emptyDir`` appears in the volume object itself.
- Output omits what Go's ``omitempty`` omits: unset fields, empty lists and
  maps, and zero scalars of non-pointer ``omitempty`` fields. Zero values of
  pointer fields (``replicas: 0``) are kept, because for them zero is a choice.
- Union-typed JSON (int-or-string, quantities, times, durations, raw JSON,
  the CRD schema unions, byte fields in base64) has one converter each.
- Decoding is strict by default: unknown fields are collected and reported
  together with their paths (``spec.containers[0].imagee``), as Kubernetes'
  strict field validation does; a wrong type fails at once naming the path and
  the expected type. Never a traceback.

Per message type the converters are compiled once into small closures and
cached, because list encoding is a hot path.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from pilothouse.api.k8s_json_fields import FIELDS
from pilothouse.api.quantity import QuantityError, canonical

# Flags in k8s_json_fields.FIELDS.
OMITEMPTY = 1
POINTER = 2
INLINE = 4

_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_EXT = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1."
QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
QUANTITY_VALUE = "k8s.io.apimachinery.pkg.api.resource.QuantityValue"
INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
TIME = _META + "Time"
MICRO_TIME = _META + "MicroTime"
DURATION = _META + "Duration"
FIELDS_V1 = _META + "FieldsV1"
RAW_EXTENSION = "k8s.io.apimachinery.pkg.runtime.RawExtension"
EXT_JSON = _EXT + "JSON"
PROPS_OR_ARRAY = _EXT + "JSONSchemaPropsOrArray"
PROPS_OR_BOOL = _EXT + "JSONSchemaPropsOrBool"
PROPS_OR_STRINGS = _EXT + "JSONSchemaPropsOrStringArray"
# Go named slices ([]string) that protobuf wraps in a message with `items`.
STRING_LISTS = frozenset(
    {
        _META + "Verbs",
        "k8s.io.api.authentication.v1.ExtraValue",
        "k8s.io.api.authorization.v1.ExtraValue",
        "k8s.io.api.certificates.v1.ExtraValue",
    }
)

JSONValue = Any
# protobuf's Descriptor (the upb and pure-Python classes differ; both quack alike).
DescriptorT = Any
Encoder = Callable[[Any], JSONValue]


class FieldError(ValueError):
    """One problem at one field path."""

    def __init__(self, path: str, detail: str, *, reason: str = "FieldValueInvalid") -> None:
        super().__init__(f"{path}: {detail}" if path else detail)
        self.path = path
        self.detail = detail
        self.reason = reason


class DecodeError(ValueError):
    """A body that does not decode into the kind; ``errors`` lists each problem."""

    def __init__(self, errors: list[FieldError], *, strict_prefix: bool = False) -> None:
        self.errors = errors
        text = ", ".join(str(e) if e.reason != "FieldValueUnknown" else
                         f'unknown field "{e.path}"' for e in errors)
        super().__init__(f"strict decoding error: {text}" if strict_prefix else text)


# ---------------------------------------------------------------------------
# Time and duration (meta/v1 Time, MicroTime, Duration)


def format_time(seconds: int, nanos: int = 0, *, micro: bool = False) -> str:
    """RFC 3339 in UTC: seconds precision for Time, microseconds for MicroTime."""
    dt = datetime.fromtimestamp(seconds, UTC)
    if micro:
        return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_time(text: str) -> tuple[int, int]:
    """RFC 3339 (any offset, optional fraction) -> (unix seconds, nanos)."""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"parsing time {text!r}: not an RFC 3339 time")
    whole = text[: m.start(7)] if m.group(7) else text[: m.start(8)]
    zone = m.group(8)
    offset = "+00:00" if zone in ("Z", "z") else zone
    try:
        dt = datetime.fromisoformat(whole.replace("t", "T") + offset)
    except ValueError as exc:
        raise ValueError(f"parsing time {text!r}: {exc}") from None
    frac = m.group(7) or ".0"
    nanos = int((frac[1:] + "000000000")[:9])
    return int(dt.timestamp()), nanos


_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6,
                   "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """A Go duration string (``1h2m3.5s``, ``300ms``, ``-1s``) -> nanoseconds."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0
    pos, total = 0, 0
    for m in _DURATION_PART.finditer(body):
        if m.start() != pos:
            break
        number, unit = m.groups()
        total += round(float(number) * _DURATION_UNITS[unit])
        pos = m.end()
    if pos != len(body) or not body:
        raise ValueError(f"time: invalid duration {text!r}")
    return -total if text.startswith("-") else total


def format_duration(nanos: int) -> str:
    """Nanoseconds -> Go's time.Duration.String() form."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    n = abs(nanos)
    if n < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if n >= size:
                return sign + _trim(n, size) + unit
    hours, rem = divmod(n, 3600 * 10**9)
    minutes, rem = divmod(rem, 60 * 10**9)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + _trim(rem, 10**9) + "s"


def _trim(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


# ---------------------------------------------------------------------------
# Encoding: message -> JSON-ready Python values


_encoders: dict[str, Callable[[Message], JSONValue]] = {}


def message_to_dict(msg: Message) -> dict[str, JSONValue]:
    """The Kubernetes JSON form of ``msg`` (no apiVersion/kind)."""
    result: dict[str, JSONValue] = _encoder(msg.DESCRIPTOR)(msg)
    return result


def _json_facts(desc: DescriptorT) -> dict[str, tuple[str, int]]:
    return FIELDS.get(desc.full_name, {})


def _encoder(desc: DescriptorT) -> Callable[[Message], JSONValue]:
    enc = _encoders.get(desc.full_name)
    if enc is None:
        enc = _build_encoder(desc)
        _encoders[desc.full_name] = enc
    return enc


def _special_encoder(name: str) -> Callable[[Message], JSONValue] | None:
    if name in (QUANTITY, QUANTITY_VALUE):
        return lambda m: m.string  # type: ignore[attr-defined]
    if name == INT_OR_STRING:
        return lambda m: m.strVal if m.type == 1 else m.intVal  # type: ignore[attr-defined]
    if name == TIME:
        return lambda m: format_time(m.seconds, m.nanos)  # type: ignore[attr-defined]
    if name == MICRO_TIME:
        return lambda m: format_time(m.seconds, m.nanos, micro=True)  # type: ignore[attr-defined]
    if name == DURATION:
        return lambda m: format_duration(m.duration)  # type: ignore[attr-defined]
    if name == FIELDS_V1:
        return lambda m: json.loads(m.Raw) if m.Raw else {}  # type: ignore[attr-defined]
    if name in (RAW_EXTENSION, EXT_JSON):
        return lambda m: json.loads(m.raw) if m.raw else None  # type: ignore[attr-defined]
    if name in STRING_LISTS:
        return lambda m: list(m.items)  # type: ignore[attr-defined]
    if name == PROPS_OR_ARRAY:
        def props_or_array(m: Any) -> JSONValue:
            if len(m.jSONSchemas):
                return [message_to_dict(s) for s in m.jSONSchemas]
            return message_to_dict(m.schema)
        return props_or_array
    if name == PROPS_OR_BOOL:
        def props_or_bool(m: Any) -> JSONValue:
            return message_to_dict(m.schema) if m.HasField("schema") else m.allows
        return props_or_bool
    if name == PROPS_OR_STRINGS:
        def props_or_strings(m: Any) -> JSONValue:
            return list(m.property) if len(m.property) else message_to_dict(m.schema)
        return props_or_strings
    return None


def _is_zero_time(name: str, value: Any) -> bool:
    return name in (TIME, MICRO_TIME) and value.seconds == 0 and value.nanos == 0


def _value_encoder(fd: FieldDescriptor) -> Encoder:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return _encoder(fd.message_type)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return lambda v: base64.b64encode(v).decode("ascii")
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return lambda v: int(v) if float(v).is_integer() and abs(v) < 2**53 else v
    return lambda v: v


def _build_encoder(desc: DescriptorT) -> Callable[[Message], JSONValue]:
    special = _special_encoder(desc.full_name)
    if special is not None:
        return special
    facts = _json_facts(desc)
    # Per field (by number): (json name, flags, encode, kind) where kind says
    # how a present value is turned into JSON.
    plan: dict[int, tuple[str, int, Encoder, str]] = {}
    for fd in desc.fields:
        json_name, flags = facts.get(fd.name, (fd.name, OMITEMPTY))
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            value_enc = _value_encoder(value_fd)
            kind = "map"
            enc: Encoder = (lambda ve: lambda v: {k: ve(x) for k, x in v.items()})(value_enc)
        elif fd.is_repeated:
            item_enc = _value_encoder(fd)
            kind = "list"
            enc = (lambda ie: lambda v: [ie(x) for x in v])(item_enc)
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            kind = "time" if fd.message_type.full_name in (TIME, MICRO_TIME) else "message"
            enc = _lazy_message_encoder(fd.message_type)
        else:
            kind = "scalar"
            enc = _value_encoder(fd)
        plan[fd.number] = (json_name, flags, enc, kind)

    def encode(msg: Message) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {}
        for fd, value in msg.ListFields():
            json_name, flags, enc, kind = plan[fd.number]
            if kind == "scalar":
                if not value and flags & OMITEMPTY and not flags & POINTER:
                    continue
            elif kind == "time" and value.seconds == 0 and value.nanos == 0:
                continue
            encoded = enc(value)
            if flags & INLINE:
                out.update(encoded)
            else:
                out[json_name] = encoded
        return out

    return encode


def _lazy_message_encoder(desc: DescriptorT) -> Encoder:
    # Message types are recursive (JSONSchemaProps); resolve on first use.
    def enc(value: Message) -> JSONValue:
        return _encoder(desc)(value)

    return enc


# ---------------------------------------------------------------------------
# Decoding: JSON-ready Python values -> message


class _Ctx:
    __slots__ = ("strict", "unknown")

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.unknown: list[FieldError] = []


Decoder = Callable[[Message, Any, str, _Ctx], None]
# Decoders for a message's JSON object: json key -> (route, set value).
_decoders: dict[str, dict[str, tuple[tuple[str, ...], FieldDescriptor]]] = {}


def dict_to_message(
    cls: type[Message] | Message, data: Any, *, strict: bool = True, path: str = ""
) -> Message:
    """Decode a JSON object into a new message of type ``cls`` (or into ``cls`` itself
    when given a message instance, merging).

    Raises DecodeError listing every unknown field (when strict) or the first
    value of a wrong type.
    """
    msg = cls() if isinstance(cls, type) else cls
    ctx = _Ctx(strict)
    try:
        _decode_into(msg, data, path, ctx)
    except FieldError as exc:
        raise DecodeError([exc]) from None
    if ctx.unknown:
        raise DecodeError(ctx.unknown, strict_prefix=True)
    return msg


def unknown_fields(cls: type[Message], data: Any) -> list[str]:
    """Paths of fields in ``data`` that ``cls`` does not have (for fieldValidation=Warn)."""
    ctx = _Ctx(True)
    try:
        _decode_into(cls(), data, "", ctx)
    except FieldError:
        return []
    return [e.path for e in ctx.unknown]


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _wrong(path: str, value: Any, expected: str) -> FieldError:
    return FieldError(
        path,
        f"expected {expected}, got {_type_name(value)}",
        reason="FieldValueTypeInvalid",
    )


def _decode_plan(desc: DescriptorT) -> dict[str, tuple[tuple[str, ...], FieldDescriptor]]:
    plan = _decoders.get(desc.full_name)
    if plan is not None:
        return plan
    plan = {}
    facts = _json_facts(desc)
    for fd in desc.fields:
        json_name, flags = facts.get(fd.name, (fd.name, OMITEMPTY))
        if flags & INLINE and fd.message_type is not None:
            for key, (route, inner) in _decode_plan(fd.message_type).items():
                plan[key] = ((fd.name, *route), inner)
        else:
            plan[json_name] = ((), fd)
    _decoders[desc.full_name] = plan
    return plan


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _decode_into(msg: Message, data: Any, path: str, ctx: _Ctx) -> None:
    name = msg.DESCRIPTOR.full_name
    if name in _SPECIAL_DECODERS:
        _SPECIAL_DECODERS[name](msg, data, path, ctx)
        return
    if not isinstance(data, dict):
        raise _wrong(path, data, "object")
    msg.SetInParent()
    plan = _decode_plan(msg.DESCRIPTOR)
    for key, value in data.items():
        entry = plan.get(key)
        if entry is None:
            if ctx.strict:
                ctx.unknown.append(FieldError(_join(path, str(key)), "unknown field",
                                              reason="FieldValueUnknown"))
            continue
        if value is None:
            continue  # null means unset, as in Go
        route, fd = entry
        target = msg
        for step in route:
            target = getattr(target, step)
        _decode_field(target, fd, value, _join(path, key), ctx)


def _decode_field(msg: Message, fd: FieldDescriptor, value: Any, path: str, ctx: _Ctx) -> None:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        if not isinstance(value, dict):
            raise _wrong(path, value, "object")
        container = getattr(msg, fd.name)
        value_fd = fd.message_type.fields_by_name["value"]
        for k, v in value.items():
            item_path = f"{path}[{k}]"
            if not isinstance(k, str):
                raise _wrong(item_path, k, "string key")
            if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                if v is None:
                    container[k].SetInParent()
                    continue
                _decode_into(container[k], v, item_path, ctx)
            else:
                container[k] = _scalar(value_fd, v, item_path)
        if not value:
            msg.SetInParent()
        return
    if fd.is_repeated:
        if not isinstance(value, list):
            raise _wrong(path, value, "array")
        container = getattr(msg, fd.name)
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            for i, item in enumerate(value):
                _decode_into(container.add(), item if item is not None else {}, f"{path}[{i}]",
                             ctx)
        else:
            container.extend(_scalar(fd, item, f"{path}[{i}]") for i, item in enumerate(value))
        return
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        _decode_into(getattr(msg, fd.name), value, path, ctx)
        return
    setattr(msg, fd.name, _scalar(fd, value, path))


_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1, "int32"),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1, "int64"),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1, "uint32"),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1, "uint64"),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1, "int32"),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1, "int64"),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1, "uint32"),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1, "uint64"),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1, "int32"),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1, "int64"),
}


def _scalar(fd: FieldDescriptor, value: Any, path: str) -> Any:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise _wrong(path, value, "string")
        return value
    if t == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise _wrong(path, value, "boolean")
        return value
    if t in _INT_RANGES:
        low, high, label = _INT_RANGES[t]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong(path, value, f"integer ({label})")
        if isinstance(value, float):
            if not value.is_integer():
                raise FieldError(path, f"expected integer ({label}), got {value!r}",
                                 reason="FieldValueTypeInvalid")
            value = int(value)
        if not low <= value <= high:
            raise FieldError(path, f"{value} is out of range for {label}",
                             reason="FieldValueTypeInvalid")
        return value
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong(path, value, "number")
        if math.isnan(value) or math.isinf(value):
            raise FieldError(path, "expected a finite number", reason="FieldValueTypeInvalid")
        return float(value)
    if t == FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str):
            raise _wrong(path, value, "base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise FieldError(path, "illegal base64 data", reason="FieldValueTypeInvalid") from None
    if t == FieldDescriptor.TYPE_ENUM:  # Kubernetes types have no enums; be safe
        return value
    raise FieldError(path, f"unsupported field type {t}")


# Special decoders ----------------------------------------------------------


def _dec_quantity(msg: Any, value: Any, path: str, ctx: _Ctx) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _wrong(path, value, "quantity (string or number)")
    try:
        msg.string = canonical(value)
    except QuantityError as exc:
        raise FieldError(path, str(exc)) from None


def _dec_int_or_string(msg: Any, value: Any, path: str, ctx: _Ctx) -> None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _wrong(path, value, "integer or string")
    # Go always writes all three fields; set them all for the same encoding.
    if isinstance(value, int):
        if not -(2**31) <= value < 2**31:
            raise FieldError(path, f"{value} is out of range for int32",
                             reason="FieldValueTypeInvalid")
        msg.type, msg.intVal, msg.strVal = 0, value, ""
    else:
        msg.type, msg.intVal, msg.strVal = 1, 0, value


def _dec_time(msg: Any, value: Any, path: str, ctx: _Ctx) -> None:
    if not isinstance(value, str):
        raise _wrong(path, value, "RFC 3339 time string")
    try:
        seconds, nanos = parse_time(value)
    except ValueError as exc:
        raise FieldError(path, str(exc), reason="FieldValueTypeInvalid") from None
    msg.seconds = seconds
    msg.nanos = 0 if msg.DESCRIPTOR.full_name == TIME else nanos - nanos % 1000


def _dec_duration(msg: Any, value: Any, path: str, ctx: _Ctx) -> None:
    if not isinstance(value, str):
        raise _wrong(path, value, "duration string")
    try:
        msg.duration = parse_duration(value)
    except ValueError as exc:
        raise FieldError(path, str(exc), reason="FieldValueTypeInvalid") from None


def _raw_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _dec_fields_v1(msg: Any, value: Any, path: str, ctx: _Ctx) -> None:
    if not isinstance(value, dict):
        raise _wrong(path, value, "object")
    msg.Raw = _raw_json(value)


def _dec_raw(msg: Any, value: Any, path: str, ctx: _Ctx) -> None:
    msg.raw = _raw_json(value)


def _dec_string_list(msg: Any, value: Any, path: str, ctx: _Ctx) -> None:
    if not isinstance(value, list):
        raise _wrong(path, value, "array of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _wrong(f"{path}[{i}]", item, "string")
    msg.SetInParent()
    msg.items.extend(value)


def _dec_props_or_array(msg: Any, value: Any, path: str, ctx: _Ctx) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            _decode_into(msg.jSONSchemas.add(), item, f"{path}[{i}]", ctx)
        msg.SetInParent()
    else:
        _decode_into(msg.schema, value, path, ctx)


def _dec_props_or_bool(msg: Any, value: Any, path: str, ctx: _Ctx) -> None:
    if isinstance(value, bool):
        msg.allows = value
    else:
        msg.allows = True
        _decode_into(msg.schema, value, path, ctx)


def _dec_props_or_strings(msg: Any, value: Any, path: str, ctx: _Ctx) -> None:
    if isinstance(value, list):
        _dec_string_list(_PropertyView(msg), value, path, ctx)
    else:
        _decode_into(msg.schema, value, path, ctx)


class _PropertyView:
    """Lets the string-list decoder fill JSONSchemaPropsOrStringArray.property."""

    def __init__(self, msg: Any) -> None:
        self.items = msg.property
        self._msg = msg

    def SetInParent(self) -> None:
        self._msg.SetInParent()


_SPECIAL_DECODERS: dict[str, Decoder] = {
    QUANTITY: _dec_quantity,
    QUANTITY_VALUE: _dec_quantity,
    INT_OR_STRING: _dec_int_or_string,
    TIME: _dec_time,
    MICRO_TIME: _dec_time,
    DURATION: _dec_duration,
    FIELDS_V1: _dec_fields_v1,
    RAW_EXTENSION: _dec_raw,
    EXT_JSON: _dec_raw,
    PROPS_OR_ARRAY: _dec_props_or_array,
    PROPS_OR_BOOL: _dec_props_or_bool,
    PROPS_OR_STRINGS: _dec_props_or_strings,
    **dict.fromkeys(STRING_LISTS, _dec_string_list),
}
