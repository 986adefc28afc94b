"""IntOrString: the JSON union used by ``targetPort``, ``maxSurge``, ``maxUnavailable`` ...

In JSON the value is either an integer (``8080``) or a string (``"http"``, ``"25%"``); on the
wire it is the message ``intstr.IntOrString {type, intVal, strVal}`` with ``type`` 0 for an int
and 1 for a string (Kubernetes ``k8s.io/apimachinery/pkg/util/intstr``). This module is the one
place that converts between the two and that resolves percentages against a total.
"""

from __future__ import annotations

import re
from typing import Final

from pilothouse.gen.k8s.intstr.intstr_pb2 import IntOrString

__all__ = [
    "INT",
    "STRING",
    "IntOrStringError",
    "from_json",
    "from_proto",
    "int_value",
    "parse",
    "scaled_value",
    "to_json",
    "to_proto",
]

INT: Final = 0
STRING: Final = 1

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
# Go's strconv.Atoi: optional sign, ASCII digits, nothing else (no spaces, no underscores).
_ATOI = re.compile(r"[+-]?[0-9]+")


class IntOrStringError(ValueError):
    """A value that is not a valid int-or-string, or not usable as an int-or-percent."""


def from_json(value: object) -> IntOrString:
    """The message for a JSON value: an int becomes type 0, a string type 1.

    Raises :class:`IntOrStringError` for anything else (booleans, floats, null, lists) and for
    integers outside int32, as Kubernetes' JSON decoding does.
    """
    if isinstance(value, str):
        return IntOrString(type=STRING, strVal=value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise IntOrStringError(
            f"invalid int-or-string {value!r}: expected an integer or a string, "
            f"got {type(value).__name__}"
        )
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise IntOrStringError(f"invalid int-or-string {value!r}: integer overflows int32")
    return IntOrString(type=INT, intVal=value)


to_proto = from_json


def to_json(message: IntOrString) -> int | str:
    """The JSON value of a message: ``intVal`` for type 0, ``strVal`` for type 1."""
    if message.type == INT:
        return int(message.intVal)
    if message.type == STRING:
        return str(message.strVal)
    raise IntOrStringError(f"invalid int-or-string: impossible type {message.type}")


from_proto = to_json


def parse(text: str) -> IntOrString:
    """Kubernetes ``intstr.Parse``: an int32 if ``text`` is one (``"80"``), else a string."""
    if _ATOI.fullmatch(text):
        number = int(text)
        if _INT32_MIN <= number <= _INT32_MAX:
            return IntOrString(type=INT, intVal=number)
    return IntOrString(type=STRING, strVal=text)


def int_value(value: IntOrString | int | str) -> int:
    """Kubernetes ``IntValue``: the int, or the string read as an int (0 when it is not one)."""
    plain = _plain(value)
    if isinstance(plain, int):
        return plain
    return int(plain) if _ATOI.fullmatch(plain) else 0


def scaled_value(value: IntOrString | int | str, total: int, round_up: bool) -> int:
    """Resolve an int-or-percent against ``total`` (``GetScaledValueFromIntOrPercent``).

    An int is returned as is; a string must be ``"<int>%"`` and yields ``value * total / 100``
    rounded up (``round_up``) or down, computed exactly: ``"25%"`` of 10 is 3 rounded up and 2
    rounded down. Any other string raises :class:`IntOrStringError`.
    """
    plain = _plain(value)
    if isinstance(plain, int):
        return plain
    if not plain.endswith("%"):
        raise IntOrStringError(
            f"invalid value for IntOrString: invalid type: string is not a percentage: {plain!r}"
        )
    digits = plain[:-1]
    if not _ATOI.fullmatch(digits):
        raise IntOrStringError(
            f"invalid value for IntOrString: invalid value {plain!r}: not an integer percentage"
        )
    product = int(digits) * total
    return -(-product // 100) if round_up else product // 100


def _plain(value: IntOrString | int | str) -> int | str:
    if isinstance(value, IntOrString):
        return to_json(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise IntOrStringError(
            f"invalid int-or-string {value!r}: expected an integer, a string or an IntOrString"
        )
    return value
