"""Cron schedules as CronJobs write them: parse once, then ask for the next time.

Syntax (what Kubernetes accepts through robfig/cron's standard parser):

- five fields, ``minute hour day-of-month month day-of-week``, each ``*``
  (or ``?`` in the day fields), a number, a range ``a-b``, a step ``*/n`` or
  ``a-b/n`` or ``a/n`` (from ``a`` to the field's end), or a comma list of
  those; months ``jan``..``dec`` and weekdays ``sun``..``sat`` by name
  (any case), weekday 7 is Sunday as well;
- if both day fields are restricted, a day matches when *either* matches
  (Vixie cron's rule); if one is ``*``, only the other counts;
- descriptors ``@yearly``/``@annually``, ``@monthly``, ``@weekly``,
  ``@daily``/``@midnight``, ``@hourly``, and ``@every <duration>`` (a Go
  duration such as ``90s`` or ``1h30m``, at least one second).

Times are computed in a time zone (``zoneinfo``); wall-clock times a DST
jump skips are not run, as robfig/cron does not run them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from pilothouse.api.timeutil import DurationError, parse_duration

__all__ = ["CronSchedule", "EverySchedule", "Schedule", "ScheduleError", "parse_schedule"]


class ScheduleError(ValueError):
    """A schedule that cannot be parsed; the message says which part and why."""


class Schedule(Protocol):
    def next(self, after: datetime) -> datetime | None:
        """The first activation strictly after ``after`` (aware), or None if there is none."""
        ...


_MONTHS = {m: i + 1 for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Search at most this far ahead: a schedule like "0 0 30 2 *" never fires.
_HORIZON_YEARS = 5


def _number(text: str, names: dict[str, int], field: str) -> int:
    if text.isdigit():
        return int(text)
    value = names.get(text.lower())
    if value is None:
        raise ScheduleError(f"failed to parse {field} field: {text!r} is not a number"
                            + (" or a name" if names else ""))
    return value


def _parse_field(text: str, lo: int, hi: int, field: str,
                 names: dict[str, int] | None = None) -> tuple[frozenset[int], bool]:
    """The values a field allows, and whether it was ``*``/``?`` (unrestricted)."""
    names = names or {}
    values: set[int] = set()
    star = False
    if not text:
        raise ScheduleError(f"empty {field} field")
    for part in text.split(","):
        base, sep, step_text = part.partition("/")
        step = 1
        if sep:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"failed to parse {field} field: bad step {step_text!r}")
            step = int(step_text)
        if base in ("*", "?"):
            start, end = lo, hi
            star = star or not sep
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _number(a, names, field), _number(b, names, field)
        else:
            start = _number(base, names, field)
            end = hi if sep else start
        if field == "day-of-week" and end == 7:
            # 7 is Sunday too; fold it back after range checks.
            end = 7
            hi_ok = 7
        else:
            hi_ok = hi
        if start < lo or end > hi_ok or start > end:
            raise ScheduleError(f"failed to parse {field} field: {part!r} is out of range "
                                f"{lo}-{hi}")
        values.update(v % 7 if field == "day-of-week" else v
                      for v in range(start, end + 1, step))
    return frozenset(values), star


@dataclass(frozen=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_star: bool
    weekdays_star: bool

    def _day_matches(self, day: datetime) -> bool:
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def next(self, after: datetime) -> datetime | None:
        tz = after.tzinfo
        assert tz is not None, "schedules need an aware time"
        # Walk in wall-clock time of the zone, then check the time exists.
        t = after.replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=1)
        limit = t.year + _HORIZON_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            aware = _localize(t, tz)
            if aware is not None and aware > after:
                return aware
            t += timedelta(minutes=1)
        return None


def _localize(wall: datetime, tz: tzinfo) -> datetime | None:
    """The aware time for a wall-clock time in ``tz``; None if DST skips it."""
    aware = wall.replace(tzinfo=tz)
    # Through UTC: astimezone to the same tzinfo would be a no-op.
    round_trip = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    return aware if round_trip == wall else None


@dataclass(frozen=True)
class EverySchedule:
    """``@every <duration>``: fixed intervals after the given time (whole seconds)."""

    seconds: int

    def next(self, after: datetime) -> datetime | None:
        return after.replace(microsecond=0) + timedelta(seconds=self.seconds)


def parse_schedule(text: str) -> Schedule:
    """Parse a CronJob schedule; raises ScheduleError with a clear message."""
    spec = text.strip()
    if not spec:
        raise ScheduleError("empty schedule")
    if spec.startswith("@every"):
        rest = spec[len("@every"):].strip()
        try:
            nanos = parse_duration(rest)
        except DurationError as exc:
            raise ScheduleError(f"failed to parse duration {rest!r}: {exc}") from None
        seconds = nanos // 1_000_000_000
        if seconds < 1:
            raise ScheduleError(f"@every needs at least one second, not {rest!r}")
        return EverySchedule(seconds)
    if spec.startswith("@"):
        expanded = _DESCRIPTORS.get(spec.lower())
        if expanded is None:
            raise ScheduleError(f"unrecognized descriptor: {spec}")
        spec = expanded
    fields = spec.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: {text!r}")
    minutes, _ = _parse_field(fields[0], 0, 59, "minute")
    hours, _ = _parse_field(fields[1], 0, 23, "hour")
    days, days_star = _parse_field(fields[2], 1, 31, "day-of-month")
    months, _ = _parse_field(fields[3], 1, 12, "month", _MONTHS)
    weekdays, weekdays_star = _parse_field(fields[4], 0, 6, "day-of-week", _DAYS)
    return CronSchedule(minutes, hours, days, months, weekdays, days_star, weekdays_star)
