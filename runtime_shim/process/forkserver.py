"""The shim's side of the zygote (:mod:`.zygote`): start it, send requests, read answers.

A request is one datagram on a ``SOCK_SEQPACKET`` socket pair with the write end
of a fresh pipe attached; the answer is whatever the zygote's worker writes to
that pipe before closing it (``ok ...`` / ``error ...``), read without blocking
the event loop. Requests are independent: many can be in flight at once, and
the zygote only forks, so one slow container start never holds up another.
If the zygote has died (killed, or the machine ran out of memory), the next
request starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any


class ZygoteError(Exception):
    pass


class Zygote:
    def __init__(self, *, python: str, log_path: Path | None = None) -> None:
        self.python = python
        self.log_path = log_path
        self._sock: socket.socket | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Lock | None = None

    async def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log = (os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                       0o600) if self.log_path else asyncio.subprocess.DEVNULL)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "pilothouse.runtime_shim.process.zygote",
                str(theirs.fileno()), str(os.getpid()), pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
        except OSError as err:
            ours.close()
            raise ZygoteError(f"cannot start the zygote ({self.python}): {err}") from None
        finally:
            theirs.close()
            if isinstance(log, int) and log >= 0:
                os.close(log)
        self._sock = ours

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()  # end of file: the zygote exits
            self._sock = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    def _alive(self) -> bool:
        return (self._sock is not None and self._proc is not None
                and self._proc.returncode is None)

    async def _ensure(self) -> socket.socket:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self._alive():
                await self.close()
                await self.start()
        assert self._sock is not None
        return self._sock

    async def call(self, request: dict[str, Any]) -> str:
        """Send ``request``; the worker's answer (``ok ...``), or ZygoteError with its reason."""
        payload = json.dumps(request).encode()
        for attempt in (1, 2):
            sock = await self._ensure()
            read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                socket.send_fds(sock, [payload], [write_end])
            except OSError as err:
                os.close(read_end)
                if attempt == 2:
                    raise ZygoteError(f"the zygote does not answer: {err}") from None
                await self.close()  # dead: start a new one and try again
                continue
            finally:
                os.close(write_end)
            answer = await _read_until_eof(read_end)
            if not answer:
                raise ZygoteError("the zygote's worker exited without answering")
            if answer.startswith("error "):
                raise ZygoteError(answer.removeprefix("error ").strip())
            return answer
        raise AssertionError("unreachable")


async def _read_until_eof(fd: int) -> str:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    chunks: list[bytes] = []

    def readable() -> None:
        try:
            while chunk := os.read(fd, 4096):
                chunks.append(chunk)
        except BlockingIOError:
            return
        except OSError:
            pass
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")
