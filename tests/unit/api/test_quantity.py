"""resource.Quantity semantics: parsing, canonical strings, exact arithmetic.

Expected values are Kubernetes' own (apimachinery 1.32 ``quantity_test.go`` expectations,
restated here as nano-unit integers).
"""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.api.quantity import (
    Format,
    Quantity,
    QuantityError,
    canonical,
    parse_quantity,
    quantity_from_json,
)

BIN, DEC, EXP = Format.BINARY_SI, Format.DECIMAL_SI, Format.DECIMAL_EXPONENT
MAX_INT64 = 2**63 - 1


def n(mantissa: int, exponent: int) -> int:
    """mantissa * 10**exponent as nano-units."""
    shift = exponent + 9
    return mantissa * 10**shift if shift >= 0 else mantissa // 10**-shift


# (input, value in nano-units, format)
PARSE_CASES = [
    ("0", 0, DEC),
    ("0n", 0, DEC),
    ("0u", 0, DEC),
    ("0m", 0, DEC),
    ("0Ki", 0, BIN),
    ("0k", 0, DEC),
    ("0Mi", 0, BIN),
    ("0M", 0, DEC),
    ("0Gi", 0, BIN),
    ("0G", 0, DEC),
    ("0Ti", 0, BIN),
    ("0T", 0, DEC),
    ("1", n(1, 0), DEC),
    ("1Ki", n(1024, 0), BIN),
    ("8Ki", n(8 * 1024, 0), BIN),
    ("7Mi", n(7 * 1024**2, 0), BIN),
    ("6Gi", n(6 * 1024**3, 0), BIN),
    ("5Ti", n(5 * 1024**4, 0), BIN),
    ("4Pi", n(4 * 1024**5, 0), BIN),
    ("3Ei", n(3 * 1024**6, 0), BIN),
    ("10Ti", n(10 * 1024**4, 0), BIN),
    ("100Ti", n(100 * 1024**4, 0), BIN),
    ("5n", n(5, -9), DEC),
    ("4u", n(4, -6), DEC),
    ("3m", n(3, -3), DEC),
    ("9", n(9, 0), DEC),
    ("8k", n(8, 3), DEC),
    ("50k", n(5, 4), DEC),
    ("7M", n(7, 6), DEC),
    ("6G", n(6, 9), DEC),
    ("5T", n(5, 12), DEC),
    ("40T", n(4, 13), DEC),
    ("300T", n(3, 14), DEC),
    ("2P", n(2, 15), DEC),
    ("1E", n(1, 18), DEC),
    ("1E-3", n(1, -3), EXP),
    ("1e3", n(1, 3), EXP),
    ("1E6", n(1, 6), EXP),
    ("1e9", n(1, 9), EXP),
    ("1E12", n(1, 12), EXP),
    ("1e15", n(1, 15), EXP),
    ("1E18", n(1, 18), EXP),
    ("1e14", n(1, 14), EXP),
    ("1e13", n(1, 13), EXP),
    ("100.035k", n(100035, 0), DEC),
    ("0.001", n(1, -3), DEC),
    ("0.0005k", n(5, -1), DEC),
    ("0.005", n(5, -3), DEC),
    ("0.05", n(5, -2), DEC),
    ("0.5", n(5, -1), DEC),
    ("0.00050k", n(5, -1), DEC),
    ("0.00500", n(5, -3), DEC),
    ("0.05000", n(5, -2), DEC),
    ("0.50000", n(5, -1), DEC),
    ("0.5e0", n(5, -1), EXP),
    ("0.5e-1", n(5, -2), EXP),
    ("0.5e-2", n(5, -3), EXP),
    ("10.035M", n(10035, 3), DEC),
    ("1.2e3", n(12, 2), EXP),
    ("1.3E+6", n(13, 5), EXP),
    ("1.40e9", n(14, 8), EXP),
    ("1.53E12", n(153, 10), EXP),
    ("1.6e15", n(16, 14), EXP),
    ("1.7E18", n(17, 17), EXP),
    ("9.01", n(901, -2), DEC),
    ("8.1k", n(81, 2), DEC),
    ("7.123456M", n(7123456, 0), DEC),
    ("6.987654321G", n(6987654321, 0), DEC),
    ("5.444T", n(5444, 9), DEC),
    ("40.1T", n(401, 11), DEC),
    ("300.2T", n(3002, 11), DEC),
    ("2.5P", n(25, 14), DEC),
    ("1.01E", n(101, 16), DEC),
    # rounded up to the nano unit, or capped
    ("3.001n", n(4, -9), DEC),
    ("1.1E-9", n(2, -9), EXP),
    ("0.0000000001", n(1, -9), DEC),
    ("0.0000000005", n(1, -9), DEC),
    ("0.00000000050", n(1, -9), DEC),
    ("0.5e-9", n(1, -9), EXP),
    ("0.9n", n(1, -9), DEC),
    ("0.00000012345", n(124, -9), DEC),
    ("0.00000012354", n(124, -9), DEC),
    ("1e-1000", n(1, -9), EXP),
    ("9Ei", n(MAX_INT64, 0), BIN),
    ("9223372036854775807Ki", n(MAX_INT64, 0), BIN),
    ("12E", n(12, 18), DEC),
    # fractional binary
    ("100.035Ki", n(10243584, -2), BIN),
    ("0.5Mi", n(512 * 1024, 0), BIN),
    ("0.05Gi", n(536870912, -1), BIN),
    ("0.025Ti", n(274877906944, -1), BIN),
    # odd but valid
    ("0.000000000001Ki", n(2, -9), DEC),  # rounds up, changes format
    (".001", n(1, -3), DEC),
    (".0001k", n(100, -3), DEC),
    ("1.", n(1, 0), DEC),
    ("1.G", n(1, 9), DEC),
    ("+", 0, DEC),
    ("-", 0, DEC),
    (".", 0, DEC),
    ("Ki", 0, BIN),
]


@pytest.mark.parametrize(("text", "nanos", "fmt"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse(text: str, nanos: int, fmt: Format) -> None:
    q = parse_quantity(text)
    assert q.nanos == nanos
    assert q.format is fmt


@pytest.mark.parametrize(("text", "nanos", "fmt"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse_with_sign(text: str, nanos: int, fmt: Format) -> None:
    if text[0] in "+-":
        return  # a second sign is not in the grammar (tested in INVALID)
    assert parse_quantity("-" + text).nanos == -nanos
    assert parse_quantity("-" + text).format is fmt
    assert parse_quantity("+" + text).nanos == nanos
    assert parse_quantity("+" + text).format is fmt


INVALID = [
    ("empty", "", "quantities must match the regular expression"),
    ("double-dot", "1.1.M", "quantities must match the regular expression"),
    ("sign-inside", "1+1.0M", "quantities must match the regular expression"),
    ("bad-suffix-mi", "0.1mi", "unable to parse quantity's suffix"),
    ("bad-suffix-am", "0.1am", "quantities must match the regular expression"),
    ("letters", "aoeu", "quantities must match the regular expression"),
    ("dot-i", ".5i", "unable to parse quantity's suffix"),
    ("bare-i", "1i", "unable to parse quantity's suffix"),
    ("i-fraction", "-3.01i", "unable to parse quantity's suffix"),
    ("exponent-without-digits", "-3.01e-", "unable to parse quantity's suffix"),
    ("leading-space", " 1", "quantities must match the regular expression"),
    ("trailing-space", "1 ", "quantities must match the regular expression"),
    ("two-signs", "--1", "unable to parse quantity's suffix"),  # Kubernetes reads "-1" as suffix
    ("lone-e", "1e", "unable to parse quantity's suffix"),
    ("no-digits-slow-path", ".e-10", "unable to parse numeric part of quantity"),
    ("exponent-too-large", "1e1001", "out of range"),
    ("too-many-digits", "1" * 1001, "significant digits"),
    ("unicode-digits", "١٢", "quantities must match the regular expression"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert message in str(info.value)
    assert repr(text) in str(info.value)  # names the bad input


# (canonical, an alternate spelling of the same value); from Kubernetes' TestQuantityString
STRING_CASES = [
    ("1Gi", "1024Mi"),
    ("300Mi", "307200Ki"),
    ("6Ki", None),
    ("1001Gi", "1025024Mi"),
    ("1Ti", "1024Gi"),
    ("5", "5000m"),
    ("500m", "0.5"),
    ("1G", "1000M"),
    ("1G", "0.001T"),
    ("1m", "1000u"),
    ("80m", None),
    ("1080m", "1.08"),
    ("1080m", "1080000000n"),
    ("300M", None),
    ("1T", None),
    ("1234567M", None),
    ("3k", None),
    ("1025", None),
    ("0", "00"),
    ("1e9", ".001e12"),
    ("1e-3", "0.001e0"),
    ("1e-9", "1000e-12"),
    ("80e-3", None),
    ("300e6", None),
    ("1e12", None),
    ("1e3", None),
    ("3e3", None),
    ("1n", None),
    ("80n", None),
    ("1080n", None),
    ("1u", None),
    ("80u", None),
    ("1080u", None),
]


@pytest.mark.parametrize(
    ("expect", "alternate"), STRING_CASES, ids=[f"{e}<-{a}" for e, a in STRING_CASES]
)
def test_canonical_string(expect: str, alternate: str | None) -> None:
    assert str(parse_quantity(expect)) == expect
    if alternate is not None:
        assert canonical(alternate) == expect
        assert parse_quantity(alternate) == parse_quantity(expect)
        if expect != "0":
            assert str(-parse_quantity(alternate)) == "-" + expect


EMIT_CASES = [
    ("1Ki", "1Ki"),
    ("1Mi", "1Mi"),
    ("1Gi", "1Gi"),
    ("1024Mi", "1Gi"),
    ("1000M", "1G"),
    (".001Ki", "1024m"),
    (".000001Ki", "1024u"),
    (".000000001Ki", "1024n"),
    (".000000000001Ki", "2n"),
    ("1.5Gi", "1536Mi"),
    ("0.5Gi", "512Mi"),
    ("1.5", "1500m"),
    ("0.5", "500m"),
    ("1000m", "1"),
    ("100M", "100M"),
    ("1e3", "1e3"),
    ("1000", "1k"),
    ("1100", "1100"),
    ("1.5k", "1500"),
    ("2000Ki", "2000Ki"),
    ("1536Ki", "1536Ki"),
    ("1023", "1023"),
    ("1025Ki", "1025Ki"),
    ("0.1", "100m"),
    ("9Ei", "9223372036854775807"),
    ("1000E", "1000E"),  # Kubernetes drops the suffix here; we keep the value right
    ("12e-3", "12e-3"),
    ("1e-12", "1e-9"),
    ("100.035Ki", "102435840m"),
    # Kubernetes echoes input that it judges already canonical, spelling and all
    ("+1", "+1"),
    ("1E3", "1E3"),
    ("1e+3", "1e+3"),
    ("010", "010"),
    ("1.500k", "1.500k"),
    ("12E-3", "12E-3"),
]


@pytest.mark.parametrize(("text", "expect"), EMIT_CASES, ids=[c[0] for c in EMIT_CASES])
def test_emit(text: str, expect: str) -> None:
    assert canonical(text) == expect
    if text not in ("+1",) and parse_quantity(text):
        negated = canonical("-" + text.lstrip("+"))
        assert negated == "-" + expect


def test_zero_is_never_negative() -> None:
    assert canonical("-0") == "0"
    assert str(-parse_quantity("0Mi")) == "0"
    assert str(parse_quantity("1m") - parse_quantity("1m")) == "0"


NUMBER_CASES = [
    ("int", 1000, "1k"),
    ("int-zero", 0, "0"),
    ("negative-int", -5, "-5"),
    ("float-half", 0.5, "500m"),
    ("float-whole", 2.0, "2"),
    ("float-small", 1e-05, "10e-6"),
    ("float-large", 1.5e22, "1.5e+22"),  # repr is already canonical, so it is echoed
    ("float-large-2", 1.25e22, "12500e18"),
]


@pytest.mark.parametrize(
    ("value", "expect"), [c[1:] for c in NUMBER_CASES], ids=[c[0] for c in NUMBER_CASES]
)
def test_parse_numbers(value: int | float, expect: str) -> None:
    assert canonical(value) == expect


@pytest.mark.parametrize("value", [True, float("nan"), float("inf"), None, [1], b"1"], ids=repr)
def test_rejects_non_numbers(value: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(value)  # type: ignore[arg-type]


def test_from_json_trims_whitespace_like_kubernetes() -> None:
    assert quantity_from_json(" 100m ") == parse_quantity("100m")
    assert quantity_from_json(3) == parse_quantity("3")
    with pytest.raises(QuantityError):
        quantity_from_json({"cpu": 1})


# (input, value(), milli_value()) -- both round away from zero
ROUNDING_CASES = [
    ("1", 1, 1000),
    ("1.5", 2, 1500),
    ("-1.5", -2, -1500),
    ("1m", 1, 1),
    ("0.1m", 1, 1),
    ("-0.1m", -1, -1),
    ("1n", 1, 1),
    ("999999n", 1, 1),
    ("1000001n", 1, 2),
    ("-1000001n", -1, -2),
    ("1Ki", 1024, 1024000),
    ("1.5Gi", 1610612736, 1610612736000),
    ("0", 0, 0),
    ("9Ei", MAX_INT64, MAX_INT64 * 1000),
]


@pytest.mark.parametrize(
    ("text", "value", "milli"), ROUNDING_CASES, ids=[c[0] for c in ROUNDING_CASES]
)
def test_value_and_milli_value(text: str, value: int, milli: int) -> None:
    q = parse_quantity(text)
    assert q.value() == value
    assert q.milli_value() == milli
    assert q.scaled_value(0) == value
    assert q.scaled_value(-3) == milli


SCALED_CASES = [
    (-9, -9, 1),
    (-9, -6, 1),
    (-9, 0, 1),
    (-6, -9, 1000),
    (-3, -9, 10**6),
    (0, -9, 10**9),
    (0, -3, 1000),
    (0, 0, 1),
    (2, -2, 100 * 100),
    (-3, 3, 1),
]


@pytest.mark.parametrize(
    ("from_scale", "to_scale", "expected"),
    SCALED_CASES,
    ids=[f"{a}->{b}" for a, b, _ in SCALED_CASES],
)
def test_scaled_value(from_scale: int, to_scale: int, expected: int) -> None:
    q = Quantity.from_nanos(10 ** (from_scale + 9))
    assert q.scaled_value(to_scale) == expected


def test_as_float_and_fraction() -> None:
    q = parse_quantity("1.5Gi")
    assert q.as_float() == 1610612736.0
    assert parse_quantity("100m").as_float() == 0.1
    assert parse_quantity("1m").as_fraction().denominator == 1000


ARITHMETIC_CASES = [
    # (a, op, b, expected value, expected string)
    ("10", "+", "10", "20", "20"),
    ("10", "+", "1", "11", "11"),
    ("1Gi", "+", "512Mi", "1536Mi", "1536Mi"),
    ("0", "+", "1Ki", "1Ki", "1Ki"),  # zero takes the other's format
    ("0", "-", "1Ki", "-1Ki", "-1Ki"),
    ("10", "-", "10", "0", "0"),
    ("100m", "+", "200m", "300m", "300m"),
    ("1", "-", "1m", "999m", "999m"),
    ("1e3", "+", "1k", "2e3", "2e3"),  # keeps the left format
    ("1k", "+", "1e3", "2k", "2k"),
    ("100m", "-", "1", "-900m", "-900m"),
]


@pytest.mark.parametrize(
    ("a", "op", "b", "value", "text"),
    ARITHMETIC_CASES,
    ids=[f"{a}{op}{b}" for a, op, b, _, _ in ARITHMETIC_CASES],
)
def test_arithmetic(a: str, op: str, b: str, value: str, text: str) -> None:
    qa, qb = parse_quantity(a), parse_quantity(b)
    result = qa + qb if op == "+" else qa - qb
    assert result == parse_quantity(value)
    assert str(result) == text


MUL_CASES = [
    ("10", 10, "100"),
    ("10", 0, "0"),
    ("10", -10, "-100"),
    ("-50", -50, "2500"),
    ("100m", 3, "300m"),
    ("1Gi", 2, "2Gi"),
    (str(MAX_INT64), 2, str(2 * MAX_INT64)),  # exact, no int64 overflow
]


@pytest.mark.parametrize(("a", "k", "expect"), MUL_CASES, ids=[f"{a}*{k}" for a, k, _ in MUL_CASES])
def test_mul(a: str, k: int, expect: str) -> None:
    assert parse_quantity(a) * k == parse_quantity(expect)
    assert k * parse_quantity(a) == parse_quantity(expect)


def test_mul_rejects_non_ints() -> None:
    with pytest.raises(TypeError):
        parse_quantity("1") * 1.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        parse_quantity("1") + 1  # type: ignore[operator]


def test_neg_keeps_format() -> None:
    assert str(-parse_quantity("9010m")) == "-9010m"
    negated = -parse_quantity("1Ki")
    assert str(-negated) == "1Ki"
    assert (-parse_quantity("1Ki")).format is BIN


COMPARE_CASES = [
    ("0", "0", 0),
    ("100m", "50m", 1),
    ("50m", "100m", -1),
    ("10000T", "100Gi", 1),
    ("1Ki", "1024", 0),
    ("1e3", "1k", 0),
    ("-1", "0", -1),
    ("999m", "1", -1),
]


@pytest.mark.parametrize(
    ("a", "b", "cmp"), COMPARE_CASES, ids=[f"{a}vs{b}" for a, b, _ in COMPARE_CASES]
)
def test_compare(a: str, b: str, cmp: int) -> None:
    qa, qb = parse_quantity(a), parse_quantity(b)
    assert (qa > qb) == (cmp > 0)
    assert (qa < qb) == (cmp < 0)
    assert (qa == qb) == (cmp == 0)
    assert (qa >= qb) == (cmp >= 0)
    assert (qa <= qb) == (cmp <= 0)
    if cmp == 0:
        assert hash(qa) == hash(qb)


def test_immutable_hashable_and_copyable() -> None:
    q = parse_quantity("1.5Gi")
    with pytest.raises(AttributeError):
        q._nanos = 1  # type: ignore[misc]
    assert {parse_quantity("1Ki"), parse_quantity("1024")} == {parse_quantity("1Ki")}
    assert copy.deepcopy(q) is q
    restored = pickle.loads(pickle.dumps(parse_quantity("1E3")))
    assert restored == parse_quantity("1e3")
    assert str(restored) == "1E3"
    assert restored.format is EXP
    assert repr(q) == "Quantity('1536Mi')"
    assert Quantity("500m") == parse_quantity("0.5")
    assert Quantity(q) is q


def test_string_parses_are_memoized() -> None:
    assert parse_quantity("123m") is parse_quantity("123m")


def test_constructors() -> None:
    assert str(Quantity.from_milli(1500)) == "1500m"
    assert str(Quantity.from_int(2048, BIN)) == "2Ki"
    assert str(Quantity.from_int(5, BIN)) == "5"
    assert str(Quantity.from_nanos(1500, EXP)) == "1500e-9"
    assert str(parse_quantity("1Ki").with_format(DEC)) == "1024"
    assert not Quantity.from_int(0)
    assert parse_quantity("-1m").sign() == -1


# -- properties ----------------------------------------------------------------------------

_suffixes = st.sampled_from(
    [
        "",
        "n",
        "u",
        "m",
        "k",
        "M",
        "G",
        "T",
        "P",
        "E",
        "Ki",
        "Mi",
        "Gi",
        "Ti",
        "Pi",
        "Ei",
        "e3",
        "E-3",
        "e-9",
        "e12",
        "e0",
    ]
)
quantity_texts = st.builds(
    lambda sign, whole, frac, suffix: f"{sign}{whole}{frac}{suffix}",
    st.sampled_from(["", "-", "+"]),
    st.integers(min_value=0, max_value=10**12).map(str),
    st.one_of(st.just(""), st.integers(min_value=0, max_value=10**6).map(lambda f: f".{f}")),
    _suffixes,
)
quantities = quantity_texts.map(parse_quantity)


@given(quantities)
def test_canonical_round_trips(q: Quantity) -> None:
    again = parse_quantity(str(q))
    assert again == q
    assert str(again) == str(q)


@given(quantities, quantities)
def test_ordering_matches_values(a: Quantity, b: Quantity) -> None:
    assert (a < b) == (a.as_fraction() < b.as_fraction())
    assert (a == b) == (a.as_fraction() == b.as_fraction())


@given(quantities, quantities, quantities)
def test_addition_is_commutative_and_associative(a: Quantity, b: Quantity, c: Quantity) -> None:
    assert a + b == b + a
    assert (a + b) + c == a + (b + c)
    assert (a + b) - b == a


@given(quantities)
def test_milli_value_rounds_away_from_zero(q: Quantity) -> None:
    exact = q.as_fraction() * 1000
    m = q.milli_value()
    assert abs(m) >= abs(exact)
    assert abs(m) - abs(exact) < 1
