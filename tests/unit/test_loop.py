"""pilothouse.loop: gRPC's fork handlers are off in pilothouse processes (a child forked
by a process with live gRPC starts no gRPC threads, and children spawned through
uvloop survive), and run_event_loop leaves a Python stack behind when a component
crashes.

Each case runs in a fresh interpreter: gRPC reads its fork setting once, at import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pilothouse
from pilothouse import loop

ROOT = str(Path(pilothouse.__file__).resolve().parent.parent)

# A uvloop process with a gRPC server and a client calling it in a loop forks (os.fork)
# once and counts the child's threads, then spawns children through uvloop (libuv's
# fork + exec, as the supervisor of `pilothouse up` does) and prints their exit codes.
PROGRAM = """
import asyncio, os, sys, time
{first}
import grpc, uvloop

async def echo(request, context):
    return request

async def call(stub, stop):
    while not stop.is_set():
        await stub(b"ping")

async def main(children):
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "t.T", {{"Echo": grpc.unary_unary_rpc_method_handler(echo)}}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{{port}}") as channel:
        stub = channel.unary_unary("/t.T/Echo")
        await stub(b"ping")
        callers = [asyncio.create_task(call(stub, stop)) for _ in range(4)]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            time.sleep(0.3)  # time for any thread started at fork to show
            os.write(w, str(len(os.listdir("/proc/self/task"))).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print("threads in the forked child:", os.read(r, 16).decode(), flush=True)
        codes = []
        for _ in range(children):
            child = await asyncio.create_subprocess_exec("/bin/true")
            codes.append(await child.wait())
        print("exit codes:", sorted(set(codes)), flush=True)
        stop.set()
        await asyncio.gather(*callers)
    await server.stop(None)

with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    runner.run(main(int(sys.argv[1])))
"""


def run_program(first: str, *, children: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != loop.GRPC_FORK_SUPPORT_ENV}
    env["PYTHONPATH"] = ROOT
    env["GRPC_VERBOSITY"] = "ERROR"
    out = subprocess.run([sys.executable, "-c", PROGRAM.format(first=first), str(children)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    found = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(":")
        found[key] = value.strip()
    return found


def test_a_child_forked_by_a_pilothouse_process_starts_no_grpc_threads() -> None:
    found = run_program("import pilothouse.loop")
    assert found["threads in the forked child"] == "1"


def test_without_it_grpc_starts_threads_in_every_forked_child() -> None:
    """What the setting prevents (grpcio's default): if this fails, gRPC changed its
    default and the comment in pilothouse/loop.py needs another look."""
    found = run_program("")
    assert int(found["threads in the forked child"]) > 1


def test_children_spawned_through_uvloop_beside_live_grpc_all_survive() -> None:
    # before the fix about one child in six died with SIGSEGV here
    found = run_program("import pilothouse.loop", children=60)
    assert found["exit codes"] == "[0]"


@pytest.mark.parametrize("module", ["pilothouse.up", "pilothouse.services.kubelet.cli",
                                    "pilothouse.services.scheduler.server",
                                    "pilothouse.services.controllers.manager",
                                    "pilothouse.services.apiserver.server",
                                    "pilothouse.runtime_shim.cli",
                                    "pilothouse.fake_nodes"])
def test_components_set_it_before_grpc_reads_it(module: str) -> None:
    """Each `pilothouse COMMAND` module imports pilothouse.loop before gRPC (gRPC may
    come later, when the command runs)."""
    code = textwrap.dedent(f"""
        import {module}
        import pilothouse.loop as loop
        assert loop.GRPC_FORK_SETTING_IN_TIME, "gRPC was imported before pilothouse.loop"
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != loop.GRPC_FORK_SUPPORT_ENV}
    env["PYTHONPATH"] = ROOT
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_the_setting_is_only_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loop.GRPC_FORK_SUPPORT_ENV, "1")
    assert loop.disable_grpc_fork_support()  # the environment decided, before any import
    assert os.environ[loop.GRPC_FORK_SUPPORT_ENV] == "1"
    monkeypatch.delenv(loop.GRPC_FORK_SUPPORT_ENV)
    import grpc  # noqa: F401  (if no earlier test did)
    assert not loop.disable_grpc_fork_support()  # too late for this process...
    assert os.environ[loop.GRPC_FORK_SUPPORT_ENV] == "0"  # ...not for its children


def test_a_crash_under_run_event_loop_leaves_the_python_stack() -> None:
    code = textwrap.dedent("""
        import ctypes
        from pilothouse.loop import run_event_loop

        async def component_start():
            ctypes.string_at(0)  # a NULL read, as a crash in a C extension would do

        run_event_loop(component_start())
    """)
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("PYTHONFAULTHANDLER", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == -11
    assert "Fatal Python error: Segmentation fault" in out.stderr
    assert "in component_start" in out.stderr
