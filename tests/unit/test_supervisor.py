"""The supervisor starts components, restarts one that dies while starting, and stops them."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import pytest

from pilothouse import supervisor as sup
from pilothouse.loop import GRPC_FORK_SUPPORT_ENV
from pilothouse.supervisor import Component, ComponentFailed, Supervisor, describe_exit


@pytest.fixture
def fake_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Components run `python -m pilothouse.cli ARGS`; here ARGS is a script to run."""
    runner = tmp_path / "runner.py"
    runner.write_text("import runpy, sys\nrunpy.run_path(sys.argv[-1], run_name='__main__')\n")

    async def spawn(self: Supervisor, spec: Component) -> object:
        import asyncio

        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path(spec.name).open("ab") as out:
            return await asyncio.create_subprocess_exec(
                sys.executable, str(runner), *spec.args, stdout=out,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                env=spec.environment())

    monkeypatch.setattr(Supervisor, "_spawn", spawn)
    return tmp_path


async def test_a_component_that_dies_while_starting_is_started_again(fake_cli: Path) -> None:
    counter = fake_cli / "starts"
    script = fake_cli / "flaky.py"
    script.write_text(
        "import pathlib, sys, time\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1))\n"
        "if n == 0:\n    sys.exit(-11 % 256)\n"
        f"pathlib.Path({str(fake_cli / 'ready')!r}).write_text('yes')\n"
        "time.sleep(60)\n")

    async def ready() -> bool:
        return (fake_cli / "ready").exists()

    supervisor = Supervisor(fake_cli / "logs")
    await supervisor.start(Component("flaky", [str(script)], ready=ready))
    try:
        assert counter.read_text() == "2"
    finally:
        await supervisor.stop()


async def test_a_component_that_always_dies_fails_with_its_log(fake_cli: Path) -> None:
    script = fake_cli / "broken.py"
    script.write_text("print('cannot start: no config'); raise SystemExit(3)\n")

    async def ready() -> bool:
        return False

    supervisor = Supervisor(fake_cli / "logs")
    with pytest.raises(ComponentFailed, match="cannot start: no config"):
        await supervisor.start(Component("broken", [str(script)], ready=ready), attempts=2)


async def test_stop_terminates_in_reverse_order(fake_cli: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    order = fake_cli / "order"
    for name in ("first", "second"):
        (fake_cli / f"{name}.py").write_text(
            "import pathlib, signal, sys, time\n"
            "def bye(*_):\n"
            f"    with open({str(order)!r}, 'a') as f: f.write('{name} ')\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\n"
            f"pathlib.Path({str(fake_cli / name)!r} + '.up').write_text('1')\n"
            "time.sleep(60)\n")
    supervisor = Supervisor(fake_cli / "logs")
    for name in ("first", "second"):
        marker = fake_cli / f"{name}.up"

        async def ready(m: Path = marker) -> bool:
            return m.exists()

        await supervisor.start(Component(name, [str(fake_cli / f"{name}.py")], ready=ready))
    monkeypatch.setattr(sup, "STOP_GRACE_SECONDS", 10.0)
    await supervisor.stop()
    assert order.read_text().split() == ["second", "first"]


@pytest.mark.parametrize(("code", "text"), [
    (0, "exited with code 0"),
    (3, "exited with code 3"),
    (-11, "was killed by SIGSEGV (signal 11: a crash)"),
    (-6, "was killed by SIGABRT (signal 6: a crash)"),
    (-9, "was killed by SIGKILL (signal 9)"),
    (-15, "was killed by SIGTERM (signal 15)"),
    (-200, "was killed by signal 200"),
])
def test_describe_exit(code: int, text: str) -> None:
    assert describe_exit(code) == text


def test_components_run_with_faulthandler_and_without_grpc_fork_handlers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONFAULTHANDLER", raising=False)
    monkeypatch.delenv(GRPC_FORK_SUPPORT_ENV, raising=False)
    env = Component("c", [], ready=_never).environment()
    assert env["PYTHONFAULTHANDLER"] == "1"
    assert env[GRPC_FORK_SUPPORT_ENV] == "0"
    monkeypatch.setenv(GRPC_FORK_SUPPORT_ENV, "1")  # up's own environment wins
    assert Component("c", [], ready=_never).environment()[GRPC_FORK_SUPPORT_ENV] == "1"
    spec = Component("c", [], ready=_never, env={"PYTHONFAULTHANDLER": "0"})
    assert spec.environment()["PYTHONFAULTHANDLER"] == "0"  # and the spec's over both


async def _never() -> bool:
    return False


async def test_a_crash_is_reported_as_a_signal_with_the_python_stack(fake_cli: Path) -> None:
    script = fake_cli / "crash.py"
    script.write_text("import ctypes\ndef start():\n    ctypes.string_at(0)\nstart()\n")
    supervisor = Supervisor(fake_cli / "logs")
    with pytest.raises(ComponentFailed) as failed:
        await supervisor.start(Component("crashy", [str(script)], ready=_never), attempts=1)
    message = str(failed.value)
    assert message.startswith("crashy was killed by SIGSEGV (signal 11: a crash);")
    assert "Fatal Python error: Segmentation fault" in message  # faulthandler's, in its log
    assert 'crash.py", line 3 in start' in message


async def test_a_death_before_any_output_says_so(fake_cli: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    script = fake_cli / "killed.py"
    script.write_text(f"import os\nos.kill(os.getpid(), {int(signal.SIGKILL)})\n")
    supervisor = Supervisor(fake_cli / "logs")
    with caplog.at_level(logging.WARNING, logger="pilothouse.supervisor"), \
            pytest.raises(ComponentFailed) as failed:
        await supervisor.start(Component("gone", [str(script)], ready=_never), attempts=2)
    assert str(failed.value).startswith(
        "gone was killed by SIGKILL (signal 9) before writing anything to its log;")
    assert [r.getMessage() for r in caplog.records] == [
        "gone was killed by SIGKILL (signal 9) before writing anything to its log while "
        "starting; starting it again (attempt 2 of 2)"]
