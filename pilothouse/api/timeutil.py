"""Times and durations of the Kubernetes API, and the injectable clock.

* ``meta/v1 Time`` is RFC 3339 with whole seconds in JSON (``2024-01-02T03:04:05Z``) and only
  ``seconds`` on the wire (Kubernetes drops the nanos so JSON and protobuf clients agree).
* ``meta/v1 MicroTime`` is RFC 3339 with exactly six fractional digits
  (``2024-01-02T03:04:05.123456Z``) and ``seconds`` + ``nanos`` truncated to microseconds.
* Parsing accepts what Go's ``time.Parse(time.RFC3339, s)`` accepts: any UTC offset
  (``+05:30``, ``Z``), an optional fraction after the seconds (``.`` or ``,``, any number of
  digits; digits past the microsecond are dropped because Python datetimes stop there).
  MicroTime parsing is as lenient as Time parsing (Go insists on six digits there).
* ``meta/v1 Duration`` is a Go duration string (``1h2m3.5s``, ``300ms``) in JSON and int64
  nanoseconds on the wire; :func:`parse_duration` and :func:`format_duration` follow Go's
  ``time.ParseDuration`` and ``Duration.String`` exactly, nanoseconds as Python ints.

All datetimes handed out are timezone-aware UTC; naive datetimes are refused, because a naive
time is a bug waiting for a server in another timezone.
"""

from __future__ import annotations

import calendar
import re
import threading
import time as _time
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol, runtime_checkable

from pilothouse.gen.k8s.meta.v1 import meta_pb2

__all__ = [
    "Clock",
    "DurationError",
    "FakeClock",
    "SystemClock",
    "TimeFormatError",
    "duration_from_proto",
    "duration_to_proto",
    "duration_to_timedelta",
    "format_duration",
    "format_micro_time",
    "format_time",
    "micro_time_from_proto",
    "micro_time_to_proto",
    "parse_duration",
    "parse_micro_time",
    "parse_time",
    "time_from_proto",
    "time_to_proto",
    "timedelta_to_duration",
]


class TimeFormatError(ValueError):
    """A string that is not an RFC 3339 time, or a datetime that cannot be encoded."""


class DurationError(ValueError):
    """A string that is not a Go duration (message as Go's ``time: invalid duration "x"``)."""


# -- RFC 3339 -------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
    r"(?:[.,](?P<frac>[0-9]+))?"
    r"(?:(?P<z>Z)|(?P<sign>[+-])(?P<oh>[0-9]{2}):(?P<om>[0-9]{2}))",
    re.ASCII,
)


def _parse_rfc3339(text: str) -> datetime:
    if not isinstance(text, str):
        raise TimeFormatError(f"invalid time {text!r}: expected a string")
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise TimeFormatError(
            f'parsing time "{text}": not RFC 3339 (expected e.g. "2006-01-02T15:04:05Z" '
            'or "2006-01-02T15:04:05.999999+07:00")'
        )
    year, month, day = int(m["year"]), int(m["month"]), int(m["day"])
    hour, minute, second = int(m["hour"]), int(m["minute"]), int(m["second"])
    for name, value, low, high in (
        ("month", month, 1, 12),
        ("hour", hour, 0, 23),
        ("minute", minute, 0, 59),
        ("second", second, 0, 59),
    ):
        if not low <= value <= high:
            raise TimeFormatError(f'parsing time "{text}": {name} out of range')
    if year == 0:
        raise TimeFormatError(f'parsing time "{text}": year 0 is outside years 1-9999')
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise TimeFormatError(f'parsing time "{text}": day out of range')
    micro = int((m["frac"] or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if m["sign"]:
        oh, om = int(m["oh"]), int(m["om"])
        if oh > 23 or om > 59:
            raise TimeFormatError(f'parsing time "{text}": time zone offset out of range')
        offset = timedelta(hours=oh, minutes=om)
        if m["sign"] == "-":
            offset = -offset
    local = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    try:
        return local - offset
    except OverflowError:
        raise TimeFormatError(f'parsing time "{text}": out of range once in UTC') from None


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise TimeFormatError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise TimeFormatError(f"refusing naive datetime {value!r}: attach a timezone (UTC)")
    return value.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """A ``meta/v1 Time`` JSON string as an aware UTC datetime (fraction kept to microseconds)."""
    return _parse_rfc3339(text)


def format_time(value: datetime) -> str:
    """``meta/v1 Time`` JSON: UTC, whole seconds (the fraction is dropped), e.g. ``...05Z``."""
    v = _utc(value)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}Z"
    )


def parse_micro_time(text: str) -> datetime:
    """A ``meta/v1 MicroTime`` JSON string as an aware UTC datetime."""
    return _parse_rfc3339(text)


def format_micro_time(value: datetime) -> str:
    """``meta/v1 MicroTime`` JSON: UTC with six fractional digits, e.g. ``...05.123456Z``."""
    v = _utc(value)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
        f".{v.microsecond:06d}Z"
    )


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _split_epoch(value: datetime) -> tuple[int, int]:
    """(seconds since the epoch, microseconds in that second), floor-wise for old times."""
    delta = _utc(value) - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return seconds, delta.microseconds


def time_to_proto(value: datetime) -> meta_pb2.Time:
    """The wire form of a ``meta/v1 Time``: ``seconds`` only, as Kubernetes writes it."""
    seconds, _ = _split_epoch(value)
    return meta_pb2.Time(seconds=seconds)


def time_from_proto(message: meta_pb2.Time) -> datetime:
    """The datetime of a wire ``meta/v1 Time`` (``nanos`` ignored, as Kubernetes does)."""
    return _from_epoch(message.seconds, 0)


def micro_time_to_proto(value: datetime) -> meta_pb2.MicroTime:
    """The wire form of a ``meta/v1 MicroTime``: seconds and nanos (whole microseconds)."""
    seconds, micros = _split_epoch(value)
    return meta_pb2.MicroTime(seconds=seconds, nanos=micros * 1000)


def micro_time_from_proto(message: meta_pb2.MicroTime) -> datetime:
    """The datetime of a wire ``meta/v1 MicroTime`` (nanos truncated to microseconds)."""
    return _from_epoch(message.seconds, message.nanos // 1000)


def _from_epoch(seconds: int, micros: int) -> datetime:
    try:
        return _EPOCH + timedelta(seconds=seconds, microseconds=micros)
    except OverflowError:
        raise TimeFormatError(f"timestamp {seconds}s is outside years 1-9999") from None


# -- Go durations -----------------------------------------------------------------------------

_NS: Final = 1
_US: Final = 1000 * _NS
_MS: Final = 1000 * _US
_S: Final = 1000 * _MS
_MIN: Final = 60 * _S
_H: Final = 60 * _MIN
_UNITS: Final = {
    "ns": _NS,
    "us": _US,
    "\u00b5s": _US,  # micro sign
    "\u03bcs": _US,  # Greek mu
    "ms": _MS,
    "s": _S,
    "m": _MIN,
    "h": _H,
}
_MAX_DURATION: Final = 2**63 - 1


def _go_quote(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return '"' + "".join(out) + '"'


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration``: ``"1h2m3.5s"`` -> nanoseconds (an int).

    A duration is an optional sign and one or more ``<number><unit>`` pairs, units ``ns us µs
    ms s m h``; ``"0"`` needs no unit. Out-of-int64 values and anything else raise
    :class:`DurationError` with Go's message.
    """
    if not isinstance(text, str):
        raise DurationError(f"time: invalid duration {text!r}: expected a string")
    orig = text
    invalid = DurationError("time: invalid duration " + _go_quote(orig))
    negative = False
    if text and text[0] in "+-":
        negative = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise invalid
    total = 0
    i, n = 0, len(text)
    while i < n:
        if not (text[i] == "." or "0" <= text[i] <= "9"):
            raise invalid
        start = i
        while i < n and "0" <= text[i] <= "9":
            i += 1
        whole_digits = text[start:i]
        significant = whole_digits.lstrip("0")
        if len(significant) > 19:  # certainly past 2**63 (and int() of huge strings is slow)
            raise invalid
        whole = int(significant) if significant else 0
        if whole > 2**63:
            raise invalid
        frac, scale, has_frac = 0, 1.0, False
        if i < n and text[i] == ".":
            i += 1
            frac_start = i
            overflow = False
            while i < n and "0" <= text[i] <= "9":
                if not overflow:
                    if frac > _MAX_DURATION // 10:
                        overflow = True
                    else:
                        frac = frac * 10 + int(text[i])
                        scale *= 10
                i += 1
            has_frac = i > frac_start
        if not whole_digits and not has_frac:
            raise invalid
        unit_start = i
        while i < n and text[i] != "." and not ("0" <= text[i] <= "9"):
            i += 1
        unit_name = text[unit_start:i]
        if not unit_name:
            raise DurationError("time: missing unit in duration " + _go_quote(orig))
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise DurationError(
                f"time: unknown unit {_go_quote(unit_name)} in duration {_go_quote(orig)}"
            )
        if whole > 2**63 // unit:
            raise invalid
        value = whole * unit
        if frac > 0:
            # Go adds the fraction through float64; doing the same keeps results bit-identical.
            value += int(float(frac) * (float(unit) / scale))
            if value > 2**63:
                raise invalid
        total += value
        if total > 2**63:
            raise invalid
    if negative:
        return -total
    if total > _MAX_DURATION:
        raise invalid
    return total


def _fmt_frac(value: int, precision: int) -> tuple[str, int]:
    """Fraction digits of value/10**precision without trailing zeros, and the integer part."""
    digits = []
    printed = False
    for _ in range(precision):
        digit = value % 10
        printed = printed or digit != 0
        if printed:
            digits.append(str(digit))
        value //= 10
    text = "." + "".join(reversed(digits)) if printed else ""
    return text, value


def format_duration(nanoseconds: int) -> str:
    """Go's ``Duration.String``: ``3723500000000`` -> ``"1h2m3.5s"``, 0 -> ``"0s"``."""
    if isinstance(nanoseconds, bool) or not isinstance(nanoseconds, int):
        raise DurationError(f"duration must be an int of nanoseconds, got {nanoseconds!r}")
    u = abs(nanoseconds)
    sign = "-" if nanoseconds < 0 else ""
    if u < _S:
        if u == 0:
            return "0s"
        if u < _US:
            return f"{sign}{u}ns"
        if u < _MS:
            frac, whole = _fmt_frac(u, 3)
            return f"{sign}{whole}{frac}\u00b5s"
        frac, whole = _fmt_frac(u, 6)
        return f"{sign}{whole}{frac}ms"
    frac, whole_seconds = _fmt_frac(u, 9)
    out = f"{whole_seconds % 60}{frac}s"
    minutes = whole_seconds // 60
    if minutes > 0:
        out = f"{minutes % 60}m{out}"
        hours = minutes // 60
        if hours > 0:
            out = f"{hours}h{out}"
    return sign + out


def duration_to_proto(nanoseconds: int) -> meta_pb2.Duration:
    """The wire form of a ``meta/v1 Duration``."""
    return meta_pb2.Duration(duration=nanoseconds)


def duration_from_proto(message: meta_pb2.Duration) -> int:
    """Nanoseconds of a wire ``meta/v1 Duration``."""
    return int(message.duration)


def duration_to_timedelta(nanoseconds: int) -> timedelta:
    """A timedelta for a nanosecond count (sub-microsecond remainders truncated toward 0)."""
    micros = abs(nanoseconds) // 1000
    return timedelta(microseconds=-micros if nanoseconds < 0 else micros)


def timedelta_to_duration(value: timedelta) -> int:
    """Nanoseconds in a timedelta (exact)."""
    return (value.days * 86400 + value.seconds) * _S + value.microseconds * _US


# -- clocks ------------------------------------------------------------------------------------


@runtime_checkable
class Clock(Protocol):
    """Where components get time; injected so tests control it (:class:`FakeClock`)."""

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware UTC. May jump (NTP, DST-free)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences are meaningful."""
        ...


class SystemClock:
    """The real clock: ``datetime.now(UTC)`` and ``time.monotonic()``."""

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return _time.monotonic()


_FAKE_START: Final = datetime(2024, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told to; thread-safe.

    ``advance(seconds)`` moves both the wall clock and the monotonic clock; ``set(when)``
    moves only the wall clock (as NTP would), and never the monotonic one.
    """

    def __init__(self, start: datetime = _FAKE_START, monotonic_start: float = 0.0):
        self._lock = threading.Lock()
        self._now = _utc(start)
        self._monotonic = float(monotonic_start)

    def now(self) -> datetime:
        """The fake wall-clock time."""
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        """The fake monotonic reading."""
        with self._lock:
            return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError(f"cannot advance a clock by a negative amount ({seconds}s)")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._monotonic += seconds

    def set(self, when: datetime) -> None:
        """Set the wall clock to ``when`` (aware); the monotonic clock is unchanged."""
        moved = _utc(when)
        with self._lock:
            self._now = moved
