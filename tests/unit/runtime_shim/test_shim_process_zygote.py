"""The zygote (fork server) of the process backend, through its client.

Workers are forked, answer on their own pipe, and run concurrently; a dead
zygote is replaced on the next request; closing the client ends it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilothouse.runtime_shim.process import network
from pilothouse.runtime_shim.process.forkserver import Zygote, ZygoteError
from tests.support import wait_for


@pytest.fixture
async def zygote(tmp_path: Path) -> AsyncIterator[Zygote]:
    z = Zygote(python=sys.executable, log_path=tmp_path / "zygote.log")
    await z.start()
    yield z
    await z.close()


async def test_unknown_request_is_an_error_not_a_hang(zygote: Zygote) -> None:
    with pytest.raises(ZygoteError, match="unknown zygote request 'nope'"):
        await zygote.call({"op": "nope"})


async def test_sandbox_namespaces_bound_at_their_files_with_the_hostname(
        zygote: Zygote, tmp_path: Path) -> None:
    uts, ipc = str(tmp_path / "ns" / "uts"), str(tmp_path / "ns" / "ipc")
    try:
        answers = await asyncio.gather(*(
            zygote.call({"op": "sandbox", "netns": None, "ipc": f"{ipc}{i}",
                         "uts": f"{uts}{i}", "hostname": f"pod-{i}", "net": None})
            for i in range(6)))  # concurrently: each in its own worker
        assert answers == ["ok"] * 6
        for i in range(6):
            out = subprocess.run(["nsenter", f"--uts={uts}{i}", "hostname"],
                                 capture_output=True, text=True, check=True).stdout
            assert out.strip() == f"pod-{i}"
        assert os.stat(f"{ipc}0").st_ino != os.stat(f"{ipc}1").st_ino
        assert os.readlink("/proc/self/ns/uts") != subprocess.run(
            ["nsenter", f"--uts={uts}0", "readlink", "/proc/self/ns/uts"],
            capture_output=True, text=True, check=True).stdout.strip()
    finally:
        await network.remove_namespaces(
            [f"{p}{i}" for p in (uts, ipc) for i in range(6)])


async def test_a_failing_sandbox_says_why(zygote: Zygote, tmp_path: Path) -> None:
    try:
        with pytest.raises(ZygoteError, match=r"^add veth vethnobridge: "):
            await zygote.call({"op": "sandbox", "netns": str(tmp_path / "net"), "ipc": None,
                               "uts": None, "hostname": "x",
                               "net": {"host_ifname": "vethnobridge", "bridge_index": 999999,
                                       "ip": "10.9.0.2", "prefixlen": 24,
                                       "gateway": "10.9.0.1"}})
    finally:
        await network.remove_namespaces([str(tmp_path / "net")])


async def test_a_killed_zygote_is_replaced_by_the_next_request(zygote: Zygote) -> None:
    proc = zygote._proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), 10)
    with pytest.raises(ZygoteError, match="unknown zygote request"):
        await zygote.call({"op": "again"})  # answered by a new zygote
    assert zygote._proc is not None and zygote._proc.pid != proc.pid


async def test_close_ends_the_zygote(tmp_path: Path) -> None:
    z = Zygote(python=sys.executable)
    await z.start()
    proc = z._proc
    assert proc is not None
    await z.close()
    await wait_for(lambda: proc.returncode is not None, within=10, what="the zygote's exit")
    assert proc.returncode == 0
