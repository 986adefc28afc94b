"""The CRI log format written by the supervisor."""

from __future__ import annotations

import re

from pilothouse.runtime_shim import logs

TS = 1_700_000_000_123_456_789


def test_timestamp_is_rfc3339_nano_utc() -> None:
    assert logs.timestamp(TS) == b"2023-11-14T22:13:20.123456789Z"


def test_complete_lines_are_full_records() -> None:
    s = logs.LineSplitter("stdout")
    assert s.feed(b"hello\nwor", TS) == [b"2023-11-14T22:13:20.123456789Z stdout F hello\n"]
    assert s.feed(b"ld\n", TS) == [b"2023-11-14T22:13:20.123456789Z stdout F world\n"]
    assert s.flush(TS) == []


def test_unterminated_output_is_flushed_at_end() -> None:
    s = logs.LineSplitter("stderr")
    assert s.feed(b"no newline", TS) == []
    assert s.flush(TS) == [b"2023-11-14T22:13:20.123456789Z stderr P no newline\n"]


def test_long_lines_are_split_into_partials() -> None:
    s = logs.LineSplitter("stdout")
    records = s.feed(b"x" * (logs.MAX_LINE * 2 + 10) + b"\nnext\n", TS)
    tags = [logs.parse_record(r)[2] for r in records]
    assert tags == ["P", "P", "F", "F"]
    assert b"".join(logs.parse_record(r)[3] for r in records[:3]) == b"x" * (
        logs.MAX_LINE * 2 + 10)
    assert logs.parse_record(records[3])[3] == b"next"


def test_parse_record_rejects_garbage() -> None:
    ts, stream, tag, content = logs.parse_record(logs.record("stdout", "F", b"a b c", TS))
    assert (stream, tag, content) == ("stdout", "F", b"a b c")
    assert re.match(r"\d{4}-\d\d-\d\dT", ts)
    try:
        logs.parse_record(b"2023 junk F x")
    except ValueError:
        return
    raise AssertionError("junk accepted")
