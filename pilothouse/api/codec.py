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
  Messages follow presence (proto2): ``status: {}`` set is written, unset is
  not; a zero Time (Go writes ``null``) is left out.
- Union-typed JSON (int-or-string, quantities, times, durations, raw JSON,
  the CRD schema unions, byte fields in base64) has one converter each.
- Decoding is strict by default: unknown fields are collected and reported
  together with their paths (``spec.containers[0].imagee``), as Kubernetes'
  strict field validation does; a wrong type fails at once naming the path and
  the expected type. ``null`` means "unset" (in lists and maps: the zero
  value), as in Go. Any bad input is a ``DecodeError``, never another exception.

Per message type the converters are compiled once into small closures and
cached, because list encoding and request decoding are hot paths: the encoder
walks ``ListFields()`` (only what is set) with one table lookup per field; the
decoder dispatches each JSON key to a setter that knows its field's type.
Field paths are only built for nested messages and for errors.
"""

from __future__ import annotations

import base64
import binascii
import gc
import json
import math
import re
import time as _time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from pilothouse.api.k8s_json_fields import FIELDS, TYPE_META
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
# Message types whose JSON null is a value of their own (Go's Raw stays empty
# and marshals back as null), so a null list item stays null.
_NULLABLE = frozenset({RAW_EXTENSION, EXT_JSON})
# Lists of objects that Kubernetes writes with their apiVersion/kind filled in,
# although protobuf does not carry them (apps/v1 conversion sets them on read).
TYPED_ITEMS: dict[tuple[str, str], tuple[str, str]] = {
    ("k8s.io.api.apps.v1.StatefulSetSpec", "volumeClaimTemplates"): ("v1",
                                                                     "PersistentVolumeClaim"),
}

JSONValue = Any
# protobuf's Descriptor (the upb and pure-Python classes differ; both quack alike).
DescriptorT = Any
FieldDescT = Any  # likewise for FieldDescriptor (message_type is Optional in the stubs)
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


class EncodeError(ValueError):
    """A message that has no JSON form (a time beyond year 9999, raw bytes that are
    not JSON) -- only possible for messages built from foreign protobuf bytes."""


# ---------------------------------------------------------------------------
# Time and duration (meta/v1 Time, MicroTime, Duration)

_time_text: dict[int, str] = {}


def format_time(seconds: int, nanos: int = 0, *, micro: bool = False) -> str:
    """RFC 3339 in UTC: seconds precision for Time, microseconds for MicroTime."""
    text = _time_text.get(seconds)
    if text is None:
        try:
            if not -62135596800 <= seconds <= 253402300799:  # years 1..9999
                raise ValueError("year outside of range [1,9999]")
            text = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(seconds))
        except (ValueError, OverflowError, OSError) as exc:
            raise EncodeError(f"time {seconds}s: {exc}") from None
        if len(_time_text) >= 4096:
            _time_text.clear()
        _time_text[seconds] = text
    if micro:
        return f"{text}.{nanos // 1000:06d}Z"
    return text + "Z"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)
_parsed_times: dict[str, tuple[int, int]] = {}


def parse_time(text: str) -> tuple[int, int]:
    """RFC 3339 (any offset, optional fraction) -> (unix seconds, nanos)."""
    hit = _parsed_times.get(text)
    if hit is not None:
        return hit
    m = _RFC3339.fullmatch(text)
    if not m:
        raise ValueError(f"parsing time {text!r}: not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    zone = m.group(8)
    try:
        offset = 0
        if zone not in ("Z", "z"):
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("time zone offset out of range")
            offset = (hours * 3600 + minutes * 60) * (-1 if zone[0] == "-" else 1)
        dt = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"parsing time {text!r}: {exc}") from None
    frac = m.group(7) or ".0"
    nanos = int((frac[1:] + "000000000")[:9])
    result = (int(dt.timestamp()) - offset, nanos)
    if len(_parsed_times) >= 4096:
        _parsed_times.clear()
    _parsed_times[text] = result
    return result


_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6,
                   "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")
_MAX_DURATION = 2**63 - 1


def parse_duration(text: str) -> int:
    """A Go duration string (``1h2m3.5s``, ``300ms``, ``-1s``) -> nanoseconds, exactly."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0
    pos, total = 0, 0
    for m in _DURATION_PART.finditer(body):
        whole, frac, unit = m.groups()
        if m.start() != pos or not (whole or frac):
            break
        size = _DURATION_UNITS[unit]
        total += int(whole or "0") * size
        if frac:
            total += int(frac) * size // 10 ** len(frac)
        pos = m.end()
    if pos != len(body) or not body:
        raise ValueError(f"time: invalid duration {text!r}")
    if total > _MAX_DURATION + (text[:1] == "-"):
        raise ValueError(f"time: invalid duration {text!r} (overflows int64 nanoseconds)")
    return -total if text[:1] == "-" else total


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

_encoders: dict[str, Encoder] = {}


def message_to_dict(msg: Message) -> dict[str, JSONValue]:
    """The Kubernetes JSON form of ``msg`` (no apiVersion/kind)."""
    result: dict[str, JSONValue] = _encoder(msg.DESCRIPTOR)(msg)
    return result


def messages_to_dicts(msgs: Iterable[Message]) -> list[dict[str, JSONValue]]:
    """``[message_to_dict(m) for m in msgs]``, with the cyclic GC paused meanwhile.

    A list response builds millions of small dicts and lists that all stay
    alive; each allocation burst would otherwise trigger collections that walk
    the growing heap, which about doubles the time of a 10k-item list. Nothing
    built here forms a reference cycle, so pausing the collector is safe.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return [_encoder(m.DESCRIPTOR)(m) for m in msgs]
    finally:
        if paused:
            gc.enable()


def _json_facts(desc: DescriptorT) -> dict[str, tuple[str, int]]:
    return FIELDS.get(desc.full_name, {})


def _encoder(desc: DescriptorT) -> Encoder:
    enc = _encoders.get(desc.full_name)
    if enc is None:
        enc = _build_encoder(desc)
    return enc


def _json_loads(raw: bytes, what: str) -> JSONValue:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EncodeError(f"{what} does not hold JSON: {exc}") from None


def _special_encoder(name: str) -> Encoder | None:
    if name in (QUANTITY, QUANTITY_VALUE):
        return attrgetter("string")
    if name == INT_OR_STRING:
        return lambda m: m.strVal if m.type == 1 else m.intVal
    if name == TIME:
        return lambda m: format_time(m.seconds)
    if name == MICRO_TIME:
        return lambda m: format_time(m.seconds, m.nanos, micro=True)
    if name == DURATION:
        return lambda m: format_duration(m.duration)
    if name == FIELDS_V1:
        return lambda m: _json_loads(m.Raw, "fieldsV1") if m.Raw else {}
    if name in (RAW_EXTENSION, EXT_JSON):
        return lambda m: _json_loads(m.raw, "raw extension") if m.raw else None
    if name in STRING_LISTS:
        return lambda m: list(m.items)
    if name == PROPS_OR_ARRAY:
        def props_or_array(m: Any) -> JSONValue:
            if len(m.jSONSchemas):
                return [message_to_dict(s) for s in m.jSONSchemas]
            return message_to_dict(m.schema) if m.HasField("schema") else None
        return props_or_array
    if name == PROPS_OR_BOOL:
        def props_or_bool(m: Any) -> JSONValue:
            return message_to_dict(m.schema) if m.HasField("schema") else m.allows
        return props_or_bool
    if name == PROPS_OR_STRINGS:
        def props_or_strings(m: Any) -> JSONValue:
            if len(m.property):
                return list(m.property)
            return message_to_dict(m.schema) if m.HasField("schema") else None
        return props_or_strings
    return None


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _number(value: float) -> float | int:
    # Go prints a float64 without a fraction as an integer (minimum: 1, not 1.0).
    if value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def _scalar_encoder(fd: FieldDescT) -> Encoder | None:
    """None when the Python value is already its JSON value."""
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return _b64
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _number
    return None


def _is_map(fd: FieldDescT) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


# What the encoder loop does with one present field.
_KEEP = 0          # out[name] = value
_OMIT_ZERO = 1     # out[name] = value unless falsy (omitempty, not a pointer)
_CONVERT = 2       # out[name] = fn(value)
_CONVERT_OMIT = 3  # out[name] = fn(value) unless value is falsy
_TIME = 4          # out[name] = fn(value) unless it is the zero time
_INLINE = 5        # out.update(fn(value))


def _build_encoder(desc: DescriptorT) -> Encoder:
    special = _special_encoder(desc.full_name)
    if special is not None:
        _encoders[desc.full_name] = special
        return special
    facts = _json_facts(desc)
    # Keyed by the field descriptor itself: ListFields hands back the same objects.
    plan: dict[Any, tuple[str, int, Any]] = {}
    # Go writes a scalar without omitempty even when it is zero (`restartCount: 0`,
    # `reportingComponent: ""`); such fields left unset here are written as zero too.
    always: list[tuple[str, Any]] = []

    def encode(msg: Message) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {}
        for fd, value in msg.ListFields():
            name, action, fn = plan[fd]
            if action == _KEEP:
                out[name] = value
            elif action == _CONVERT:
                out[name] = fn(value)
            elif action == _OMIT_ZERO:
                if value:
                    out[name] = value
            elif action == _TIME:
                if value.seconds or value.nanos:
                    out[name] = fn(value)
            elif action == _CONVERT_OMIT:
                if value:
                    out[name] = fn(value)
            else:
                out.update(fn(value))
        if always:
            for name, zero in always:
                if name not in out:
                    out[name] = zero
        return out

    # Registered before the fields are planned: message types are recursive
    # (JSONSchemaProps holds JSONSchemaProps).
    _encoders[desc.full_name] = encode
    for fd in desc.fields:
        json_name, flags = facts.get(fd.name, (fd.name, OMITEMPTY))
        omit_zero = bool(flags & OMITEMPTY) and not flags & POINTER
        typed = TYPED_ITEMS.get((desc.full_name, fd.name))
        if _is_map(fd):
            plan[fd] = (json_name, _CONVERT, _map_encoder(fd))
        elif fd.is_repeated:
            plan[fd] = (json_name, _CONVERT, _list_encoder(fd, typed))
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            child = _encoder(fd.message_type)
            if flags & INLINE:
                plan[fd] = (json_name, _INLINE, child)
            elif fd.message_type.full_name in (TIME, MICRO_TIME):
                plan[fd] = (json_name, _TIME, child)
            else:
                plan[fd] = (json_name, _CONVERT, child)
        else:
            if not flags & (OMITEMPTY | POINTER | INLINE) and desc.full_name in FIELDS and (
                fd.type != FieldDescriptor.TYPE_BYTES
            ):
                always.append((json_name, _number(fd.default_value)
                               if isinstance(fd.default_value, float) else fd.default_value))
            conv = _scalar_encoder(fd)
            if conv is None:
                plan[fd] = (json_name, _OMIT_ZERO if omit_zero else _KEEP, None)
            else:
                plan[fd] = (json_name, _CONVERT_OMIT if omit_zero else _CONVERT, conv)
    return encode


def _list_encoder(fd: FieldDescT, typed: tuple[str, str] | None) -> Encoder:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        item = _encoder(fd.message_type)
        if typed is not None:
            api_version, kind = typed
            return lambda v: [{"apiVersion": api_version, "kind": kind, **item(x)} for x in v]
        return lambda v: [item(x) for x in v]
    conv = _scalar_encoder(fd)
    if conv is None:
        return list
    return lambda v: [conv(x) for x in v]


def _map_encoder(fd: FieldDescT) -> Encoder:
    # Go's encoding/json writes map keys sorted; so do we (stable output).
    value_fd = fd.message_type.fields_by_name["value"]
    if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
        value_desc = value_fd.message_type
        if value_desc.full_name == QUANTITY:
            return lambda v: {k: v[k].string for k in sorted(v)}
        item = _encoder(value_desc)
        return lambda v: {k: item(v[k]) for k in sorted(v)}
    conv = _scalar_encoder(value_fd)
    if conv is None:
        return lambda v: dict(sorted(v.items()))
    return lambda v: {k: conv(v[k]) for k in sorted(v)}


# ---------------------------------------------------------------------------
# Decoding: JSON-ready Python values -> message


class _Ctx:
    __slots__ = ("strict", "unknown")

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.unknown: list[FieldError] = []


# Decodes a JSON value into a (sub)message: (msg, value, ctx, path).
MessageDecoder = Callable[[Any, Any, _Ctx, str], None]
# Sets one field of a message from a non-null JSON value: (msg, value, ctx, parent path, key).
Setter = Callable[[Any, Any, _Ctx, str, str], None]
_decoders: dict[str, MessageDecoder] = {}


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
        _decoder(msg.DESCRIPTOR)(msg, data, ctx, path)
    except FieldError as exc:
        raise DecodeError([exc]) from None
    except RecursionError:
        raise DecodeError([FieldError(path, "document nested too deeply")]) from None
    if ctx.unknown:
        raise DecodeError(ctx.unknown, strict_prefix=True)
    return msg


def unknown_fields(cls: type[Message], data: Any) -> list[str]:
    """Paths of fields in ``data`` that ``cls`` does not have (for fieldValidation=Warn)."""
    ctx = _Ctx(True)
    try:
        _decoder(cls.DESCRIPTOR)(cls(), data, ctx, "")
    except (FieldError, RecursionError):
        return []
    return [e.path for e in ctx.unknown]


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
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


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _decoder(desc: DescriptorT) -> MessageDecoder:
    dec = _decoders.get(desc.full_name)
    if dec is None:
        dec = _build_decoder(desc)
    return dec


def _build_decoder(desc: DescriptorT) -> MessageDecoder:
    special = _SPECIAL_DECODERS.get(desc.full_name)
    if special is not None:
        _decoders[desc.full_name] = special
        return special
    plan: dict[str, Setter] = {}

    def decode(msg: Any, data: Any, ctx: _Ctx, path: str) -> None:
        if type(data) is not dict and not isinstance(data, dict):
            raise _wrong(path, data, "object")
        if not data:
            msg.SetInParent()  # `status: {}` is kept; a set field marks presence anyway
        for key, value in data.items():
            setter = plan.get(key)
            if setter is None:
                if ctx.strict:
                    ctx.unknown.append(FieldError(_join(path, str(key)), "unknown field",
                                                  reason="FieldValueUnknown"))
            elif value is not None:  # null means unset, as in Go
                setter(msg, value, ctx, path, key)

    _decoders[desc.full_name] = decode  # before planning: types are recursive
    plan.update(_field_setters(desc))
    if desc.full_name in TYPE_META:
        for key in ("apiVersion", "kind"):
            plan.setdefault(key, _type_meta_setter)
    return decode


def _type_meta_setter(msg: Any, value: Any, ctx: _Ctx, path: str, key: str) -> None:
    # Embedded objects may say what they are (volumeClaimTemplates); protobuf keeps none.
    if not isinstance(value, str):
        raise _wrong(_join(path, key), value, "string")


def _field_setters(desc: DescriptorT) -> dict[str, Setter]:
    facts = _json_facts(desc)
    out: dict[str, Setter] = {}
    for fd in desc.fields:
        json_name, flags = facts.get(fd.name, (fd.name, OMITEMPTY))
        if flags & INLINE and fd.message_type is not None:
            for key, inner in _field_setters(fd.message_type).items():
                out[key] = _inline_setter(fd.name, inner)
        else:
            out[json_name] = _setter(fd)
    return out


def _inline_setter(attr: str, inner: Setter) -> Setter:
    def set_inline(msg: Any, value: Any, ctx: _Ctx, path: str, key: str) -> None:
        inner(getattr(msg, attr), value, ctx, path, key)

    return set_inline


def _setter(fd: FieldDescT) -> Setter:
    attr = fd.name
    if _is_map(fd):
        return _map_setter(fd)
    if fd.is_repeated:
        return _list_setter(fd)
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        child = _decoder(fd.message_type)

        def set_message(msg: Any, value: Any, ctx: _Ctx, path: str, key: str) -> None:
            child(getattr(msg, attr), value, ctx, f"{path}.{key}" if path else key)

        return set_message
    if fd.type == FieldDescriptor.TYPE_STRING:
        def set_string(msg: Any, value: Any, ctx: _Ctx, path: str, key: str) -> None:
            if type(value) is str:
                try:
                    setattr(msg, attr, value)
                    return
                except (TypeError, ValueError) as exc:
                    raise FieldError(_join(path, key), f"invalid value: {exc}") from None
            setattr(msg, attr, _to_str_at(value, path, key))

        return set_string
    convert = _scalar_converter(fd)

    def set_scalar(msg: Any, value: Any, ctx: _Ctx, path: str, key: str) -> None:
        try:
            setattr(msg, attr, convert(value))
        except FieldError as exc:
            raise FieldError(_join(path, key), exc.detail, reason=exc.reason) from None
        except (TypeError, ValueError) as exc:  # e.g. a string protobuf cannot hold
            raise FieldError(_join(path, key), f"invalid value: {exc}") from None

    return set_scalar


def _list_setter(fd: FieldDescT) -> Setter:
    attr = fd.name
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        item_desc = fd.message_type
        nullable = item_desc.full_name in _NULLABLE
        item_decode = _decoder(item_desc)

        def set_messages(msg: Any, value: Any, ctx: _Ctx, path: str, key: str) -> None:
            sub_path = f"{path}.{key}" if path else key
            if not isinstance(value, list):
                raise _wrong(sub_path, value, "array")
            container = getattr(msg, attr)
            for i, item in enumerate(value):
                target = container.add()
                if item is None:
                    if nullable:
                        continue
                    item = {}
                item_decode(target, item, ctx, f"{sub_path}[{i}]")

        return set_messages
    convert = _scalar_converter(fd)
    zero = _zero(fd)
    is_str = fd.type == FieldDescriptor.TYPE_STRING

    def set_scalars(msg: Any, value: Any, ctx: _Ctx, path: str, key: str) -> None:
        if not isinstance(value, list):
            raise _wrong(_join(path, key), value, "array")
        try:
            if is_str and all(type(x) is str for x in value):
                getattr(msg, attr).extend(value)
                return
            items = []
            for i, x in enumerate(value):
                try:
                    items.append(zero if x is None else convert(x))
                except FieldError as exc:
                    raise FieldError(f"{_join(path, key)}[{i}]", exc.detail,
                                     reason=exc.reason) from None
            getattr(msg, attr).extend(items)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, FieldError):
                raise
            raise FieldError(_join(path, key), f"invalid value: {exc}") from None

    return set_scalars


def _map_setter(fd: FieldDescT) -> Setter:
    attr = fd.name
    value_fd = fd.message_type.fields_by_name["value"]
    if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
        value_desc = value_fd.message_type
        is_quantity = value_desc.full_name == QUANTITY
        item_decode = _decoder(value_desc)

        def set_message_map(msg: Any, value: Any, ctx: _Ctx, path: str, key: str) -> None:
            sub_path = f"{path}.{key}" if path else key
            if not isinstance(value, dict):
                raise _wrong(sub_path, value, "object")
            msg.SetInParent()
            container = getattr(msg, attr)
            for k, v in value.items():
                if not isinstance(k, str):
                    raise _wrong(f"{sub_path}[{k}]", k, "string key")
                try:
                    target = container[k]
                except (TypeError, ValueError) as exc:
                    raise FieldError(f"{sub_path}[{k!r}]", f"invalid key: {exc}") from None
                if v is None:
                    if is_quantity:
                        target.string = "0"
                    continue
                item_decode(target, v, ctx, f"{sub_path}[{k}]")

        return set_message_map
    convert = _scalar_converter(value_fd)
    zero = _zero(value_fd)
    is_str = value_fd.type == FieldDescriptor.TYPE_STRING

    def set_scalar_map(msg: Any, value: Any, ctx: _Ctx, path: str, key: str) -> None:
        if not isinstance(value, dict):
            raise _wrong(_join(path, key), value, "object")
        msg.SetInParent()
        container = getattr(msg, attr)
        try:
            if is_str and all(type(k) is str and type(v) is str for k, v in value.items()):
                container.update(value)
                return
            for k, v in value.items():
                if not isinstance(k, str):
                    raise _wrong(f"{_join(path, key)}[{k}]", k, "string key")
                try:
                    container[k] = zero if v is None else convert(v)
                except FieldError as exc:
                    raise FieldError(f"{_join(path, key)}[{k}]", exc.detail,
                                     reason=exc.reason) from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, FieldError):
                raise
            raise FieldError(_join(path, key), f"invalid value: {exc}") from None

    return set_scalar_map


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

# Scalar converters raise FieldError with an empty path; setters add the path.


def _bad(value: Any, expected: str) -> FieldError:
    return _wrong("", value, expected)


def _to_str_at(value: Any, path: str, key: str) -> str:
    if isinstance(value, str):  # a str subclass
        return str(value)
    raise _wrong(_join(path, key), value, "string")


def _to_str(value: Any) -> str:
    if type(value) is str or isinstance(value, str):
        return value
    raise _bad(value, "string")


def _to_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise _bad(value, "boolean")


def _int_converter(low: int, high: int, label: str) -> Callable[[Any], int]:
    def to_int(value: Any) -> int:
        if type(value) is not int:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _bad(value, f"integer ({label})")
            if isinstance(value, float):
                if not value.is_integer():
                    raise FieldError("", f"expected integer ({label}), got {value!r}",
                                     reason="FieldValueTypeInvalid")
                value = int(value)
        if not low <= value <= high:
            raise FieldError("", f"{value} is out of range for {label}",
                             reason="FieldValueTypeInvalid")
        return int(value)

    return to_int


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(value, "number")
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise FieldError("", "expected a finite number", reason="FieldValueTypeInvalid")
    try:
        return float(value)
    except OverflowError:
        raise FieldError("", f"{value} is out of range for a double",
                         reason="FieldValueTypeInvalid") from None


def _to_bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _bad(value, "base64 string")
    # Go's base64 decoder skips line breaks (wrapped `base64` output works).
    if "\n" in value or "\r" in value:
        value = value.replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise FieldError("", "illegal base64 data", reason="FieldValueTypeInvalid") from None


def _zero(fd: FieldDescT) -> Any:
    """The Go zero value of a scalar field (what JSON null becomes in a list or map)."""
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return ""
    if t == FieldDescriptor.TYPE_BOOL:
        return False
    if t == FieldDescriptor.TYPE_BYTES:
        return b""
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 0.0
    return 0


def _scalar_converter(fd: FieldDescT) -> Callable[[Any], Any]:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return _to_str
    if t == FieldDescriptor.TYPE_BOOL:
        return _to_bool
    if t in _INT_RANGES:
        return _int_converter(*_INT_RANGES[t])
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _to_float
    if t == FieldDescriptor.TYPE_BYTES:
        return _to_bytes
    raise TypeError(f"{fd.full_name}: unsupported field type {t}")  # Kubernetes has no enums


# Special decoders ----------------------------------------------------------


def _dec_quantity(msg: Any, value: Any, ctx: _Ctx, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _wrong(path, value, "quantity (string or number)")
    try:
        msg.string = canonical(value)
    except QuantityError as exc:
        raise FieldError(path, str(exc)) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise FieldError(path, f"invalid quantity: {exc}") from None


def _dec_int_or_string(msg: Any, value: Any, ctx: _Ctx, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _wrong(path, value, "integer or string")
    # Go always writes all three fields; set them all for the same encoding.
    if isinstance(value, int):
        if not -(2**31) <= value < 2**31:
            raise FieldError(path, f"{value} is out of range for int32",
                             reason="FieldValueTypeInvalid")
        msg.type, msg.intVal, msg.strVal = 0, value, ""
    else:
        try:
            msg.type, msg.intVal, msg.strVal = 1, 0, value
        except (TypeError, ValueError) as exc:
            raise FieldError(path, f"invalid value: {exc}") from None


def _dec_time(msg: Any, value: Any, ctx: _Ctx, path: str) -> None:
    if not isinstance(value, str):
        raise _wrong(path, value, "RFC 3339 time string")
    try:
        seconds, nanos = parse_time(value)
    except ValueError as exc:
        raise FieldError(path, str(exc), reason="FieldValueTypeInvalid") from None
    if not -62135596800 <= seconds <= 253402300799:
        raise FieldError(path, f"parsing time {value!r}: year outside of range [1,9999]",
                         reason="FieldValueTypeInvalid")
    msg.seconds = seconds
    # Time keeps seconds (as Kubernetes' protobuf form does); MicroTime microseconds.
    msg.nanos = 0 if msg.DESCRIPTOR.full_name == TIME else nanos - nanos % 1000


def _dec_duration(msg: Any, value: Any, ctx: _Ctx, path: str) -> None:
    if not isinstance(value, str):
        raise _wrong(path, value, "duration string")
    try:
        msg.duration = parse_duration(value)
    except ValueError as exc:
        raise FieldError(path, str(exc), reason="FieldValueTypeInvalid") from None


def _raw_json(value: Any, path: str) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise FieldError(path, f"not representable as JSON: {exc}") from None


def _dec_fields_v1(msg: Any, value: Any, ctx: _Ctx, path: str) -> None:
    if not isinstance(value, dict):
        raise _wrong(path, value, "object")
    msg.Raw = _raw_json(value, path)


def _dec_raw(msg: Any, value: Any, ctx: _Ctx, path: str) -> None:
    msg.raw = _raw_json(value, path)


def _dec_string_list(msg: Any, value: Any, ctx: _Ctx, path: str) -> None:
    if not isinstance(value, list):
        raise _wrong(path, value, "array of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _wrong(f"{path}[{i}]", item, "string")
    msg.SetInParent()
    try:
        msg.items.extend(value)
    except (TypeError, ValueError) as exc:
        raise FieldError(path, f"invalid value: {exc}") from None


def _dec_props_or_array(msg: Any, value: Any, ctx: _Ctx, path: str) -> None:
    if isinstance(value, list):
        schema_decode = _decoder(msg.DESCRIPTOR.fields_by_name["schema"].message_type)
        for i, item in enumerate(value):
            schema_decode(msg.jSONSchemas.add(), item, ctx, f"{path}[{i}]")
        msg.SetInParent()
    elif isinstance(value, dict):
        _decoder(msg.schema.DESCRIPTOR)(msg.schema, value, ctx, path)
    else:
        raise _wrong(path, value, "object or array")


def _dec_props_or_bool(msg: Any, value: Any, ctx: _Ctx, path: str) -> None:
    if isinstance(value, bool):
        msg.allows = value
    elif isinstance(value, dict):
        msg.allows = True
        _decoder(msg.schema.DESCRIPTOR)(msg.schema, value, ctx, path)
    else:
        raise _wrong(path, value, "boolean or object")


def _dec_props_or_strings(msg: Any, value: Any, ctx: _Ctx, path: str) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise _wrong(f"{path}[{i}]", item, "string")
        msg.SetInParent()
        try:
            msg.property.extend(value)
        except (TypeError, ValueError) as exc:
            raise FieldError(path, f"invalid value: {exc}") from None
    elif isinstance(value, dict):
        _decoder(msg.schema.DESCRIPTOR)(msg.schema, value, ctx, path)
    else:
        raise _wrong(path, value, "object or array of strings")


_SPECIAL_DECODERS: dict[str, MessageDecoder] = {
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


# ---------------------------------------------------------------------------
# Go's "unset": zero values of non-pointer fields


# Per message type: (scalar fields to clear when zero, singular message fields to
# walk, repeated message fields to walk, map fields whose values are messages).
_ZeroPlan = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]
_zero_plans: dict[str, _ZeroPlan] = {}


def _zero_plan(desc: DescriptorT) -> _ZeroPlan:
    plan = _zero_plans.get(desc.full_name)
    if plan is not None:
        return plan
    facts = _json_facts(desc)
    scalars: list[str] = []
    singles: list[str] = []
    repeated: list[str] = []
    maps: list[str] = []
    for fd in desc.fields:
        _, flags = facts.get(fd.name, (fd.name, OMITEMPTY))
        message = fd.message_type
        if message is not None and message.GetOptions().map_entry:
            value = message.fields_by_name["value"]
            if value.message_type is not None and \
                    value.message_type.full_name not in _SPECIAL_DECODERS:
                maps.append(fd.name)
        elif fd.is_repeated:
            if message is not None and message.full_name not in _SPECIAL_DECODERS:
                repeated.append(fd.name)
        elif message is not None:
            if message.full_name not in _SPECIAL_DECODERS:
                singles.append(fd.name)
        elif not flags & POINTER:
            scalars.append(fd.name)
    plan = (tuple(scalars), tuple(singles), tuple(repeated), tuple(maps))
    _zero_plans[desc.full_name] = plan
    return plan


def clear_go_zero_values(msg: Message) -> None:
    """Forget the presence of zero-valued non-pointer scalars, recursively.

    Go cannot tell ``restartPolicy: ""`` from a missing restartPolicy, and its
    protobuf encoder writes every non-pointer field, zero or not. Kubernetes'
    defaulting therefore treats a zero value as "unset". Clearing those fields
    gives every decoded object (JSON or protobuf, from any client) the same
    meaning of ``HasField`` — Go's — before defaulting and validation run.
    Pointer fields (``replicas``) keep their presence: there zero is a choice.
    """
    scalars, singles, repeated, maps = _zero_plan(msg.DESCRIPTOR)
    for name in scalars:
        if msg.HasField(name) and not getattr(msg, name):
            msg.ClearField(name)
    for name in singles:
        if msg.HasField(name):
            clear_go_zero_values(getattr(msg, name))
    for name in repeated:
        for item in getattr(msg, name):
            clear_go_zero_values(item)
    for name in maps:
        for item in getattr(msg, name).values():
            clear_go_zero_values(item)
