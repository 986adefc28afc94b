"""Reading CRI container logs as ``kubectl logs`` shows them.

A CRI log file holds records ``<RFC3339Nano> <stdout|stderr> <F|P> <content>``;
``P`` pieces are joined with the following records up to an ``F``, which
ends a line. ``LogOptions`` are the kubelet's ``/containerLogs`` query:
``tailLines``, ``sinceSeconds``/``sinceTime``, ``timestamps`` (each line
prefixed with its RFC 3339 time), ``limitBytes`` and ``follow`` (keep
reading appended records until the container is no longer running).
"""

from __future__ import annotations

import asyncio
import calendar
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

_TS = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z")
FOLLOW_POLL = 0.1


@dataclass
class LogOptions:
    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    since_ns: int | None = None  # only lines at or after this time (ns since the epoch)
    limit_bytes: int | None = None


@dataclass
class LogLine:
    ts: str
    ts_ns: int
    stream: str
    content: bytes  # with its newline when the line was complete

    def render(self, timestamps: bool) -> bytes:
        return (self.ts.encode() + b" " + self.content) if timestamps else self.content


def parse_ts(text: str) -> int:
    m = _TS.fullmatch(text)
    if m is None:
        raise ValueError(f"bad timestamp {text!r}")
    secs = calendar.timegm((*(int(g) for g in m.groups()[:6]), 0, 0, 0))
    frac = (m.group(7) or "0")[:9].ljust(9, "0")
    return secs * 1_000_000_000 + int(frac)


class LogParser:
    """Feeds raw file bytes; yields complete lines (partials joined)."""

    def __init__(self) -> None:
        self._buf = b""
        self._partial: dict[str, tuple[str, int, bytes]] = {}

    def feed(self, data: bytes) -> list[LogLine]:
        self._buf += data
        out: list[LogLine] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            raw, self._buf = self._buf[:nl], self._buf[nl + 1:]
            parts = raw.split(b" ", 3)
            if len(parts) < 3:
                continue
            if len(parts) == 3:
                parts.append(b"")
            ts_b, stream_b, tag_b, content = parts
            try:
                ts = ts_b.decode()
                ts_ns = parse_ts(ts)
            except (UnicodeDecodeError, ValueError):
                continue
            stream = stream_b.decode(errors="replace")
            prev = self._partial.pop(stream, None)
            if prev is not None:
                ts, ts_ns, content = prev[0], prev[1], prev[2] + content
            if tag_b == b"P":
                self._partial[stream] = (ts, ts_ns, content)
                continue
            out.append(LogLine(ts, ts_ns, stream, content + b"\n"))
        return out

    def flush(self) -> list[LogLine]:
        """Partial lines at the end (output that ended without a newline)."""
        out = [LogLine(ts, ns, stream, content) for stream, (ts, ns, content)
               in self._partial.items()]
        self._partial.clear()
        return sorted(out, key=lambda line: line.ts_ns)


def _select(lines: list[LogLine], opts: LogOptions) -> list[LogLine]:
    if opts.since_ns is not None:
        lines = [line for line in lines if line.ts_ns >= opts.since_ns]
    if opts.tail_lines is not None:
        lines = lines[-opts.tail_lines:] if opts.tail_lines > 0 else []
    return lines


def read_log(path: Path, opts: LogOptions) -> bytes:
    """The whole (non-follow) answer."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b""
    parser = LogParser()
    lines = parser.feed(data) + parser.flush()
    out = b"".join(line.render(opts.timestamps) for line in _select(lines, opts))
    if opts.limit_bytes is not None:
        out = out[:opts.limit_bytes]
    return out


async def stream_log(path: Path, opts: LogOptions,
                     running: Callable[[], Awaitable[bool]]) -> AsyncIterator[bytes]:
    """What exists now (per the options), then — with ``follow`` — what is appended, until
    the container stops running and its file has been read to the end."""
    sent = 0

    def limit(chunk: bytes) -> bytes:
        nonlocal sent
        if opts.limit_bytes is not None:
            chunk = chunk[:max(opts.limit_bytes - sent, 0)]
        sent += len(chunk)
        return chunk

    parser = LogParser()
    offset = 0
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        data = b""
    offset = len(data)
    first = parser.feed(data)
    if not opts.follow:
        first += parser.flush()
    chunk = limit(b"".join(line.render(opts.timestamps) for line in _select(first, opts)))
    if chunk:
        yield chunk
    if not opts.follow:
        return
    idle_checks = 0
    while opts.limit_bytes is None or sent < opts.limit_bytes:
        try:
            with path.open("rb") as f:
                f.seek(offset)
                new = f.read()
        except FileNotFoundError:
            new = b""
        if new:
            offset += len(new)
            lines = parser.feed(new)
            if opts.since_ns is not None:
                lines = [line for line in lines if line.ts_ns >= opts.since_ns]
            chunk = limit(b"".join(line.render(opts.timestamps) for line in lines))
            if chunk:
                yield chunk
            idle_checks = 0
            continue
        idle_checks += 1
        if idle_checks % 10 == 0 and not await running():
            rest = limit(b"".join(line.render(opts.timestamps) for line in parser.flush()))
            if rest:
                yield rest
            return
        await asyncio.sleep(FOLLOW_POLL)
