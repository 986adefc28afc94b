"""SPDY/3.1 framing, header compression and the stream multiplexer, without a network.

Byte vectors are derived by hand from the SPDY/3 draft (frame layouts) and from
RFC 1950/1951 (a zlib stream with a preset dictionary whose deflate blocks are
"stored", i.e. uncompressed), so they do not depend on zlib's compressor.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.runtime_shim import spdy
from pilothouse.runtime_shim.spdy import (
    Data,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    HeadersFrame,
    Ping,
    RstStream,
    Setting,
    Settings,
    SpdyProtocolError,
    SpdySession,
    SpdyStream,
    StreamClosedError,
    SynReply,
    SynStream,
    UnknownControl,
    WindowUpdate,
)

ZLIB_HEADER = bytes.fromhex("78bb")  # deflate, 32 KiB window, FDICT set, default level
DICT_ID = bytes.fromhex("e3c6a7c2")  # adler32 of SPDY/3's dictionary


def stored(data: bytes) -> bytes:
    """A non-final stored deflate block (RFC 1951 3.2.4): what a sync flush of raw bytes is."""
    size = len(data)
    return b"\x00" + size.to_bytes(2, "little") + (size ^ 0xFFFF).to_bytes(2, "little") + data


def decode_all(data: bytes, decoder: FrameDecoder | None = None) -> list[spdy.Frame]:
    decoder = decoder or FrameDecoder()
    decoder.feed(data)
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


# -- the dictionary and header blocks -----------------------------------------------------
def test_the_header_dictionary_is_spdy3s() -> None:
    assert len(spdy.HEADER_DICTIONARY) == 1423
    assert zlib.adler32(spdy.HEADER_DICTIONARY).to_bytes(4, "big") == DICT_ID
    assert spdy.HEADER_DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.HEADER_DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_header_block_layout() -> None:
    block = spdy.encode_header_block({"Port": "80", "streamType": "data"})
    assert block == bytes.fromhex("00000002" "00000004") + b"port" + \
        bytes.fromhex("00000002") + b"80" + bytes.fromhex("0000000a") + b"streamtype" + \
        bytes.fromhex("00000004") + b"data"
    assert spdy.decode_header_block(block) == {"port": "80", "streamtype": "data"}
    # several values of one name travel NUL-joined, as the wire has them
    multi = spdy.encode_header_block({"x": "a\0b"})
    assert spdy.decode_header_block(multi) == {"x": "a\0b"}


@pytest.mark.parametrize("headers", [{"": "x"}, {"a\0b": "x"}, {"A": "1", "a": "2"}],
                         ids=["empty-name", "nul-in-name", "same-name-twice"])
def test_header_blocks_we_refuse_to_write(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="header"):
        spdy.encode_header_block(headers)


@pytest.mark.parametrize(("block", "message"), [
    (b"\x00\x00", "no header count"),
    (bytes.fromhex("00000001 00000004") + b"po", "runs past"),
    (bytes.fromhex("00000001 00000004") + b"port", "length is cut off"),
    (bytes.fromhex("00000001 00000004") + b"Port" + bytes.fromhex("00000000"), "lowercase"),
    (bytes.fromhex("00000001 00000000 00000000"), "empty header name"),
    (bytes.fromhex("00000002") + 2 * (bytes.fromhex("00000001") + b"a" +
                                      bytes.fromhex("00000000")), "appears twice"),
    (bytes.fromhex("00000000 ff"), "1 bytes after"),
    (bytes.fromhex("00000001 00000001") + b"\xff" + bytes.fromhex("00000000"), "UTF-8"),
], ids=["short", "string-past-end", "length-cut", "uppercase", "empty-name", "duplicate",
        "trailing-bytes", "not-utf8"])
def test_bad_header_blocks(block: bytes, message: str) -> None:
    with pytest.raises(SpdyProtocolError, match=message):
        spdy.decode_header_block(block)


# -- known frame bytes -------------------------------------------------------------------------
PORT_80 = bytes.fromhex("00000001 00000004") + b"port" + bytes.fromhex("00000002") + b"80"

VECTORS: list[tuple[str, bytes, spdy.Frame]] = [
    ("ping", bytes.fromhex("80030006 00000004 00000001"), Ping(1)),
    ("rst-cancel", bytes.fromhex("80030003 00000008 00000001 00000005"), RstStream(1, 5)),
    ("data-fin", bytes.fromhex("00000001 01000003") + b"abc", Data(1, b"abc", fin=True)),
    ("data-empty", bytes.fromhex("00000003 00000000"), Data(3, b"")),
    ("goaway", bytes.fromhex("80030007 00000008 00000005 00000000"), GoAway(5, 0)),
    ("goaway-protocol-error", bytes.fromhex("80030007 00000008 00000000 00000001"),
     GoAway(0, 1)),
    ("window-update", bytes.fromhex("80030009 00000008 00000001 00010000"),
     WindowUpdate(1, 65536)),
    ("settings", bytes.fromhex("80030004 0000000c 00000001 01000007 00010000"),
     Settings((Setting(7, 65536, flags=1),))),
    ("settings-clear-empty", bytes.fromhex("80030004 01000004 00000000"),
     Settings((), clear=True)),
]


@pytest.mark.parametrize(("wire", "frame"), [(w, f) for _, w, f in VECTORS],
                         ids=[name for name, _, _ in VECTORS])
def test_frames_without_headers_match_the_spec_bytes(wire: bytes, frame: spdy.Frame) -> None:
    assert FrameEncoder().encode(frame) == wire
    assert decode_all(wire) == [frame]


def test_header_frames_decode_from_a_hand_made_zlib_stream() -> None:
    # first block: zlib header with the dictionary's id, then a stored deflate block;
    # later blocks continue the same deflate stream without a header
    first = ZLIB_HEADER + DICT_ID + stored(PORT_80)
    syn_stream = bytes.fromhex("80030001") + (10 + len(first)).to_bytes(4, "big") + \
        bytes.fromhex("00000001 00000000 6000") + first
    empty = stored(bytes(4))
    syn_reply = bytes.fromhex("80030002") + (0x01000000 | (4 + len(empty))).to_bytes(4, "big") \
        + bytes.fromhex("00000002") + empty
    second = stored(bytes.fromhex("00000001 00000006") + b"status" +
                    bytes.fromhex("00000003") + b"200")
    headers = bytes.fromhex("80030008") + (4 + len(second)).to_bytes(4, "big") + \
        bytes.fromhex("00000001") + second
    assert decode_all(syn_stream + syn_reply + headers) == [
        SynStream(1, {"port": "80"}, priority=3),
        SynReply(2, {}, fin=True),
        HeadersFrame(1, {"status": "200"}),
    ]


def test_our_header_compression_is_one_zlib_stream_with_the_dictionary() -> None:
    encoder = FrameEncoder()
    first = encoder.encode(SynReply(1, {}))
    assert first[:8] == bytes.fromhex("80030002") + (len(first) - 8).to_bytes(4, "big")
    assert first[12:18] == ZLIB_HEADER + DICT_ID
    second = encoder.encode(SynReply(3, {"port": "80"}))
    assert second[12:14] != ZLIB_HEADER  # the stream goes on: no second zlib header
    # an independent inflater primed with the dictionary reads both blocks
    inflate = zlib.decompressobj(zdict=spdy.HEADER_DICTIONARY)
    assert inflate.decompress(first[12:]) == bytes(4)
    assert inflate.decompress(second[12:]) == PORT_80


def test_a_peer_compressing_at_another_level_is_understood() -> None:
    # Go's spdy framer compresses at best compression: the header bytes differ, the
    # dictionary is the same
    deflate = zlib.compressobj(level=9, zdict=spdy.HEADER_DICTIONARY)
    blocks = [spdy.encode_header_block(h) for h in
              ({"streamtype": "error", "port": "80", "requestid": "0"},
               {"streamtype": "data", "port": "80", "requestid": "0"})]
    wire = b""
    for sid, block in zip((1, 3), blocks, strict=True):
        compressed = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
        wire += bytes.fromhex("80030001") + (10 + len(compressed)).to_bytes(4, "big") + \
            sid.to_bytes(4, "big") + bytes(6) + compressed
    assert wire[18:20] == bytes.fromhex("78f9")  # FLEVEL 3
    frames = decode_all(wire)
    assert [f.headers["streamtype"] for f in frames] == ["error", "data"]  # type: ignore[union-attr]


ROUND_TRIPS: list[spdy.Frame] = [
    SynStream(1, {"streamtype": "error", "port": "8080", "requestid": "0"}),
    SynStream(7, {}, associated_id=3, priority=7, slot=2, fin=True, unidirectional=True),
    SynReply(1, {}),
    SynReply(9, {"a": "b\0c"}, fin=True),
    HeadersFrame(5, {"x-y": ""}, fin=True),
    RstStream(3, spdy.REFUSED_STREAM),
    Settings((Setting(4, 100), Setting(7, 1 << 20, flags=2)), clear=True),
    Ping(2), GoAway(11, spdy.GOAWAY_INTERNAL_ERROR), WindowUpdate(0, (1 << 31) - 1),
    Data(1, b""), Data(5, bytes(range(256)) * 300, fin=True),
    UnknownControl(0x20, 3, b"whatever"),
]


def test_every_frame_round_trips_in_one_connection() -> None:
    encoder = FrameEncoder()
    wire = b"".join(encoder.encode(frame) for frame in ROUND_TRIPS)
    assert decode_all(wire) == ROUND_TRIPS
    # in any pieces: one byte at a time
    decoder = FrameDecoder()
    got = []
    for i in range(len(wire)):
        decoder.feed(wire[i:i + 1])
        while (frame := decoder.next_frame()) is not None:
            got.append(frame)
    assert got == ROUND_TRIPS and decoder.buffered == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1,
                                        max_size=20),
                                st.text(max_size=40), max_size=6), min_size=1, max_size=8))
def test_header_blocks_round_trip(blocks: list[dict[str, str]]) -> None:
    encoder = FrameEncoder()
    frames = [SynReply(2 * i + 1, block) for i, block in enumerate(blocks)]
    assert decode_all(b"".join(encoder.encode(f) for f in frames)) == frames


@pytest.mark.parametrize(("frame", "message"), [
    (Data(0, b"x"), "stream id 0"),
    (SynStream(1 << 31, {}), "out of range"),
    (Data(1, bytes(1 << 24)), "too large"),
], ids=["stream-0", "stream-too-big", "data-too-large"])
def test_frames_we_refuse_to_write(frame: spdy.Frame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FrameEncoder().encode(frame)


# -- bad input ---------------------------------------------------------------------------------
def control(type_: int, payload: bytes, flags: int = 0, version: int = 3) -> bytes:
    return (0x8000 | version).to_bytes(2, "big") + type_.to_bytes(2, "big") + \
        ((flags << 24) | len(payload)).to_bytes(4, "big") + payload


BAD: list[tuple[str, bytes, str]] = [
    ("spdy2", control(6, bytes.fromhex("00000001"), version=2), "version 2"),
    ("data-stream-0", bytes.fromhex("00000000 00000001 ff"), "data frame for stream 0"),
    ("ping-5-bytes", control(6, bytes(5)), "PING frame of 5 bytes; it has 4"),
    ("rst-short", control(3, bytes.fromhex("00000001")), "RST_STREAM frame of 4 bytes"),
    ("rst-status-0", control(3, bytes.fromhex("00000001 00000000")), "status 0"),
    ("rst-stream-0", control(3, bytes.fromhex("00000000 00000005")), "stream 0"),
    ("settings-count", control(4, bytes.fromhex("00000002 00000007 00000001")),
     "cannot hold 2 entries"),
    ("goaway-spdy2-size", control(7, bytes.fromhex("00000001")), "GOAWAY frame of 4 bytes"),
    ("window-delta-0", control(9, bytes.fromhex("00000001 00000000")), "delta of 0"),
    ("syn-stream-short", control(1, bytes(6)), "at least 10"),
    ("syn-stream-0", control(1, bytes(10) + ZLIB_HEADER + DICT_ID + stored(bytes(4))),
     "stream 0"),
    ("syn-reply-short", control(2, bytes(2)), "at least 4"),
    ("not-zlib", control(2, bytes.fromhex("00000001") + b"garbage!"), "decompress"),
    ("wrong-dictionary", control(2, bytes.fromhex("00000001") + ZLIB_HEADER +
                                 bytes.fromhex("00000001") + stored(bytes(4))), "decompress"),
    ("zlib-finished", control(2, bytes.fromhex("00000001") +
                              (lambda c: c.compress(bytes(4)) + c.flush())(
                                  zlib.compressobj(zdict=spdy.HEADER_DICTIONARY))), "ended"),
    ("bad-block", control(2, bytes.fromhex("00000001") + ZLIB_HEADER + DICT_ID +
                          stored(bytes.fromhex("00000005"))), "truncated header block"),
]


@pytest.mark.parametrize(("wire", "message"), [(w, m) for _, w, m in BAD],
                         ids=[name for name, _, _ in BAD])
def test_bad_frames_are_clear_errors(wire: bytes, message: str) -> None:
    decoder = FrameDecoder()
    decoder.feed(wire + FrameEncoder().encode(Ping(1)))
    with pytest.raises(SpdyProtocolError, match=message):
        decoder.next_frame()
    with pytest.raises(SpdyProtocolError, match="already failed"):
        decoder.next_frame()  # the connection is over: nothing after is trusted


def test_a_header_bomb_is_refused() -> None:
    deflate = zlib.compressobj(zdict=spdy.HEADER_DICTIONARY)
    block = spdy.encode_header_block({"x": "a" * 100_000})
    compressed = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert len(compressed) < 1000
    decoder = FrameDecoder(max_header_block=50_000)
    decoder.feed(control(2, bytes.fromhex("00000001") + compressed))
    with pytest.raises(SpdyProtocolError, match="larger than 50000"):
        decoder.next_frame()


def test_an_unknown_control_frame_is_passed_over() -> None:
    assert decode_all(control(0x55, b"xyz", flags=9) + control(6, bytes.fromhex("00000003"))) \
        == [UnknownControl(0x55, 9, b"xyz"), Ping(3)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_frames_or_clear_errors(data: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed(data)
    try:
        while decoder.next_frame() is not None:
            pass
    except SpdyProtocolError:
        pass


# -- the session --------------------------------------------------------------------------------
class Link:
    """A client and a server session joined by in-memory queues (one pump per direction)."""

    def __init__(self, on_stream: spdy.StreamHandler | None, *,
                 max_buffered: int = 1 << 20) -> None:
        self.to_server: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.to_client: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.client = SpdySession(self.to_server.put, server=False)
        self.server = SpdySession(self.to_client.put, server=True, on_stream=on_stream,
                                  max_buffered=max_buffered)
        self.server_errors: list[Exception] = []
        self.pumps = [asyncio.create_task(self._pump(self.to_server, self.server)),
                      asyncio.create_task(self._pump(self.to_client, self.client))]

    async def _pump(self, queue: asyncio.Queue[bytes | None], session: SpdySession) -> None:
        while (data := await queue.get()) is not None:
            try:
                await session.receive(data)
            except SpdyProtocolError as err:
                self.server_errors.append(err)
                break
        session.connection_lost()

    async def close(self) -> None:
        await self.to_server.put(None)
        await self.to_client.put(None)
        await asyncio.gather(*self.pumps)


@pytest.fixture
async def echo_link() -> AsyncIterator[Link]:
    """A server that accepts every stream and echoes upper-cased data, FIN for FIN."""
    tasks: set[asyncio.Task[None]] = set()

    async def echo(stream: SpdyStream) -> None:
        while data := await stream.read():
            await stream.write(data.upper())
        await stream.close()

    async def on_stream(stream: SpdyStream) -> None:
        if stream.headers.get("refuse"):
            await stream.reset(spdy.REFUSED_STREAM)
            return
        await stream.accept({"ok": "yes"})
        task = asyncio.create_task(echo(stream))
        tasks.add(task)

    link = Link(on_stream)
    yield link
    await link.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def read_all(stream: SpdyStream) -> bytes:
    out = b""
    while data := await asyncio.wait_for(stream.read(), 10):
        out += data
    return out


async def test_streams_carry_data_both_ways_and_half_close(echo_link: Link) -> None:
    a = await echo_link.client.open_stream({"port": "80"})
    b = await echo_link.client.open_stream({"port": "81"})
    assert (a.id, b.id) == (1, 3)  # client ids are odd and increasing
    assert a.headers == {"port": "80", "ok": "yes"}  # the reply's headers join the stream's
    await b.write(b"second ")
    await a.write(b"first " * 50_000)  # several data frames
    await a.close()
    await b.write(b"stream")
    await b.close()
    assert await read_all(a) == b"FIRST " * 50_000
    assert await read_all(b) == b"SECOND STREAM"
    with pytest.raises(StreamClosedError, match="already finished"):
        await a.write(b"more")
    assert echo_link.client.streams == {} and echo_link.server.streams == {}


async def test_a_refused_stream_and_a_reset(echo_link: Link) -> None:
    with pytest.raises(StreamClosedError, match="status 3"):
        await echo_link.client.open_stream({"refuse": "1"})
    s = await echo_link.client.open_stream({})
    await s.reset()
    assert s.reset_status == spdy.CANCEL
    assert await s.read() == b""
    with pytest.raises(StreamClosedError, match="reset"):
        await s.write(b"x")
    await echo_link.client.ping()  # the server echoed it, so it handled the reset first
    assert echo_link.server.streams == {}


async def test_pings_are_echoed_by_parity(echo_link: Link) -> None:
    await echo_link.client.ping()
    await echo_link.client.ping()
    await echo_link.server.ping()  # a server ping (even id) is echoed by the client


async def test_stream_faults_are_rst_stream_and_the_session_goes_on() -> None:
    link = Link(None)  # a server that accepts nothing
    seen: list[spdy.Frame] = []
    decoder = FrameDecoder()

    async def capture(data: bytes) -> None:
        decoder.feed(data)
        while (frame := decoder.next_frame()) is not None:
            seen.append(frame)

    link.server._send = capture  # type: ignore[assignment]
    encoder = FrameEncoder()
    await link.server.receive(encoder.encode(SynStream(1, {})))  # no handler: refused
    await link.server.receive(encoder.encode(SynStream(2, {})))  # a server id from a client
    await link.server.receive(encoder.encode(Data(9, b"x")))  # never opened
    await link.server.receive(encoder.encode(Ping(7)))
    assert seen == [RstStream(1, spdy.REFUSED_STREAM), RstStream(2, spdy.PROTOCOL_ERROR),
                    RstStream(9, spdy.INVALID_STREAM), Ping(7)]
    await link.close()


async def test_data_after_fin_resets_the_stream() -> None:
    got: list[SpdyStream] = []

    async def keep(stream: SpdyStream) -> None:
        await stream.accept()
        got.append(stream)

    link = Link(keep)
    sent: list[bytes] = []

    async def capture(data: bytes) -> None:
        sent.append(data)

    link.server._send = capture  # type: ignore[assignment]
    encoder = FrameEncoder()
    await link.server.receive(encoder.encode(SynStream(1, {}, fin=True)))
    await link.server.receive(encoder.encode(Data(1, b"late")))
    frames = decode_all(b"".join(sent))
    assert frames[1] == RstStream(1, spdy.STREAM_ALREADY_CLOSED)
    assert await got[0].read() == b""
    await link.close()


async def test_goaway_refuses_new_streams(echo_link: Link) -> None:
    await echo_link.server.go_away()
    await echo_link.client.ping()  # the GOAWAY has arrived
    assert echo_link.client.goaway_received
    with pytest.raises(StreamClosedError, match="going away"):
        await echo_link.client.open_stream({})


async def test_a_slow_reader_holds_the_connection_back() -> None:
    streams: list[SpdyStream] = []

    async def keep(stream: SpdyStream) -> None:
        await stream.accept()
        streams.append(stream)

    link = Link(keep, max_buffered=1000)
    s = await link.client.open_stream({})
    await s.write(b"x" * 3000)  # one frame over the limit
    await s.write(b"y")
    for _ in range(20):
        await asyncio.sleep(0)  # let everything that can run, run
    assert streams[0]._buffered == 3000
    assert link.to_server.qsize() == 1  # the next frame was not taken from the connection
    assert await streams[0].read() == b"x" * 3000
    assert await asyncio.wait_for(streams[0].read(), 10) == b"y"
    await link.close()


async def test_connection_loss_ends_every_stream(echo_link: Link) -> None:
    s = await echo_link.client.open_stream({})
    echo_link.client.connection_lost()
    assert await s.read() == b""
    with pytest.raises(StreamClosedError, match="connection is closed"):
        await s.write(b"x")
    with pytest.raises(StreamClosedError, match="closed"):
        await echo_link.client.open_stream({})


async def test_a_protocol_error_sends_goaway() -> None:
    link = Link(None)
    sent: list[bytes] = []

    async def capture(data: bytes) -> None:
        sent.append(data)

    link.server._send = capture  # type: ignore[assignment]
    with pytest.raises(SpdyProtocolError, match="version 2"):
        await link.server.receive(control(6, bytes(4), version=2))
    assert decode_all(b"".join(sent)) == [GoAway(0, spdy.GOAWAY_PROTOCOL_ERROR)]
    await link.close()


async def test_a_stream_nobody_reads_stops_holding_the_connection_back() -> None:
    streams: list[SpdyStream] = []

    async def keep(stream: SpdyStream) -> None:
        await stream.accept()
        streams.append(stream)

    link = Link(keep, max_buffered=1000)
    s = await link.client.open_stream({})
    other = await link.client.open_stream({})
    await s.write(b"x" * 3000)
    await other.write(b"for the other stream")
    pinged = asyncio.create_task(link.client.ping())  # queued behind the held-back frame
    for _ in range(20):
        await asyncio.sleep(0)
    assert not pinged.done()
    streams[0].stop_reading()  # ... until the stream's reader gives up
    await asyncio.wait_for(pinged, 10)
    assert await streams[0].read() == b""
    assert await asyncio.wait_for(streams[1].read(), 10) == b"for the other stream"
    await s.write(b"dropped")
    await s.close()
    await link.client.ping()
    assert streams[0]._buffered == 0 and not streams[0]._inbox
    await link.close()


async def test_streams_beyond_the_limit_are_refused() -> None:
    async def keep(stream: SpdyStream) -> None:
        await stream.accept()

    link = Link(keep)
    link.server.max_streams = 2
    await link.client.open_stream({})
    await link.client.open_stream({})
    with pytest.raises(StreamClosedError, match=f"status {spdy.REFUSED_STREAM}"):
        await link.client.open_stream({})
    await link.close()


_ids = st.integers(1, 12)
_headers = st.dictionaries(st.sampled_from(["port", "streamtype", "requestid", "x"]),
                           st.text(max_size=5), max_size=3)
_frames = st.one_of(
    st.builds(SynStream, _ids, _headers, fin=st.booleans(), unidirectional=st.booleans()),
    st.builds(SynReply, _ids, _headers, fin=st.booleans()),
    st.builds(HeadersFrame, _ids, _headers, fin=st.booleans()),
    st.builds(RstStream, _ids, st.integers(1, 11)),
    st.builds(Data, _ids, st.binary(max_size=20), fin=st.booleans()),
    st.builds(Ping, st.integers(0, 5)),
    st.builds(GoAway, st.integers(0, 12)),
    st.builds(WindowUpdate, st.integers(0, 12), st.integers(1, 1000)),
    st.builds(Settings, st.lists(st.builds(Setting, st.integers(1, 8), st.integers(0, 99)),
                                 max_size=2).map(tuple)),
    st.builds(UnknownControl, st.integers(10, 20), st.integers(0, 255), st.binary(max_size=4)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_frames, max_size=25))
async def test_any_frame_sequence_is_served_without_crashing(frames: list[spdy.Frame]) -> None:
    async def on_stream(stream: SpdyStream) -> None:
        if stream.id % 3:
            await stream.accept()
            with contextlib.suppress(StreamClosedError):  # a unidirectional stream
                await stream.write(b"hello")
            await stream.close()
        else:
            await stream.reset()

    sent: list[bytes] = []

    async def capture(data: bytes) -> None:
        sent.append(data)

    server = SpdySession(capture, server=True, on_stream=on_stream)
    encoder = FrameEncoder()
    for frame in frames:
        await server.receive(encoder.encode(frame))
    server.connection_lost()
    decode_all(b"".join(sent))  # what the server said is well-formed SPDY
