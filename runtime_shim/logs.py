"""The CRI container log format (pure; used by the process supervisor).

One line per record: ``<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>``.
``F`` marks the end of a line of the container's output, ``P`` a partial
piece: of a longer line (split at :data:`MAX_LINE` bytes), or the output's last
bytes when it ended without a newline — as containerd writes it, so the kubelet
shows exactly what the program printed. Timestamps are UTC with nanoseconds, like containerd's.
"""

from __future__ import annotations

import time

MAX_LINE = 16 * 1024


def timestamp(ns: int | None = None) -> bytes:
    """RFC 3339 with nanoseconds in UTC: ``2024-05-01T10:00:00.123456789Z``."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z").encode()


def record(stream: str, tag: str, content: bytes, ns: int | None = None) -> bytes:
    return b"%s %s %s %s\n" % (timestamp(ns), stream.encode(), tag.encode(), content)


class LineSplitter:
    """Buffers one stream's bytes and yields complete CRI log records."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.pending = b""

    def feed(self, data: bytes, ns: int | None = None) -> list[bytes]:
        self.pending += data
        out = []
        while True:
            nl = self.pending.find(b"\n")
            if nl < 0 or nl > MAX_LINE:
                break
            out.append(record(self.stream, "F", self.pending[:nl], ns))
            self.pending = self.pending[nl + 1 :]
        while len(self.pending) > MAX_LINE and self.pending.find(b"\n", 0, MAX_LINE + 1) < 0:
            out.append(record(self.stream, "P", self.pending[:MAX_LINE], ns))
            self.pending = self.pending[MAX_LINE:]
        if out and self.pending.find(b"\n") >= 0:
            out.extend(self.feed(b"", ns))
        return out

    def flush(self, ns: int | None = None) -> list[bytes]:
        """At end of stream: whatever is left, without a newline, is a partial record."""
        if not self.pending:
            return []
        out = [record(self.stream, "P", self.pending, ns)]
        self.pending = b""
        return out


def parse_record(line: bytes) -> tuple[str, str, str, bytes]:
    """(timestamp, stream, tag, content) of one record; ValueError if malformed."""
    ts, stream, tag, content = line.rstrip(b"\n").split(b" ", 3)
    if stream not in (b"stdout", b"stderr") or tag not in (b"F", b"P"):
        raise ValueError(f"not a CRI log record: {line!r}")
    return ts.decode(), stream.decode(), tag.decode(), content
