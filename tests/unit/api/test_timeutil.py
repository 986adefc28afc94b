"""RFC 3339 Time/MicroTime, Go durations, and the clocks."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.api import timeutil
from pilothouse.api.timeutil import (
    Clock,
    DurationError,
    FakeClock,
    SystemClock,
    TimeFormatError,
    format_duration,
    parse_duration,
)
from pilothouse.gen.k8s.meta.v1 import meta_pb2


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


PARSE_TIME_CASES = [
    ("zulu", "2024-01-02T03:04:05Z", utc(2024, 1, 2, 3, 4, 5)),
    ("fraction", "2024-01-02T03:04:05.5Z", utc(2024, 1, 2, 3, 4, 5, 500000)),
    ("micro", "2024-01-02T03:04:05.123456Z", utc(2024, 1, 2, 3, 4, 5, 123456)),
    ("nano-truncated", "2024-01-02T03:04:05.123456789Z", utc(2024, 1, 2, 3, 4, 5, 123456)),
    ("comma-fraction", "2024-01-02T03:04:05,25Z", utc(2024, 1, 2, 3, 4, 5, 250000)),
    ("plus-offset", "2024-01-02T08:34:05+05:30", utc(2024, 1, 2, 3, 4, 5)),
    ("minus-offset", "2024-01-01T22:04:05-05:00", utc(2024, 1, 2, 3, 4, 5)),
    ("zero-offset", "2024-01-02T03:04:05+00:00", utc(2024, 1, 2, 3, 4, 5)),
    ("leap-day", "2024-02-29T00:00:00Z", utc(2024, 2, 29)),
    ("year-one", "0001-01-01T00:00:00Z", utc(1, 1, 1)),
    ("last-second", "9999-12-31T23:59:59Z", utc(9999, 12, 31, 23, 59, 59)),
    ("pre-epoch", "1969-12-31T23:59:59.5Z", utc(1969, 12, 31, 23, 59, 59, 500000)),
]


@pytest.mark.parametrize(
    ("text", "expect"), [c[1:] for c in PARSE_TIME_CASES], ids=[c[0] for c in PARSE_TIME_CASES]
)
def test_parse_time(text: str, expect: datetime) -> None:
    got = timeutil.parse_time(text)
    assert got == expect
    assert got.tzinfo is UTC
    assert timeutil.parse_micro_time(text) == expect


BAD_TIMES = [
    ("space-separator", "2024-01-02 03:04:05Z", "not RFC 3339"),
    ("lowercase-t", "2024-01-02t03:04:05Z", "not RFC 3339"),
    ("no-zone", "2024-01-02T03:04:05", "not RFC 3339"),
    ("date-only", "2024-01-02", "not RFC 3339"),
    ("short-offset", "2024-01-02T03:04:05+0530", "not RFC 3339"),
    ("empty-fraction", "2024-01-02T03:04:05.Z", "not RFC 3339"),
    ("month-13", "2024-13-02T03:04:05Z", "month out of range"),
    ("feb-30", "2024-02-30T03:04:05Z", "day out of range"),
    ("not-leap", "2023-02-29T03:04:05Z", "day out of range"),
    ("hour-24", "2024-01-02T24:04:05Z", "hour out of range"),
    ("minute-60", "2024-01-02T03:60:05Z", "minute out of range"),
    ("leap-second", "2024-01-02T03:04:60Z", "second out of range"),
    ("offset-hours", "2024-01-02T03:04:05+24:00", "offset out of range"),
    ("year-zero", "0000-01-01T00:00:00Z", "year 0"),
    ("underflow", "0001-01-01T00:00:00+01:00", "out of range"),
    ("trailing", "2024-01-02T03:04:05Zjunk", "not RFC 3339"),
    ("unicode-digits", "\uff12\uff10\uff12\uff14-01-02T03:04:05Z", "not RFC 3339"),
]


@pytest.mark.parametrize(
    ("text", "message"), [c[1:] for c in BAD_TIMES], ids=[c[0] for c in BAD_TIMES]
)
def test_bad_times(text: str, message: str) -> None:
    with pytest.raises(TimeFormatError) as info:
        timeutil.parse_time(text)
    assert message in str(info.value)
    assert text in str(info.value)


def test_parse_time_rejects_non_strings() -> None:
    with pytest.raises(TimeFormatError):
        timeutil.parse_time(12)  # type: ignore[arg-type]


FORMAT_CASES = [
    ("whole", utc(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05Z", "2024-01-02T03:04:05.000000Z"),
    (
        "fraction-dropped",
        utc(2024, 1, 2, 3, 4, 5, 999999),
        "2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05.999999Z",
    ),
    (
        "offset-converted",
        datetime(2024, 1, 2, 8, 34, 5, 120000, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        "2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05.120000Z",
    ),
    ("year-one-padded", utc(1, 2, 3), "0001-02-03T00:00:00Z", "0001-02-03T00:00:00.000000Z"),
]


@pytest.mark.parametrize(
    ("value", "time_text", "micro_text"),
    [c[1:] for c in FORMAT_CASES],
    ids=[c[0] for c in FORMAT_CASES],
)
def test_format(value: datetime, time_text: str, micro_text: str) -> None:
    assert timeutil.format_time(value) == time_text
    assert timeutil.format_micro_time(value) == micro_text


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(TimeFormatError, match="naive"):
        timeutil.format_time(datetime(2024, 1, 1))
    with pytest.raises(TimeFormatError, match="naive"):
        timeutil.time_to_proto(datetime(2024, 1, 1))


PROTO_CASES = [
    ("epoch", utc(1970, 1, 1), 0, 0),
    ("recent", utc(2024, 1, 2, 3, 4, 5, 123456), 1704164645, 123456000),
    ("pre-epoch-floors", utc(1969, 12, 31, 23, 59, 59, 500000), -1, 500000000),
]


@pytest.mark.parametrize(
    ("value", "seconds", "nanos"), [c[1:] for c in PROTO_CASES], ids=[c[0] for c in PROTO_CASES]
)
def test_proto(value: datetime, seconds: int, nanos: int) -> None:
    t = timeutil.time_to_proto(value)
    assert (t.seconds, t.nanos) == (seconds, 0)  # Time carries whole seconds only
    assert timeutil.time_from_proto(t) == value.replace(microsecond=0)
    m = timeutil.micro_time_to_proto(value)
    assert (m.seconds, m.nanos) == (seconds, nanos)
    assert timeutil.micro_time_from_proto(m) == value


def test_proto_reads_ignore_extra_precision() -> None:
    assert timeutil.time_from_proto(meta_pb2.Time(seconds=10, nanos=999)) == utc(
        1970, 1, 1, 0, 0, 10
    )
    micro = timeutil.micro_time_from_proto(meta_pb2.MicroTime(seconds=10, nanos=1999))
    assert micro == utc(1970, 1, 1, 0, 0, 10, 1)
    with pytest.raises(TimeFormatError):
        timeutil.time_from_proto(meta_pb2.Time(seconds=10**15))


# -- durations: expectations from Go's time package ------------------------------------------

DURATION_CASES = [
    ("0s", 0),
    ("1ns", 1),
    ("1.1µs", 1100),
    ("2.2ms", 2200 * 1000),
    ("3.3s", 3300 * 1000 * 1000),
    ("4m5s", (4 * 60 + 5) * 10**9),
    ("4m5.001s", (4 * 60 + 5) * 10**9 + 10**6),
    ("5h6m7.001s", ((5 * 60 + 6) * 60 + 7) * 10**9 + 10**6),
    ("8m0.000000001s", 8 * 60 * 10**9 + 1),
    ("1h0m0s", 3600 * 10**9),
    ("2562047h47m16.854775807s", 2**63 - 1),
    ("-2562047h47m16.854775808s", -(2**63)),
    ("-1m0s", -60 * 10**9),
    ("300ms", 300 * 10**6),
    ("1h2m3.5s", 3723500 * 10**6),
]


@pytest.mark.parametrize(("text", "ns"), DURATION_CASES, ids=[c[0] for c in DURATION_CASES])
def test_duration_format_and_parse(text: str, ns: int) -> None:
    assert format_duration(ns) == text
    assert parse_duration(text) == ns


PARSE_DURATION_CASES = [
    ("0", 0),
    ("+0", 0),
    ("-0", 0),
    ("5s", 5 * 10**9),
    ("30s", 30 * 10**9),
    ("1478s", 1478 * 10**9),
    ("-5s", -5 * 10**9),
    ("+5s", 5 * 10**9),
    ("-0s", 0),
    ("+0s", 0),
    ("5.0s", 5 * 10**9),
    ("5.6s", 5600 * 10**6),
    ("5.s", 5 * 10**9),
    (".5s", 500 * 10**6),
    ("1.0s", 10**9),
    ("1.00s", 10**9),
    ("1.004s", 1004 * 10**6),
    ("1.0040s", 1004 * 10**6),
    ("100.00100s", 100001 * 10**6),
    ("10ns", 10),
    ("11us", 11000),
    ("12µs", 12000),
    ("12μs", 12000),
    ("13ms", 13 * 10**6),
    ("14s", 14 * 10**9),
    ("15m", 15 * 60 * 10**9),
    ("16h", 16 * 3600 * 10**9),
    ("3h30m", (3 * 60 + 30) * 60 * 10**9),
    ("10.5s4m", 4 * 60 * 10**9 + 10500 * 10**6),
    ("-2m3.4s", -(2 * 60 * 10**9 + 3400 * 10**6)),
    ("1h2m3s4ms5us6ns", 3600 * 10**9 + 2 * 60 * 10**9 + 3 * 10**9 + 4 * 10**6 + 5000 + 6),
    ("39h9m14.425s", 140954425 * 10**6),
    ("52763797000ns", 52763797000),
    ("0.3333333333333333333h", 20 * 60 * 10**9),
    ("9007199254740993ns", 2**53 + 1),
    ("9223372036854775807ns", 2**63 - 1),
    ("9223372036854775.807us", 2**63 - 1),
    ("9223372036s854ms775us807ns", 2**63 - 1),
    ("-9223372036854775808ns", -(2**63)),
    ("-9223372036854775.808us", -(2**63)),
    ("0.100000000000000000000h", 6 * 60 * 10**9),
    ("0.830103483285477580700h", 49 * 60 * 10**9 + 48 * 10**9 + 372539827),
    ("000000000000000000001s", 10**9),
]


@pytest.mark.parametrize(
    ("text", "ns"), PARSE_DURATION_CASES, ids=[c[0] for c in PARSE_DURATION_CASES]
)
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


BAD_DURATIONS = [
    ("", 'time: invalid duration ""'),
    ("3", 'time: missing unit in duration "3"'),
    ("-", 'time: invalid duration "-"'),
    ("s", 'time: invalid duration "s"'),
    (".", 'time: invalid duration "."'),
    ("-.", 'time: invalid duration "-."'),
    (".s", 'time: invalid duration ".s"'),
    ("+.s", 'time: invalid duration "+.s"'),
    ("1d", 'time: unknown unit "d" in duration "1d"'),
    ("1 s", 'time: unknown unit " s" in duration "1 s"'),
    ("\x85\x85", 'time: invalid duration "\\x85\\x85"'),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ("9223372036854775.808us", 'time: invalid duration "9223372036854775.808us"'),
    ("9223372036854ms775us808ns", 'time: invalid duration "9223372036854ms775us808ns"'),
    ("-9223372036854775809ns", 'time: invalid duration "-9223372036854775809ns"'),
    ("1" + "0" * 100 + "s", "time: invalid duration"),
]


@pytest.mark.parametrize(
    ("text", "message"), BAD_DURATIONS, ids=[repr(c[0])[:30] for c in BAD_DURATIONS]
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert str(info.value).startswith(message)


def test_duration_type_errors() -> None:
    with pytest.raises(DurationError):
        parse_duration(5)  # type: ignore[arg-type]
    with pytest.raises(DurationError):
        format_duration(1.5)  # type: ignore[arg-type]


def test_duration_proto_and_timedelta() -> None:
    ns = parse_duration("1h2m3.5s")
    assert timeutil.duration_from_proto(timeutil.duration_to_proto(ns)) == ns
    assert timeutil.duration_to_timedelta(ns) == timedelta(hours=1, minutes=2, seconds=3.5)
    assert timeutil.duration_to_timedelta(-1500) == timedelta(microseconds=-1)
    assert timeutil.timedelta_to_duration(timedelta(days=1, microseconds=3)) == 86400 * 10**9 + 3000


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_duration_round_trip(ns: int) -> None:
    assert parse_duration(format_duration(ns)) == ns


@given(st.datetimes(timezones=st.just(UTC)))
def test_micro_time_round_trip(value: datetime) -> None:
    assert timeutil.parse_micro_time(timeutil.format_micro_time(value)) == value
    assert timeutil.micro_time_from_proto(timeutil.micro_time_to_proto(value)) == value
    assert timeutil.parse_time(timeutil.format_time(value)) == value.replace(microsecond=0)


# -- clocks ---------------------------------------------------------------------------------


def test_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(FakeClock(), Clock)


def test_system_clock_is_aware_and_monotonic() -> None:
    clock = SystemClock()
    assert clock.now().tzinfo is UTC
    first = clock.monotonic()
    assert clock.monotonic() >= first


def test_fake_clock() -> None:
    clock = FakeClock(start=utc(2024, 5, 1), monotonic_start=100.0)
    assert clock.now() == utc(2024, 5, 1)
    assert clock.monotonic() == 100.0
    clock.advance(1.5)
    assert clock.now() == utc(2024, 5, 1, 0, 0, 1, 500000)
    assert clock.monotonic() == 101.5
    clock.set(utc(2023, 1, 1))  # the wall clock may jump back; the monotonic one may not
    assert clock.now() == utc(2023, 1, 1)
    assert clock.monotonic() == 101.5
    with pytest.raises(ValueError, match="negative"):
        clock.advance(-1)
    with pytest.raises(TimeFormatError):
        clock.set(datetime(2024, 1, 1))


def test_fake_clock_is_thread_safe() -> None:
    clock = FakeClock()
    threads = [
        threading.Thread(target=lambda: [clock.advance(1) for _ in range(1000)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.monotonic() == 4000.0
    assert clock.now() == utc(2024, 1, 1) + timedelta(seconds=4000)
