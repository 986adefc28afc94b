"""IntOrString: JSON <-> proto, Parse, and int-or-percent scaling."""

from __future__ import annotations

import pytest

from pilothouse.api import intstr
from pilothouse.api.intstr import IntOrStringError
from pilothouse.gen.k8s.intstr.intstr_pb2 import IntOrString

JSON_CASES = [
    ("int", 8080, IntOrString(type=0, intVal=8080)),
    ("zero", 0, IntOrString(type=0, intVal=0)),
    ("negative", -1, IntOrString(type=0, intVal=-1)),
    ("int32-max", 2**31 - 1, IntOrString(type=0, intVal=2**31 - 1)),
    ("int32-min", -(2**31), IntOrString(type=0, intVal=-(2**31))),
    ("name", "http", IntOrString(type=1, strVal="http")),
    ("percent", "25%", IntOrString(type=1, strVal="25%")),
    ("digits-string-stays-string", "80", IntOrString(type=1, strVal="80")),
    ("empty-string", "", IntOrString(type=1, strVal="")),
]


@pytest.mark.parametrize(
    ("value", "message"), [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES]
)
def test_json_round_trip(value: int | str, message: IntOrString) -> None:
    assert intstr.from_json(value) == message
    assert intstr.to_json(message) == value
    assert type(intstr.to_json(message)) is type(value)
    # the wire form survives serialization, including the zero-valued type
    assert intstr.to_json(IntOrString.FromString(message.SerializeToString())) == value


BAD_JSON = [
    ("bool", True),
    ("float", 1.5),
    ("whole-float", 3.0),
    ("null", None),
    ("list", [1]),
    ("too-big", 2**31),
    ("too-small", -(2**31) - 1),
]


@pytest.mark.parametrize("value", [c[1] for c in BAD_JSON], ids=[c[0] for c in BAD_JSON])
def test_bad_json(value: object) -> None:
    with pytest.raises(IntOrStringError) as info:
        intstr.from_json(value)
    assert repr(value) in str(info.value)


def test_impossible_type() -> None:
    with pytest.raises(IntOrStringError, match="impossible type 7"):
        intstr.to_json(IntOrString(type=7))


PARSE_CASES = [
    ("80", IntOrString(type=0, intVal=80)),
    ("-3", IntOrString(type=0, intVal=-3)),
    ("+3", IntOrString(type=0, intVal=3)),
    ("http", IntOrString(type=1, strVal="http")),
    ("2147483648", IntOrString(type=1, strVal="2147483648")),
    ("1_000", IntOrString(type=1, strVal="1_000")),
    (" 1", IntOrString(type=1, strVal=" 1")),
    ("25%", IntOrString(type=1, strVal="25%")),
]


@pytest.mark.parametrize(("text", "expect"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse(text: str, expect: IntOrString) -> None:
    assert intstr.parse(text) == expect


@pytest.mark.parametrize(
    ("value", "expect"),
    [(5, 5), ("5", 5), ("abc", 0), (IntOrString(type=1, strVal="12"), 12), ("25%", 0)],
    ids=["int", "digits", "word", "proto", "percent"],
)
def test_int_value(value: int | str | IntOrString, expect: int) -> None:
    assert intstr.int_value(value) == expect


# (value, total, round_up, expected)
SCALED_CASES = [
    ("int-ignores-total", 7, 100, True, 7),
    ("25pct-of-10-up", "25%", 10, True, 3),
    ("25pct-of-10-down", "25%", 10, False, 2),
    ("exact", "50%", 10, True, 5),
    ("exact-down", "50%", 10, False, 5),
    ("zero-pct", "0%", 10, True, 0),
    ("hundred-pct", "100%", 7, False, 7),
    ("over-hundred", "150%", 10, True, 15),
    ("one-pct-of-one-up", "1%", 1, True, 1),
    ("one-pct-of-one-down", "1%", 1, False, 0),
    ("negative-pct-up", "-25%", 10, True, -2),
    ("negative-pct-down", "-25%", 10, False, -3),
    ("zero-total", "33%", 0, True, 0),
    ("proto-int", IntOrString(type=0, intVal=4), 10, True, 4),
    ("proto-pct", IntOrString(type=1, strVal="30%"), 5, True, 2),
    ("large-exact", "33%", 10**15, True, 33 * 10**13),
]


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expect"),
    [c[1:] for c in SCALED_CASES],
    ids=[c[0] for c in SCALED_CASES],
)
def test_scaled_value(
    value: int | str | IntOrString, total: int, round_up: bool, expect: int
) -> None:
    assert intstr.scaled_value(value, total, round_up) == expect


BAD_SCALED = [
    ("word-percent", "abc%", "invalid value 'abc%'"),
    ("not-a-percent", "25", "string is not a percentage"),
    ("name", "http", "string is not a percentage"),
    ("fractional-percent", "2.5%", "invalid value '2.5%'"),
    ("bare-percent", "%", "invalid value '%'"),
    ("double-percent", "25%%", "invalid value '25%%'"),
    ("space", " 25%", "invalid value ' 25%'"),
]


@pytest.mark.parametrize(
    ("value", "message"), [c[1:] for c in BAD_SCALED], ids=[c[0] for c in BAD_SCALED]
)
def test_scaled_value_errors(value: str, message: str) -> None:
    with pytest.raises(IntOrStringError) as info:
        intstr.scaled_value(value, 10, True)
    assert message in str(info.value)
    assert str(info.value).startswith("invalid value for IntOrString")


def test_scaled_value_rejects_non_values() -> None:
    with pytest.raises(IntOrStringError):
        intstr.scaled_value(1.5, 10, True)  # type: ignore[arg-type]
