"""Wiring processes and files to streaming :class:`~pilothouse.runtime_shim.streaming.Streams`.

Shared by the backends' streaming exec and attach:

* :func:`run_with_pipes` / :func:`run_in_pty`: run a command (an ``nsenter``
  into the container) with pipes, or with a pseudo-terminal that is the
  command's controlling terminal and follows the client's resize messages;
* :func:`follow_log`: attach output — the container's CRI log from its
  current end, record by record, until the container exits;
* :func:`feed_fifo`: attach input — the client's stdin into a FIFO the
  container reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import struct
import termios
from collections.abc import AsyncIterator, Callable
from typing import IO

from pilothouse.runtime_shim import logs
from pilothouse.runtime_shim.streaming import Streams

FOLLOW_INTERVAL = 0.05


async def read_fd(fd: int) -> AsyncIterator[bytes]:
    """Chunks from a non-blocking fd until end of file (or EIO: a pty's other side closed)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
            continue
        except OSError as err:
            if err.errno == errno.EINTR:
                continue
            return
        if not chunk:
            return
        yield chunk


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _exit_code(returncode: int | None) -> int:
    code = returncode if returncode is not None else -1
    return 128 - code if code < 0 else code


async def run_with_pipes(argv: list[str], env: dict[str, str], cwd: str | None,
                         streams: Streams) -> int:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, start_new_session=True,
        stdin=asyncio.subprocess.PIPE if streams.stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def pump(reader: asyncio.StreamReader | None, write: Callable[[bytes], object]) -> None:
        if reader is None:
            return
        while data := await reader.read(65536):
            await write(data)  # type: ignore[misc]

    async def feed() -> None:
        assert proc.stdin is not None
        while (data := await streams.input.get()) is not None:
            if isinstance(data, bytes):  # a resize means nothing without a terminal
                proc.stdin.write(data)
                with contextlib.suppress(ConnectionError):
                    await proc.stdin.drain()
        proc.stdin.close()

    feeder = asyncio.create_task(feed()) if streams.stdin else None
    try:
        await asyncio.gather(pump(proc.stdout, streams.write_stdout),
                             pump(proc.stderr, streams.write_stderr))
        return _exit_code(await proc.wait())
    finally:
        if feeder is not None:
            feeder.cancel()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()


def _session_with_terminal(slave: int) -> Callable[[], None]:
    """The child's pre-exec step: a new session whose controlling terminal is ``slave``.

    Done here rather than with ``start_new_session`` and fd 0: uvloop runs the hook
    before its own ``setsid`` and before stdin is in place (TIOCSCTTY then fails
    with ENOTTY), so the hook does both itself, on the slave's own descriptor.
    """
    def step() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    return step


def set_size(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


async def run_in_pty(argv: list[str], env: dict[str, str], cwd: str | None,
                     streams: Streams) -> int:
    master, slave = os.openpty()
    try:
        set_size(master, 80, 24)
        proc = await asyncio.create_subprocess_exec(
            *argv, env={"TERM": "xterm", **env}, cwd=cwd, stdin=slave, stdout=slave,
            stderr=slave, preexec_fn=_session_with_terminal(slave))
    finally:
        os.close(slave)
    os.set_blocking(master, False)

    async def out() -> None:
        async for chunk in read_fd(master):
            await streams.write_stdout(chunk)

    async def feed() -> None:
        # one queue, in the client's order: a resize sent before a keystroke is in
        # effect when the command reads that keystroke
        while (item := await streams.input.get()) is not None:
            if isinstance(item, tuple):
                with contextlib.suppress(OSError):
                    set_size(master, *item)
            elif streams.stdin:
                await asyncio.to_thread(_write_all, master, item)
        if streams.stdin:
            with contextlib.suppress(OSError):  # end of input: what ^D does at a terminal
                await asyncio.to_thread(_write_all, master, b"\x04")

    helpers = [asyncio.create_task(feed())]
    try:
        reader = asyncio.create_task(out())
        code = _exit_code(await proc.wait())
        with contextlib.suppress(TimeoutError):  # what the command wrote before exiting
            await asyncio.wait_for(reader, 5)
        return code
    finally:
        for task in helpers:
            task.cancel()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
        os.close(master)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            import select

            select.select([], [fd], [], 1.0)
            continue
        view = view[n:]


async def feed_fifo(path: str, streams: Streams) -> None:
    """The client's stdin into the container's stdin FIFO."""
    fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        while (data := await streams.input.get()) is not None:
            if isinstance(data, bytes):
                await asyncio.to_thread(_write_all, fd, data)
    finally:
        os.close(fd)


def _open(path: str, at_end: bool) -> tuple[IO[bytes] | None, int]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - the caller closes it (or swaps it on rotation)
    except OSError:
        return None, -1
    if at_end:
        f.seek(0, os.SEEK_END)
    return f, os.fstat(f.fileno()).st_ino


def _inode(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return -1


async def follow_log(path: str, streams: Streams, exited: Callable[[], bool]) -> None:
    """Stream the CRI log's records written from now on, until the container has exited.

    The log is re-opened when it is rotated (its inode changes)."""
    f, inode = _open(path, at_end=True) if path else (None, -1)
    buffered = b""
    try:
        while True:
            done = exited()  # read after: what it wrote before exiting is in the file
            if f is not None:
                while chunk := f.read(65536):
                    buffered += chunk
                    *lines, buffered = buffered.split(b"\n")
                    for line in lines:
                        await _send_record(line + b"\n", streams)
            if done:
                return
            if path and _inode(path) not in (inode, -1):
                if f is not None:
                    f.close()
                f, inode = _open(path, at_end=False)
                buffered = b""
            await asyncio.sleep(FOLLOW_INTERVAL)
    finally:
        if f is not None:
            f.close()


async def _send_record(line: bytes, streams: Streams) -> None:
    try:
        _, stream, tag, content = logs.parse_record(line)
    except ValueError:
        return
    data = content + (b"\n" if tag == "F" else b"")
    if stream == "stderr":
        await streams.write_stderr(data)
    else:
        await streams.write_stdout(data)
