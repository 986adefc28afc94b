"""The log writer containerd's runc shim starts for each container (a "binary://" logger).

containerd's shim runs ``<binary> <query key> <query value>`` with the
container's stdout as fd 3, stderr as fd 4 and a pipe on fd 5 to close once
ready; ``CONTAINER_ID`` and ``CONTAINER_NAMESPACE`` are in the environment.
The shim is the logger's parent, so container output keeps being written
while the pilothouse shim is down. This writer turns the streams into CRI log
records (``<RFC3339Nano> stdout|stderr F|P <line>``), re-opens the log file on
SIGUSR1 (ReopenContainerLog), and on SIGTERM (sent by the runc shim when the
task is deleted, after the process is gone) drains what is left, writes any
unterminated line as a ``P`` record and exits.

    ph-logger log /var/log/pods/.../c/0.log        (argv from the URI's query)

Standard library plus :mod:`pilothouse.runtime_shim.logs` only: it starts per container.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import sys

from pilothouse.runtime_shim import logs

STDOUT_FD, STDERR_FD, READY_FD = 3, 4, 5


class _Log:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.reopen()

    def reopen(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        old, self.fd = self.fd, fd
        if old >= 0:
            os.close(old)

    def write(self, records: list[bytes]) -> None:
        if records:
            with contextlib.suppress(OSError):
                os.write(self.fd, b"".join(records))


def main(argv: list[str]) -> int:
    args = dict(zip(argv[0::2], argv[1::2], strict=False))
    path = args.get("log", "")
    pid_dir = args.get("pids", "")
    if pid_dir and os.environ.get("CONTAINER_ID"):
        os.makedirs(pid_dir, exist_ok=True)
        with open(os.path.join(pid_dir, os.environ["CONTAINER_ID"]), "w") as f:
            f.write(str(os.getpid()))
    log = _Log(path) if path else None
    stop = {"now": False}
    # signals wake the select loop through this pipe; handlers only set state, so a
    # log record is never cut by one
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGUSR1, lambda *_: log.reopen() if log else None)
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    with contextlib.suppress(OSError):
        os.close(READY_FD)
    splitters = {STDOUT_FD: logs.LineSplitter("stdout"), STDERR_FD: logs.LineSplitter("stderr")}
    sel = selectors.DefaultSelector()
    for fd in splitters:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    while splitters and not stop["now"]:
        for key, _ in sel.select():
            if key.fd == wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
                continue
            _pump(key.fd, splitters, sel, log)
    for fd, splitter in splitters.items():  # SIGTERM: drain, then what is not terminated
        with contextlib.suppress(BlockingIOError, OSError):
            while data := os.read(fd, 65536):
                if log:
                    log.write(splitter.feed(data))
        if log:
            log.write(splitter.flush())
    return 0


def _pump(fd: int, splitters: dict[int, logs.LineSplitter], sel: selectors.BaseSelector,
          log: _Log | None) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except InterruptedError:
            continue
        except OSError:
            data = b""
        if not data:
            if log:
                log.write(splitters[fd].flush())
            sel.unregister(fd)
            os.close(fd)
            del splitters[fd]
            return
        if log:
            log.write(splitters[fd].feed(data))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
