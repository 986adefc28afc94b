"""Run cluster components as child processes, the way an init system would.

``pilothouse up`` starts each component (runtime shim, scheduler,
controller-manager, kubelet) as its own ``pilothouse <component>`` process —
real processes on real cores, as in a Kubernetes node — with its output in
``DATA_DIR/logs/<name>.log``; a component may also be another program (a
private containerd) and may run in a network namespace (a node of
``pilothouse up --nodes N``). The supervisor waits until a component says it
is ready, restarts one that dies (back-off 1 s doubling to 30 s, as a kubelet
restarts a container), and stops them in reverse order on shutdown
(``before_stop`` hook, SIGTERM, SIGKILL after a grace period, ``after_stop``
hook — the hooks run even for a component that is down at that moment).

Every component runs with ``PYTHONFAULTHANDLER=1`` (a crash leaves the Python
stacks of its threads in its log) and with gRPC's fork handlers off
(``GRPC_ENABLE_FORK_SUPPORT=0``, see ``pilothouse.loop``), unless the
environment says otherwise. A component killed by a signal is reported as such
(``describe_exit``): "was killed by SIGSEGV (signal 11: a crash)", not "code -11".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from pilothouse.loop import GRPC_FORK_SUPPORT_ENV

log = logging.getLogger("pilothouse.supervisor")

RESTART_BACKOFF_INITIAL = 1.0
RESTART_BACKOFF_MAX = 30.0
STOP_GRACE_SECONDS = 15.0
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
# In every component's environment unless ``up``'s own environment or the spec sets them.
COMPONENT_ENV_DEFAULTS = {"PYTHONFAULTHANDLER": "1", GRPC_FORK_SUPPORT_ENV: "0"}
# Signals that mean the program crashed rather than was stopped.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE,
                           signal.SIGABRT})


def describe_exit(returncode: int) -> str:
    """How a process ended, from its return code (negative: killed by that signal)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    number = -returncode
    try:
        sig = signal.Signals(number)
    except ValueError:
        return f"was killed by signal {number}"
    crash = ": a crash" if sig in CRASH_SIGNALS else ""
    return f"was killed by {sig.name} (signal {number}{crash})"


class ComponentFailed(RuntimeError):
    """A component exited or never became ready; the message holds its last log lines."""


@dataclass
class Component:
    name: str
    args: list[str]  # the arguments after `pilothouse`
    ready: Callable[[], Awaitable[bool]]
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 60.0
    stop_timeout: float = STOP_GRACE_SECONDS  # for each of the before/after-stop hooks
    # Runs before the component is sent SIGTERM on shutdown (errors are logged).
    before_stop: Callable[[], Awaitable[None]] | None = None
    # Runs once the component has exited on shutdown (errors are logged): cleanup of
    # what it leaves behind (mounts, processes, links).
    after_stop: Callable[[], Awaitable[None]] | None = None
    # The program to run instead of ``python -m pilothouse.cli`` (``args`` follow it).
    program: list[str] | None = None
    # A network namespace file (/run/netns/NAME) to run the component in; the mount
    # namespace stays the host's, so its mounts are everyone's (nsenter --net only).
    netns: str | None = None

    def argv(self) -> list[str]:
        argv = [*(self.program or [sys.executable, "-m", "pilothouse.cli"]), *self.args]
        if self.netns:
            argv = [NSENTER, f"--net={self.netns}", "--", *argv]
        return argv

    def environment(self) -> dict[str, str]:
        return {**COMPONENT_ENV_DEFAULTS, **os.environ, **self.env}


@dataclass
class _Running:
    spec: Component
    process: asyncio.subprocess.Process
    restarts: int = 0
    log_offset: int = 0  # the size of its log when this process was started


async def _terminate(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._running: list[_Running] = []
        self._stopping = False
        self._monitor: asyncio.Task[None] | None = None

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    async def _spawn(self, spec: Component) -> asyncio.subprocess.Process:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path(spec.name).open("ab") as out:
            return await asyncio.create_subprocess_exec(
                *spec.argv(),
                stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                env=spec.environment(), start_new_session=True)

    def _log_size(self, name: str) -> int:
        try:
            return self.log_path(name).stat().st_size
        except OSError:
            return 0

    def _ended(self, running: _Running) -> str:
        """"kubelet was killed by SIGSEGV (...)", and whether it wrote to its log."""
        code = running.process.returncode
        assert code is not None
        text = f"{running.spec.name} {describe_exit(code)}"
        if self._log_size(running.spec.name) <= running.log_offset:
            text += " before writing anything to its log"
        return text

    async def start(self, spec: Component, *, attempts: int = 3) -> None:
        """Start ``spec`` and wait until it is ready; ComponentFailed otherwise.

        A component that exits before it is ready is started again (up to
        ``attempts`` times), as a restart policy would; one that stays up but
        never becomes ready fails at once.
        """
        for attempt in range(1, attempts + 1):
            offset = self._log_size(spec.name)
            process = await self._spawn(spec)
            running = _Running(spec, process, log_offset=offset)
            try:
                await self._wait_ready(running)
            except ComponentFailed:
                if process.returncode is None or attempt == attempts:
                    await _terminate(process)
                    raise
                log.warning(f"{self._ended(running)} while starting; starting it again "
                            f"(attempt {attempt + 1} of {attempts})",
                            extra={"component": spec.name, "code": process.returncode,
                                   "log": str(self.log_path(spec.name))})
                continue
            self._running.append(running)
            return

    async def _wait_ready(self, running: _Running) -> None:
        spec = running.spec
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.ready_timeout
        while True:
            if running.process.returncode is not None:
                lines = tail(self.log_path(spec.name))
                raise ComponentFailed(f"{self._ended(running)}; " + (
                    f"{self.log_path(spec.name)} ends with:\n{lines}" if lines else
                    f"{self.log_path(spec.name)} is empty"))
            with contextlib.suppress(Exception):
                if await spec.ready():
                    return
            if loop.time() > deadline:
                raise ComponentFailed(f"{spec.name} was not ready after {spec.ready_timeout}s:\n"
                                      f"{tail(self.log_path(spec.name))}")
            await asyncio.sleep(0.1)

    def monitor(self) -> None:
        """Restart components that die, until ``stop``."""
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._watch(), name="supervisor")

    async def _watch(self) -> None:
        while not self._stopping:
            waits = {asyncio.ensure_future(r.process.wait()): r for r in self._running}
            if not waits:
                return
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for fut in pending:
                fut.cancel()
            for fut in done:
                running = waits[fut]
                if self._stopping:
                    return
                delay = min(RESTART_BACKOFF_INITIAL * 2 ** running.restarts, RESTART_BACKOFF_MAX)
                log.warning(f"{self._ended(running)}; restarting it",
                            extra={"component": running.spec.name,
                                   "code": running.process.returncode, "in_seconds": delay,
                                   "log": str(self.log_path(running.spec.name))})
                await asyncio.sleep(delay)
                if self._stopping:
                    return
                running.restarts += 1
                running.log_offset = self._log_size(running.spec.name)
                running.process = await self._spawn(running.spec)

    async def stop(self) -> None:
        """SIGTERM every component in reverse start order; SIGKILL what outlives the grace."""
        self._stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for running in reversed(self._running):
            spec, process = running.spec, running.process
            if spec.before_stop is not None:
                await _hook(spec, "before-stop", spec.before_stop, spec.stop_timeout)
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
                except TimeoutError:
                    log.warning("component did not stop; killing", extra={
                        "component": spec.name})
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()
            if spec.after_stop is not None:
                await _hook(spec, "after-stop", spec.after_stop, spec.stop_timeout)
        self._running.clear()


async def _hook(spec: Component, what: str, hook: Callable[[], Awaitable[None]],
                limit: float) -> None:
    try:
        await asyncio.wait_for(hook(), limit)
    except Exception as exc:
        log.warning(f"{what} hook failed", extra={"component": spec.name, "error": str(exc)})
