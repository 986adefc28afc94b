"""SPDY/3.1 framing and a stream multiplexer on asyncio: what Kubernetes' port forwarding speaks.

kubectl 1.32 forwards ports over a WebSocket whose subprotocol is
``SPDY/3.1+portforward.k8s.io``: the binary messages, concatenated, are a SPDY/3.1
byte stream (message boundaries mean nothing; Go writes a frame in several
messages). Inside it the client opens streams; Kubernetes' ``portforward.k8s.io``
protocol on top of them lives in ``streaming.py``.

Wire facts (SPDY/3.1, draft-mbelshe-httpbis-spdy-00 with the 3.1 flow-control
changes), all integers big-endian:

* control frame: ``1 | version(15) | type(16) | flags(8) | length(24) | payload``;
  version is 3. Types: SYN_STREAM 1, SYN_REPLY 2, RST_STREAM 3, SETTINGS 4,
  PING 6, GOAWAY 7, HEADERS 8, WINDOW_UPDATE 9. An unknown type is skipped.
* data frame: ``0 | stream-id(31) | flags(8) | length(24) | data``; flag FIN = 1.
* SYN_STREAM: stream-id(31), associated-id(31), priority(3 bits)+unused(5),
  slot(8), then a header block; flags FIN 1, UNIDIRECTIONAL 2.
* SYN_REPLY / HEADERS: stream-id(31), header block. RST_STREAM: stream-id, status.
  SETTINGS: count, then count times (flags(8) id(24), value(32)). PING: id.
  GOAWAY: last-good-stream-id, status. WINDOW_UPDATE: stream-id, delta(31).
* header block: count(32), then per header name-length(32) name value-length(32)
  value; names lowercase, several values of one name joined by NUL. Every
  block in one direction of a connection is a piece of one zlib stream, primed
  with SPDY/3's dictionary and cut with a sync flush after each block.
* stream ids: odd from the client, even from the server, increasing. PING ids
  follow the same parity: a ping with the other side's parity is echoed.

Flow control: off, as in moby/spdystream (Kubernetes' SPDY on both ends), which
never sends WINDOW_UPDATE and ignores those it receives. Holding our sends to
the SPDY/3.1 64 KiB window would stall against it after 64 KiB, so we neither
honour nor send windows. Back-pressure instead: a stream's unread data is
bounded (``max_buffered``); when a reader falls that far behind, the session
stops reading the connection until it catches up — head-of-line blocking, as
spdystream does with its unbuffered per-stream channels.

Errors: malformed input raises ``SpdyProtocolError`` with what was wrong; the
session answers it with GOAWAY(PROTOCOL_ERROR). Stream-level faults (data for
a finished stream, a stream id out of order) are RST_STREAM and the session
carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

VERSION = 3
MAX_LENGTH = (1 << 24) - 1  # a frame's length field is 24 bits
MAX_HEADER_BLOCK = 1 << 20  # decompressed; a bigger block is refused (zlib bombs)
DATA_CHUNK = 1 << 16  # our data frames carry at most this much

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_SETTINGS_CLEAR = 0x01

# RST_STREAM status codes
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
UNSUPPORTED_VERSION = 4
CANCEL = 5
INTERNAL_ERROR = 6
FLOW_CONTROL_ERROR = 7
STREAM_IN_USE = 8
STREAM_ALREADY_CLOSED = 9
FRAME_TOO_LARGE = 11

# GOAWAY status codes
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, GOAWAY_INTERNAL_ERROR = 0, 1, 2

# SETTINGS ids
SETTINGS_MAX_CONCURRENT_STREAMS = 4
SETTINGS_INITIAL_WINDOW_SIZE = 7

# SPDY/3's zlib dictionary (spec section 2.6.10.1): these words, each with a
# 32-bit length before it, then the tail as it stands. 1423 bytes, adler32 0xe3c6a7c2.
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow",
    "authorization", "cache-control", "connection", "content-base", "content-encoding",
    "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
    "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
    "last-modified", "location", "max-forwards", "pragma", "proxy-authenticate",
    "proxy-authorization", "range", "referer", "retry-after", "server", "te", "trailer",
    "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
    "public", "set-cookie", "keep-alive", "origin")
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
    "charset=iso-8859-1,utf-,*,enq=0.")
HEADER_DICTIONARY = b"".join(
    len(word).to_bytes(4, "big") + word.encode() for word in _DICTIONARY_WORDS
) + _DICTIONARY_TAIL.encode()

Headers = dict[str, str]
"""A header block: lowercase name -> value (several values joined by NUL, as on the wire)."""


class SpdyError(Exception):
    """Base of this module's errors."""


class SpdyProtocolError(SpdyError):
    """The peer sent something that is not SPDY/3.1; the message says what."""


class StreamClosedError(SpdyError):
    """A write to a stream that is finished, reset, or whose connection is gone."""


# -- frames ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    headers: Headers
    associated_id: int = 0
    priority: int = 0
    slot: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True, slots=True)
class SynReply:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Setting:
    id: int
    value: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Settings:
    entries: tuple[Setting, ...] = ()
    clear: bool = False


@dataclass(frozen=True, slots=True)
class Ping:
    id: int


@dataclass(frozen=True, slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True, slots=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True, slots=True)
class UnknownControl:
    """A control frame of a type SPDY/3.1 does not define: the spec says to ignore it."""

    type: int
    flags: int
    payload: bytes


Frame = (SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame
         | WindowUpdate | Data | UnknownControl)


# -- header blocks -----------------------------------------------------------------------
def encode_header_block(headers: Mapping[str, str]) -> bytes:
    """The uncompressed name/value block; names are lowercased (SPDY requires it)."""
    out = [len(headers).to_bytes(4, "big")]
    seen: set[str] = set()
    for name, value in headers.items():
        lower = name.lower()
        if not lower or "\0" in lower:
            raise ValueError(f"bad SPDY header name {name!r}")
        if lower in seen:
            raise ValueError(f"SPDY header {lower!r} given twice (join values with NUL)")
        seen.add(lower)
        raw_name, raw_value = lower.encode(), value.encode()
        out += [len(raw_name).to_bytes(4, "big"), raw_name,
                len(raw_value).to_bytes(4, "big"), raw_value]
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    """Parse an uncompressed name/value block; raise SpdyProtocolError when malformed."""
    view = memoryview(block)
    if len(view) < 4:
        raise SpdyProtocolError("truncated header block: no header count")
    count = int.from_bytes(view[:4], "big")
    pos = 4
    headers: Headers = {}

    def take() -> bytes:
        nonlocal pos
        if pos + 4 > len(view):
            raise SpdyProtocolError("truncated header block: a length is cut off")
        size = int.from_bytes(view[pos:pos + 4], "big")
        if pos + 4 + size > len(view):
            raise SpdyProtocolError(f"truncated header block: {size}-byte string runs past "
                                    f"the block's end")
        pos += 4 + size
        return bytes(view[pos - size:pos])

    for _ in range(count):
        try:
            name, value = take().decode(), take().decode()
        except UnicodeDecodeError as err:
            raise SpdyProtocolError(f"header block holds bytes that are not UTF-8: {err}") \
                from err
        if not name:
            raise SpdyProtocolError("header block has an empty header name")
        if name != name.lower():
            raise SpdyProtocolError(f"header name {name!r} is not lowercase")
        if name in headers:
            raise SpdyProtocolError(f"header {name!r} appears twice in one block")
        headers[name] = value
    if pos != len(view):
        raise SpdyProtocolError(f"header block has {len(view) - pos} bytes after its "
                                f"{count} headers")
    return headers


# -- encoder / decoder --------------------------------------------------------------------
def _control(type_: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"SPDY control frame payload of {len(payload)} bytes is too large")
    return struct.pack(">HHI", 0x8000 | VERSION, type_, (flags << 24) | len(payload)) + payload


def _stream_id(value: int) -> int:
    if not 0 < value < (1 << 31):
        raise ValueError(f"stream id {value} out of range 1..2^31-1")
    return value


class FrameEncoder:
    """Frames to bytes for one direction of one connection (it owns the header compressor)."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zdict=HEADER_DICTIONARY)

    def compress_headers(self, headers: Mapping[str, str]) -> bytes:
        block = encode_header_block(headers)
        return self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case Data(stream_id, data, fin):
                if len(data) > MAX_LENGTH:
                    raise ValueError(f"data frame of {len(data)} bytes is too large")
                return struct.pack(">II", _stream_id(stream_id),
                                   (FLAG_FIN if fin else 0) << 24 | len(data)) + data
            case SynStream():
                flags = (FLAG_FIN if frame.fin else 0) | \
                    (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
                head = struct.pack(">IIBB", _stream_id(frame.stream_id),
                                   frame.associated_id & 0x7FFFFFFF,
                                   (frame.priority & 0x7) << 5, frame.slot & 0xFF)
                return _control(SYN_STREAM, flags, head + self.compress_headers(frame.headers))
            case SynReply(stream_id, headers, fin):
                return _control(SYN_REPLY, FLAG_FIN if fin else 0,
                                struct.pack(">I", _stream_id(stream_id))
                                + self.compress_headers(headers))
            case HeadersFrame(stream_id, headers, fin):
                return _control(HEADERS, FLAG_FIN if fin else 0,
                                struct.pack(">I", _stream_id(stream_id))
                                + self.compress_headers(headers))
            case RstStream(stream_id, status):
                return _control(RST_STREAM, 0, struct.pack(">II", _stream_id(stream_id), status))
            case Settings(entries, clear):
                payload = struct.pack(">I", len(entries)) + b"".join(
                    struct.pack(">II", (e.flags << 24) | (e.id & 0xFFFFFF), e.value)
                    for e in entries)
                return _control(SETTINGS, FLAG_SETTINGS_CLEAR if clear else 0, payload)
            case Ping(ping_id):
                return _control(PING, 0, struct.pack(">I", ping_id))
            case GoAway(last_good, status):
                return _control(GOAWAY, 0, struct.pack(">II", last_good & 0x7FFFFFFF, status))
            case WindowUpdate(stream_id, delta):
                return _control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id & 0x7FFFFFFF,
                                                                delta & 0x7FFFFFFF))
            case UnknownControl(type_, flags, payload):
                return _control(type_, flags, payload)
        raise TypeError(f"not a SPDY frame: {frame!r}")


class FrameDecoder:
    """Bytes to frames for one direction of one connection (it owns the header decompressor).

    ``feed`` bytes as they come, in any pieces; ``next_frame`` returns the next
    whole frame or None until more bytes arrive. After a SpdyProtocolError the
    decoder is unusable: the connection must end (the compression state is lost).
    """

    def __init__(self, *, max_header_block: int = MAX_HEADER_BLOCK) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=HEADER_DICTIONARY)
        self._max_header_block = max_header_block
        self._broken: str | None = None

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> Frame | None:
        if self._broken is not None:
            raise SpdyProtocolError(f"connection already failed: {self._broken}")
        if len(self._buf) < 8:
            return None
        length = int.from_bytes(self._buf[5:8], "big")
        if len(self._buf) < 8 + length:
            return None
        head = bytes(self._buf[:8])
        payload = bytes(self._buf[8:8 + length])
        del self._buf[:8 + length]
        try:
            return self._decode(head, payload)
        except SpdyProtocolError as err:
            self._broken = str(err)
            raise

    def _headers(self, compressed: bytes) -> Headers:
        try:
            block = self._inflate.decompress(compressed, self._max_header_block + 1)
        except zlib.error as err:
            raise SpdyProtocolError(f"header block does not decompress with SPDY/3's "
                                    f"dictionary: {err}") from err
        if len(block) > self._max_header_block or self._inflate.unconsumed_tail:
            raise SpdyProtocolError(f"header block larger than {self._max_header_block} bytes")
        if self._inflate.eof:
            raise SpdyProtocolError("the header compression stream was ended (zlib finish); "
                                    "SPDY keeps one stream per connection")
        return decode_header_block(block)

    def _decode(self, head: bytes, payload: bytes) -> Frame:
        first, second = struct.unpack(">II", head)
        flags = second >> 24
        if not first & 0x80000000:
            stream_id = first & 0x7FFFFFFF
            if stream_id == 0:
                raise SpdyProtocolError("data frame for stream 0")
            return Data(stream_id, payload, bool(flags & FLAG_FIN))
        version, type_ = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyProtocolError(f"SPDY version {version} frame; only version 3 is spoken")
        size = len(payload)

        def need(exact: int | None = None, least: int = 0) -> None:
            if exact is not None and size != exact:
                raise SpdyProtocolError(f"{_NAMES[type_]} frame of {size} bytes; it has "
                                        f"{exact}")
            if size < least:
                raise SpdyProtocolError(f"{_NAMES[type_]} frame of {size} bytes; it needs at "
                                        f"least {least}")

        def stream(offset: int = 0) -> int:
            value: int = struct.unpack_from(">I", payload, offset)[0] & 0x7FFFFFFF
            if value == 0:
                raise SpdyProtocolError(f"{_NAMES[type_]} frame for stream 0")
            return value

        if type_ == SYN_STREAM:
            need(least=10)
            sid = stream()
            associated = struct.unpack_from(">I", payload, 4)[0] & 0x7FFFFFFF
            return SynStream(sid, self._headers(payload[10:]), associated, payload[8] >> 5,
                             payload[9], bool(flags & FLAG_FIN),
                             bool(flags & FLAG_UNIDIRECTIONAL))
        if type_ in (SYN_REPLY, HEADERS):
            need(least=4)
            sid = stream()
            headers = self._headers(payload[4:])
            fin = bool(flags & FLAG_FIN)
            return SynReply(sid, headers, fin) if type_ == SYN_REPLY else \
                HeadersFrame(sid, headers, fin)
        if type_ == RST_STREAM:
            need(exact=8)
            sid, status = stream(), struct.unpack_from(">I", payload, 4)[0]
            if status == 0:
                raise SpdyProtocolError(f"RST_STREAM for stream {sid} with status 0")
            return RstStream(sid, status)
        if type_ == SETTINGS:
            need(least=4)
            count = struct.unpack_from(">I", payload)[0]
            if size != 4 + 8 * count:
                raise SpdyProtocolError(f"SETTINGS frame of {size} bytes cannot hold {count} "
                                        f"entries")
            entries = []
            for i in range(count):
                flag_id, value = struct.unpack_from(">II", payload, 4 + 8 * i)
                entries.append(Setting(flag_id & 0xFFFFFF, value, flag_id >> 24))
            return Settings(tuple(entries), bool(flags & FLAG_SETTINGS_CLEAR))
        if type_ == PING:
            need(exact=4)
            return Ping(struct.unpack(">I", payload)[0])
        if type_ == GOAWAY:
            need(exact=8)
            last, status = struct.unpack(">II", payload)
            return GoAway(last & 0x7FFFFFFF, status)
        if type_ == WINDOW_UPDATE:
            need(exact=8)
            sid, delta = struct.unpack(">II", payload)
            delta &= 0x7FFFFFFF
            if delta == 0:
                raise SpdyProtocolError("WINDOW_UPDATE with a delta of 0")
            return WindowUpdate(sid & 0x7FFFFFFF, delta)
        return UnknownControl(type_, flags, payload)


_NAMES = {SYN_STREAM: "SYN_STREAM", SYN_REPLY: "SYN_REPLY", RST_STREAM: "RST_STREAM",
          SETTINGS: "SETTINGS", PING: "PING", GOAWAY: "GOAWAY", HEADERS: "HEADERS",
          WINDOW_UPDATE: "WINDOW_UPDATE"}


# -- streams and the session ------------------------------------------------------------
@dataclass(eq=False)
class SpdyStream:
    """One SPDY stream: ``read`` the peer's data, ``write``/``close`` ours."""

    session: SpdySession
    id: int
    headers: Headers
    remote_closed: bool = False  # the peer sent FIN (or reset)
    local_closed: bool = False  # we sent FIN (or reset)
    reset_status: int | None = None  # set when either side reset the stream
    discarding: bool = False  # stop_reading was called: the peer's data is dropped
    _inbox: deque[bytes] = field(default_factory=deque)
    _buffered: int = 0
    _readable: asyncio.Event = field(default_factory=asyncio.Event)
    _drained: asyncio.Event = field(default_factory=asyncio.Event)
    _ended: asyncio.Event = field(default_factory=asyncio.Event)
    _replied: asyncio.Future[None] | None = None

    async def read(self) -> bytes:
        """The next piece of the peer's data; b"" once the peer finished or the stream ended."""
        while not self._inbox:
            if self.remote_closed or self.discarding:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = self._inbox.popleft()
        self._buffered -= len(data)
        if self._buffered <= self.session.max_buffered:
            self._drained.set()
        return data

    def stop_reading(self) -> None:
        """Drop what the peer sends from now on (and what is unread), so a stream nobody
        reads any more never holds the connection back."""
        self.discarding = True
        self._inbox.clear()
        self._buffered = 0
        self._drained.set()
        self._readable.set()

    async def wait_ended(self) -> None:
        """Until the stream is reset (by either side) or its connection is lost."""
        await self._ended.wait()

    async def write(self, data: bytes) -> None:
        """Send ``data``; StreamClosedError if we finished, either side reset, or the
        connection is gone."""
        for start in range(0, len(data), DATA_CHUNK):
            if self.local_closed:
                raise StreamClosedError(self._why_closed())
            await self.session.send_frame(Data(self.id, bytes(data[start:start + DATA_CHUNK])))

    async def close(self) -> None:
        """Half-close: FIN our side (the peer reads end-of-file). Idempotent."""
        if self.local_closed:
            return
        self.local_closed = True
        with contextlib.suppress(StreamClosedError):
            await self.session.send_frame(Data(self.id, b"", fin=True))
        self.session._maybe_forget(self)

    async def reset(self, status: int = CANCEL) -> None:
        """RST_STREAM: both directions end at once. Idempotent."""
        if self.reset_status is not None:
            return
        self._end(status)
        with contextlib.suppress(StreamClosedError):
            await self.session.send_frame(RstStream(self.id, status))

    async def accept(self, headers: Headers | None = None) -> None:
        """Server side: SYN_REPLY, the stream is open."""
        await self.session.send_frame(SynReply(self.id, dict(headers or {})))

    def _why_closed(self) -> str:
        if self.session.closed:
            return f"stream {self.id}: the connection is closed"
        if self.reset_status is not None:
            return f"stream {self.id} was reset (status {self.reset_status})"
        return f"stream {self.id}: this side already finished it"

    def _deliver(self, data: bytes) -> None:
        if self.reset_status is not None or self.discarding:
            return
        self._inbox.append(data)
        self._buffered += len(data)
        self._readable.set()
        if self._buffered > self.session.max_buffered:
            self._drained.clear()

    def _finish_remote(self) -> None:
        self.remote_closed = True
        self._readable.set()

    def _end(self, status: int) -> None:
        """Reset (by either side) or connection loss: nothing more flows either way."""
        if self.reset_status is None:
            self.reset_status = status
        self.local_closed = self.remote_closed = True
        self._inbox.clear()
        self._buffered = 0
        self._readable.set()
        self._drained.set()
        self._ended.set()
        if self._replied is not None and not self._replied.done():
            self._replied.set_exception(StreamClosedError(
                f"stream {self.id} was refused or reset by the peer (status {status})"))
        self.session._forget(self)


StreamHandler = Callable[[SpdyStream], Awaitable[None]]


class SpdySession:
    """A SPDY/3.1 connection over any byte transport.

    ``send`` writes bytes to the peer (one call per frame, in order). The owner
    feeds what arrives to ``receive`` (one task; it may block for back-pressure)
    and calls ``connection_lost`` when the transport ends. On the server side
    ``on_stream`` is awaited for each SYN_STREAM and must ``accept`` or ``reset``
    the stream promptly (it runs on the receive path; what it raises comes out of
    ``receive``); the client opens streams with ``open_stream``.
    """

    def __init__(self, send: Callable[[bytes], Awaitable[None]], *, server: bool,
                 on_stream: StreamHandler | None = None,
                 max_buffered: int = 1 << 20, max_streams: int = 1000) -> None:
        self._send = send
        self.server = server
        self.on_stream = on_stream
        self.max_buffered = max_buffered
        self.max_streams = max_streams
        self.streams: dict[int, SpdyStream] = {}
        self.closed = False
        self.goaway_received = False
        self.goaway_sent = False
        self.peer_settings: dict[int, int] = {}
        self._encoder = FrameEncoder()
        self._decoder = FrameDecoder()
        self._send_lock = asyncio.Lock()
        self._next_stream_id = 2 if server else 1
        self._last_remote_id = 0
        self._next_ping_id = 2 if server else 1
        self._pings: dict[int, asyncio.Future[None]] = {}

    # -- sending ---------------------------------------------------------------------
    async def send_frame(self, frame: Frame) -> None:
        """Encode and send, in call order (the header compressor's state demands it)."""
        async with self._send_lock:
            if self.closed:
                raise StreamClosedError("the SPDY connection is closed")
            data = self._encoder.encode(frame)
            try:
                await self._send(data)
            except (ConnectionError, OSError) as err:
                self.connection_lost()
                raise StreamClosedError(f"the SPDY connection is closed: {err}") from err

    async def open_stream(self, headers: Headers, *, fin: bool = False) -> SpdyStream:
        """Client side: SYN_STREAM, then wait for the SYN_REPLY (StreamClosedError if refused)."""
        if self.goaway_received or self.goaway_sent:
            raise StreamClosedError("the connection is going away: no new streams")
        async with self._send_lock:  # ids must reach the wire in increasing order
            if self.closed:
                raise StreamClosedError("the SPDY connection is closed")
            stream = SpdyStream(self, self._next_stream_id, dict(headers))
            self._next_stream_id += 2
            stream._replied = asyncio.get_running_loop().create_future()
            stream.local_closed = fin
            self.streams[stream.id] = stream
            data = self._encoder.encode(SynStream(stream.id, stream.headers, fin=fin))
            try:
                await self._send(data)
            except (ConnectionError, OSError) as err:
                self.connection_lost()
                raise StreamClosedError(f"the SPDY connection is closed: {err}") from err
        await stream._replied
        return stream

    async def ping(self) -> None:
        """Send a PING and wait for its echo."""
        ping_id = self._next_ping_id
        self._next_ping_id += 2
        waiter = self._pings[ping_id] = asyncio.get_running_loop().create_future()
        await self.send_frame(Ping(ping_id))
        await waiter

    async def go_away(self, status: int = GOAWAY_OK) -> None:
        if self.goaway_sent or self.closed:
            return
        self.goaway_sent = True
        with contextlib.suppress(StreamClosedError):
            await self.send_frame(GoAway(self._last_remote_id, status))

    # -- receiving -------------------------------------------------------------------
    async def receive(self, data: bytes) -> None:
        """Handle bytes from the peer; SpdyProtocolError (after GOAWAY) when malformed."""
        self._decoder.feed(data)
        while True:
            try:
                frame = self._decoder.next_frame()
            except SpdyProtocolError:
                await self.go_away(GOAWAY_PROTOCOL_ERROR)
                raise
            if frame is None:
                return
            await self._dispatch(frame)

    def connection_lost(self) -> None:
        """The transport ended: every stream ends, every waiter wakes."""
        self.closed = True
        for stream in list(self.streams.values()):
            stream._end(CANCEL)
        for waiter in self._pings.values():
            if not waiter.done():
                waiter.set_exception(StreamClosedError("the SPDY connection is closed"))

    def _forget(self, stream: SpdyStream) -> None:
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]

    def _maybe_forget(self, stream: SpdyStream) -> None:
        if stream.local_closed and stream.remote_closed:
            self._forget(stream)

    def _is_peer_id(self, stream_id: int) -> bool:
        return stream_id % 2 == (0 if not self.server else 1)

    async def _dispatch(self, frame: Frame) -> None:
        match frame:
            case Data(sid, data, fin):
                stream = self.streams.get(sid)
                if stream is None:
                    if self._is_peer_id(sid) and sid > self._last_remote_id:
                        await self._refuse(sid, INVALID_STREAM)  # never opened
                    return  # in flight when the stream ended: dropped, as spdystream does
                if stream.remote_closed:
                    await stream.reset(STREAM_ALREADY_CLOSED)
                    return
                if data:
                    stream._deliver(data)
                if fin:
                    stream._finish_remote()
                    self._maybe_forget(stream)
                if stream._buffered > self.max_buffered:
                    await stream._drained.wait()  # back-pressure: the reader catches up first
            case SynStream():
                await self._syn_stream(frame)
            case SynReply(sid, headers, fin):
                stream = self.streams.get(sid)
                if stream is None or stream._replied is None or stream._replied.done():
                    return  # late or repeated: ignored, as spdystream does
                stream.headers.update(headers)
                stream._replied.set_result(None)
                if fin:
                    stream._finish_remote()
                    self._maybe_forget(stream)
            case HeadersFrame(sid, headers, fin):
                stream = self.streams.get(sid)
                if stream is not None:
                    stream.headers.update(headers)
                    if fin:
                        stream._finish_remote()
                        self._maybe_forget(stream)
            case RstStream(sid, status):
                stream = self.streams.get(sid)
                if stream is not None:
                    stream._end(status)
            case Ping(ping_id):
                if ping_id % 2 != self._next_ping_id % 2:
                    with contextlib.suppress(StreamClosedError):
                        await self.send_frame(frame)
                elif (waiter := self._pings.pop(ping_id, None)) is not None and \
                        not waiter.done():
                    waiter.set_result(None)
            case GoAway():
                self.goaway_received = True
            case Settings(entries, _):
                for entry in entries:
                    self.peer_settings[entry.id] = entry.value
            case WindowUpdate() | UnknownControl():
                pass  # flow control is off (module docstring); unknown types are skipped

    async def _syn_stream(self, frame: SynStream) -> None:
        sid = frame.stream_id
        if not self._is_peer_id(sid) or sid <= self._last_remote_id:
            await self._refuse(sid, PROTOCOL_ERROR)  # wrong parity or not increasing
            return
        self._last_remote_id = sid
        if self.goaway_sent or self.on_stream is None or len(self.streams) >= self.max_streams:
            await self._refuse(sid, REFUSED_STREAM)
            return
        stream = SpdyStream(self, sid, dict(frame.headers), remote_closed=frame.fin,
                            local_closed=frame.unidirectional)
        self.streams[sid] = stream
        await self.on_stream(stream)

    async def _refuse(self, stream_id: int, status: int) -> None:
        with contextlib.suppress(StreamClosedError):
            await self.send_frame(RstStream(stream_id, status))
