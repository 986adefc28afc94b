"""The supervisor starts components, restarts one that dies while starting, and stops them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pilothouse import supervisor as sup
from pilothouse.supervisor import Component, ComponentFailed, Supervisor


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
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)

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
