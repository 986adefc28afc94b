"""The streaming server behind the CRI's Exec, Attach and PortForward (the kubelet's protocol).

The CRI answers those three RPCs with a URL (``http://HOST:PORT/exec/<token>``);
the client (the kubelet, proxying ``kubectl exec``) opens a WebSocket there.
A token is good once, for a minute, and carries the original request, so
the URL itself says nothing about the container.

Framing (Kubernetes' channel protocol): every binary message starts with a
channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize — and the rest
is that channel's data. Subprotocols:

* ``v5.channel.k8s.io``: as v4, plus ``[255, channel]`` from the client closes
  that channel (stdin end-of-file);
* ``v4.channel.k8s.io``: the error channel carries one ``metav1.Status`` JSON at
  the end (``Success``, or ``Failure`` with reason ``NonZeroExitCode`` and the
  exit code as a cause); resize is ``{"Width": w, "Height": h}``;
* ``channel.k8s.io``: the error channel carries a plain message;
* ``v4.base64.channel.k8s.io`` / ``base64.channel.k8s.io``: text messages, the
  channel as an ASCII digit and the data base64-encoded.

Port forwarding: ``/portforward/<token>?port=80&port=443``; port *i* gets data
channel ``2i`` and error channel ``2i+1``; the server's first message on each
is the port as a little-endian uint16. Each forwarded port is one TCP
connection made from inside the sandbox's network namespace.

SPDY tunneled in a WebSocket (``SPDY/3.1+portforward.k8s.io``, what kubectl 1.32's
``port-forward`` asks for): the binary messages are a SPDY/3.1 byte stream
(``spdy.py``) in which the client opens, per forwarded connection, an error stream
and a data stream with the headers ``streamType: error|data``, ``port: N`` and
``requestID: K``; the ports come from those headers, not from the URL. As the
kubelet does: a stream with a missing or bad ``port``/``streamType`` is reset;
once both streams of a request are there, the data stream is copied to and from
a TCP connection to ``localhost:N`` made inside the sandbox's network namespace,
and a failure is written as text to the error stream; both streams are then
finished. The client's FIN on the data stream half-closes the TCP connection;
the pod's end-of-file finishes the data stream. Plain SPDY upgrades (no
WebSocket) are not served: clients fall back to them only when WebSockets fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import logging
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim import spdy
from pilothouse.runtime_shim.errors import CRIError

log = logging.getLogger(__name__)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255
TOKEN_TTL = 60.0
V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
V4_BASE64, V1, V1_BASE64 = "v4.base64.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io"
PORT_FORWARD = "portforward.k8s.io"
SPDY_PORT_FORWARD = "SPDY/3.1+portforward.k8s.io"
# "/" is not allowed in an HTTP token, so the websockets library refuses the name
# Kubernetes uses; the handshake renames it to this token on the way in and back
# on the way out (see _check_path and _restore_subprotocol).
_SPDY_TOKEN = "spdy-3.1.portforward.k8s.io"
SUBPROTOCOLS = [V5, V4, V4_BASE64, V1, V1_BASE64, PORT_FORWARD, _SPDY_TOKEN]
STREAM_CREATION_TIMEOUT = 30.0  # the kubelet's default: both streams of a request by then


class Streams:
    """One exec's or attach's stdio as the backend sees it."""

    def __init__(self, conn: Channels, *, stdin: bool, stdout: bool, stderr: bool,
                 tty: bool) -> None:
        self.conn = conn
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr and not tty
        self.tty = tty
        # in the client's order: stdin data, (width, height) resizes, None = end of stdin
        self.input: asyncio.Queue[bytes | tuple[int, int] | None] = asyncio.Queue()

    async def write_stdout(self, data: bytes) -> None:
        if self.stdout and data:
            await self.conn.send(STDOUT, data)

    async def write_stderr(self, data: bytes) -> None:
        if data:
            await self.conn.send(STDERR if self.stderr else STDOUT, data)


class StreamingBackend(Protocol):
    """What a backend implements to be served by the streaming server."""

    async def stream_exec(self, req: cri.ExecRequest, streams: Streams) -> int:
        """Run ``req.cmd`` in the container wired to ``streams``; its exit code."""

    async def stream_attach(self, req: cri.AttachRequest, streams: Streams) -> None:
        """Join the container's stdio until it exits or the client leaves."""

    async def port_forward_netns(self, sandbox_id: str) -> str:
        """The sandbox's network namespace file; "" for the host network."""


class Channels:
    """A WebSocket speaking one channel subprotocol."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.protocol = ws.subprotocol or ""
        self.base64 = "base64" in self.protocol

    async def send(self, channel: int, data: bytes) -> None:
        if self.base64:
            await self.ws.send(str(channel) + base64.b64encode(data).decode())
        else:
            await self.ws.send(bytes([channel]) + data)

    @staticmethod
    def decode(message: str | bytes, b64: bool) -> tuple[int, bytes]:
        if isinstance(message, str):
            if not message:
                return -1, b""
            return int(message[0]), base64.b64decode(message[1:]) if b64 else \
                message[1:].encode()
        if not message:
            return -1, b""
        return message[0], bytes(message[1:])

    def status(self, code: int | None, error: str = "") -> bytes:
        if self.protocol not in (V5, V4, V4_BASE64):
            return error.encode()
        if not error and code == 0:
            return json.dumps({"metadata": {}, "status": "Success"}).encode()
        if not error:
            return json.dumps({
                "metadata": {}, "status": "Failure",
                "message": f"command terminated with non-zero exit code: exit code {code}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}).encode()
        return json.dumps({"metadata": {}, "status": "Failure", "message": error,
                           "reason": "InternalError", "code": 500}).encode()


@dataclass
class _Pending:
    kind: str  # exec | attach | portforward
    request: Any
    expires: float
    ports: list[int] = field(default_factory=list)


class StreamingServer:
    def __init__(self, backend: StreamingBackend, address: str = "127.0.0.1:0", *,
                 stream_creation_timeout: float = STREAM_CREATION_TIMEOUT) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"streaming address must be HOST:PORT, got {address!r}")
        self.backend = backend
        self.stream_creation_timeout = stream_creation_timeout
        self.host = host
        self.port = int(port)
        self._pending: dict[str, _Pending] = {}
        self._server: Server | None = None

    async def start(self) -> None:
        self._server = await serve(self._handle, self.host, self.port,
                                   subprotocols=SUBPROTOCOLS,  # type: ignore[arg-type]
                                   process_request=self._check_path,
                                   process_response=self._restore_subprotocol,
                                   max_size=16 << 20, compression=None)
        self.port = self._server.sockets[0].getsockname()[1] if self.port == 0 else self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def register(self, kind: str, request: Any) -> str:
        """A one-time URL for ``request`` (an Exec/Attach/PortForward request)."""
        now = time.monotonic()
        for token in [t for t, p in self._pending.items() if p.expires < now]:
            del self._pending[token]
        token = secrets.token_urlsafe(12)
        self._pending[token] = _Pending(kind, request, now + TOKEN_TTL)
        return f"{self.base_url}/{kind}/{token}"

    def _check_path(self, conn: ServerConnection, request: Any) -> Any:
        parts = urlsplit(request.path).path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("exec", "attach", "portforward") or \
                parts[1] not in self._pending:
            return conn.respond(404, "unknown or expired streaming URL\n")
        offered = request.headers.get_all("Sec-WebSocket-Protocol")
        if any(SPDY_PORT_FORWARD in value for value in offered):
            del request.headers["Sec-WebSocket-Protocol"]
            for value in offered:
                request.headers["Sec-WebSocket-Protocol"] = value.replace(SPDY_PORT_FORWARD,
                                                                          _SPDY_TOKEN)
        return None

    @staticmethod
    def _restore_subprotocol(conn: ServerConnection, request: Any, response: Any) -> Any:
        if response.headers.get("Sec-WebSocket-Protocol") == _SPDY_TOKEN:
            del response.headers["Sec-WebSocket-Protocol"]
            response.headers["Sec-WebSocket-Protocol"] = SPDY_PORT_FORWARD
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path if ws.request else "")
        kind, token = url.path.strip("/").split("/")
        pending = self._pending.pop(token, None)
        if pending is None or pending.expires < time.monotonic():
            await ws.close(1008, "unknown or expired streaming URL")
            return
        conn = Channels(ws)
        try:
            if ws.subprotocol == _SPDY_TOKEN:
                if kind != "portforward":
                    await ws.close(1002, f"{SPDY_PORT_FORWARD} is only served for port "
                                   f"forwarding")
                    return
                try:
                    await SpdyPortForward(ws, pending.request, self.backend,
                                          self.stream_creation_timeout).run()
                except CRIError as err:
                    await ws.close(1011, err.message[:120])
                except Exception:  # a bug: this connection ends, the server keeps serving
                    log.exception("SPDY port forward failed")
            elif kind == "portforward":
                ports = [int(p) for p in parse_qs(url.query).get("port", [])]
                await self._port_forward(conn, pending.request, ports)
            else:
                await self._stdio(conn, kind, pending.request)
        except ConnectionClosed:
            pass
        finally:
            await ws.close()

    # -- exec / attach -------------------------------------------------------------
    async def _stdio(self, conn: Channels, kind: str, req: Any) -> None:
        streams = Streams(conn, stdin=req.stdin, stdout=req.stdout, stderr=req.stderr,
                          tty=req.tty)
        reader = asyncio.create_task(self._read_client(conn, streams))
        code: int | None = None
        error = ""
        try:
            if kind == "exec":
                code = await self.backend.stream_exec(req, streams)
            else:
                await self.backend.stream_attach(req, streams)
                code = 0
        except CRIError as err:
            error = err.message
        except Exception as err:  # report it on the error channel, keep serving
            log.exception("streaming %s failed", kind)
            error = f"{type(err).__name__}: {err}"
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader
        if error or code != 0 or conn.protocol in (V5, V4, V4_BASE64):
            with contextlib.suppress(ConnectionClosed):
                await conn.send(ERROR, conn.status(code, error))

    async def _read_client(self, conn: Channels, streams: Streams) -> None:
        try:
            async for message in conn.ws:
                channel, data = Channels.decode(message, conn.base64)
                if channel == STDIN:
                    if streams.stdin and data:
                        await streams.input.put(data)
                elif channel == RESIZE:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        size = json.loads(data)
                        await streams.input.put((int(size["Width"]), int(size["Height"])))
                elif channel == CLOSE_SIGNAL and conn.protocol == V5 and data[:1] == b"\0":
                    await streams.input.put(None)
        finally:
            await streams.input.put(None)  # the client left: stdin ends

    # -- port forward --------------------------------------------------------------
    async def _port_forward(self, conn: Channels, req: cri.PortForwardRequest,
                            ports: list[int]) -> None:
        wanted = ports or list(req.port)
        if not wanted:
            await conn.send(1, b"no port given (?port=N)")
            return
        netns = await self.backend.port_forward_netns(req.pod_sandbox_id)
        writers: dict[int, asyncio.StreamWriter] = {}
        forwards: list[asyncio.Task[None]] = []
        for i, port in enumerate(wanted):
            for channel in (2 * i, 2 * i + 1):
                await conn.send(channel, struct.pack("<H", port))
            try:
                reader, writer = await connect_in_netns(netns, port)
            except OSError as err:  # this port is done: its error is all the client gets
                await conn.send(2 * i + 1, forward_failure(
                    req.pod_sandbox_id, port, connect_failure(port, err)).encode())
                continue
            writers[2 * i] = writer
            forwards.append(asyncio.create_task(self._pump_port(conn, 2 * i, reader, writer)))
        # As the kubelet does, the session lasts while a port is forwarded: once the pod
        # has closed every connection (or none could be made), the WebSocket closes and
        # the client sees the end. The client leaving ends it too.
        from_client: asyncio.Future[Any] = asyncio.create_task(self._from_client(conn, writers))
        all_ended: asyncio.Future[Any] = asyncio.gather(*forwards)
        try:
            await asyncio.wait([from_client, all_ended], return_when=asyncio.FIRST_COMPLETED)
            if from_client.done():
                from_client.result()  # a ConnectionClosed: the client left
        finally:
            for task in (from_client, all_ended, *forwards):
                task.cancel()
            await asyncio.gather(from_client, all_ended, *forwards, return_exceptions=True)
            for writer in writers.values():
                writer.close()

    @staticmethod
    async def _from_client(conn: Channels, writers: dict[int, asyncio.StreamWriter]) -> None:
        """The client's data channels into the pod's connections, until the client leaves.

        A connection the pod has closed or reset takes no more data: what the client
        still sends on its channel is dropped (its forward ends on its own)."""
        async for message in conn.ws:
            channel, data = Channels.decode(message, conn.base64)
            target = writers.get(channel)
            if target is None or not data or target.is_closing():
                continue
            try:
                target.write(data)
                await target.drain()
            except OSError:
                target.close()

    @staticmethod
    async def _pump_port(conn: Channels, channel: int, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        """The pod's data to the client until the pod closes (or resets) the connection."""
        try:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    await conn.send(channel, data)
        finally:
            writer.close()


class _StreamPair:
    """The error and data streams of one forwarded connection (one requestID)."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.error: spdy.SpdyStream | None = None
        self.data: spdy.SpdyStream | None = None
        self.complete = asyncio.Event()


class SpdyPortForward:
    """Kubernetes' ``portforward.k8s.io`` over SPDY/3.1 tunneled in one WebSocket."""

    def __init__(self, ws: ServerConnection, request: cri.PortForwardRequest,
                 backend: StreamingBackend, stream_creation_timeout: float) -> None:
        self.ws = ws
        self.request = request
        self.backend = backend
        self.timeout = stream_creation_timeout
        self.netns = ""
        self.pairs: dict[str, _StreamPair] = {}
        self.session = spdy.SpdySession(self._send, server=True, on_stream=self._on_stream)
        self._tasks: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None

    async def _send(self, data: bytes) -> None:
        try:
            await self.ws.send(data)
        except ConnectionClosed as err:
            raise ConnectionResetError(f"the WebSocket closed: {err}") from err

    async def run(self) -> None:
        self.netns = await self.backend.port_forward_netns(self.request.pod_sandbox_id)
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                async for message in self.ws:
                    if isinstance(message, str):
                        raise spdy.SpdyProtocolError("a text message in a SPDY tunnel (only "
                                                     "binary messages carry SPDY)")
                    await self.session.receive(message)
            except spdy.SpdyProtocolError as err:
                log.warning("port forward to sandbox %s: bad SPDY from the client: %s",
                            self.request.pod_sandbox_id, err)
                await self.session.go_away(spdy.GOAWAY_PROTOCOL_ERROR)
                await self.ws.close(1002, f"SPDY protocol error: {err}"[:120])
            except (ConnectionClosed, spdy.StreamClosedError):
                pass  # the client left (perhaps while we answered it)
            finally:
                self.session.connection_lost()
                for task in self._tasks:
                    task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._group is not None
        task = self._group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_stream(self, stream: spdy.SpdyStream) -> None:
        port_text = stream.headers.get("port", "")
        stream_type = stream.headers.get("streamtype", "")
        problem = ""
        if not port_text:
            problem = '"port" header is required'
        elif not (port_text.isascii() and port_text.isdigit()) or \
                not 0 < int(port_text) < 65536:
            problem = f"unable to parse {port_text!r} as a port"
        elif not stream_type:
            problem = '"streamType" header is required'
        elif stream_type not in ("error", "data"):
            problem = f"invalid stream type {stream_type!r}"
        if problem:
            log.info("port forward: stream %d rejected: %s", stream.id, problem)
            await stream.reset()
            return
        await stream.accept()
        request_id = stream.headers.get("requestid", "")
        if not request_id:  # clients older than requestID: pair by consecutive stream ids
            request_id = str(stream.id if stream_type == "error" else stream.id - 2)
        pair = self.pairs.get(request_id)
        if pair is None:
            pair = self.pairs[request_id] = _StreamPair(request_id)
            self._spawn(self._await_pair(pair))
        if getattr(pair, stream_type) is not None:
            message = f"error processing stream for request {request_id}: {stream_type} " \
                      f"stream already assigned"
            await self._report(pair, message)
            await stream.reset()
            return
        setattr(pair, stream_type, stream)
        if pair.error is not None and pair.data is not None:
            pair.complete.set()

    async def _await_pair(self, pair: _StreamPair) -> None:
        try:
            await asyncio.wait_for(pair.complete.wait(), self.timeout)
        except TimeoutError:
            await self._report(pair, f"(request={pair.request_id}) timed out waiting for "
                               f"streams")
            for stream in (pair.error, pair.data):
                if stream is not None:
                    stream.stop_reading()
                    await stream.close()
            return
        finally:
            self.pairs.pop(pair.request_id, None)
        await self._forward(pair)

    @staticmethod
    async def _report(pair: _StreamPair, message: str) -> None:
        if pair.error is not None:
            with contextlib.suppress(spdy.StreamClosedError):
                await pair.error.write(message.encode())

    async def _forward(self, pair: _StreamPair) -> None:
        assert pair.data is not None and pair.error is not None
        data, port = pair.data, int(pair.data.headers["port"])
        try:
            try:
                reader, writer = await connect_in_netns(self.netns, port)
            except OSError as err:
                await self._report(pair, self._failure(port, connect_failure(port, err)))
                return
            try:
                error = await self._copy(data, reader, writer)
            finally:
                writer.close()
            if error:
                await self._report(pair, self._failure(port, error))
        finally:
            for stream in (data, pair.error):
                stream.stop_reading()  # what the client still sends goes nowhere
                await stream.close()

    def _failure(self, port: int, reason: str) -> str:
        return forward_failure(self.request.pod_sandbox_id, port, reason)

    @staticmethod
    async def _copy(stream: spdy.SpdyStream, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> str:
        """Copy both ways until both ends finish; an I/O error's text, or ""."""

        async def to_pod() -> str:
            try:
                while chunk := await stream.read():
                    writer.write(chunk)
                    await writer.drain()
                if stream.reset_status is None and writer.can_write_eof():
                    writer.write_eof()  # the client finished sending: so does the pod's peer
            except OSError as err:
                return f"writing to the pod: {err.strerror or err}"
            return ""

        async def from_pod() -> str:
            try:
                while chunk := await reader.read(65536):
                    await stream.write(chunk)
            except OSError as err:
                return f"reading from the pod: {err.strerror or err}"
            except spdy.StreamClosedError:
                return ""  # the client reset or left: nothing to tell it
            await stream.close()
            return ""

        up = asyncio.ensure_future(to_pod())
        down = asyncio.ensure_future(from_pod())
        ended = asyncio.ensure_future(stream.wait_ended())
        try:
            first = await up
            if stream.reset_status is None and not first:
                # half-closed: the pod may still answer, until it finishes or the client resets
                await asyncio.wait({down, ended}, return_when=asyncio.FIRST_COMPLETED)
                if down.done():
                    return down.result()
            return first  # a reset, a lost connection or a dead pod socket ends both ways
        finally:
            for task in (up, down, ended):
                task.cancel()
            await asyncio.gather(up, down, ended, return_exceptions=True)


def forward_failure(sandbox_id: str, port: int, reason: str) -> str:
    """A port forward's failure in the kubelet's words (its CRI streaming server names
    the pod by its sandbox id), on either protocol's error stream."""
    return f"error forwarding port {port} to pod {sandbox_id}, uid : {reason}"


def connect_failure(port: int, err: OSError) -> str:
    return f"failed to connect to localhost:{port} inside the pod's network namespace: " \
           f"{err.strerror or err}"


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _socket_in_netns(netns: str, port: int) -> socket.socket:
    """Connect to localhost:port from inside ``netns`` (a thread of its own enters it)."""
    result: dict[str, Any] = {}

    def inside() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            # a socket belongs to the namespace it was made in, whoever uses it later
            sock = _connect_localhost(port)
            sock.settimeout(None)
            result["sock"] = sock
        except OSError as err:
            result["error"] = err

    # a thread made for this alone: it ends in the pod's namespace and is never reused
    thread = threading.Thread(target=inside, daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    sock: socket.socket = result["sock"]
    return sock


def _connect_localhost(port: int) -> socket.socket:
    """IPv4 first, then IPv6 (a server may listen on one family only), one after the
    other in this thread: as containerd does, never in parallel outside the namespace."""
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError as v4_error:
        try:
            return socket.create_connection(("::1", port), timeout=10)
        except OSError:
            raise v4_error from None


async def connect_in_netns(netns: str, port: int
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = await asyncio.to_thread(_socket_in_netns, netns, port) if netns else \
        await asyncio.to_thread(_connect_localhost, port)
    sock.setblocking(False)
    return await asyncio.open_connection(sock=sock)


async def pump_output(read: Callable[[], Awaitable[bytes]],
                      write: Callable[[bytes], Awaitable[None]]) -> None:
    """Copy until ``read`` returns b"" (end of file)."""
    while data := await read():
        await write(data)
