"""The process backend run by an unprivileged user: host network, said so in Status, and
containers still run (no namespaces, no chroot: the image's executables on the host).

The shim runs as ``nobody`` in a process of its own. The interpreter and packages the
tests use may live where ``nobody`` cannot read (a venv under /root), so the fixture
builds a world-readable copy: an interpreter of the same version that ``nobody`` can
run (this one, else the system's) and the packages the shim imports, hard-linked (or
copied) into a temporary directory given as ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from pilothouse.runtime_shim.images.store import ImageStore
from tests.support import wait_for

from .conftest import BUSYBOX, kill_leftovers

pytestmark = pytest.mark.slow

NOBODY = pwd.getpwnam("nobody")
AS_NOBODY = ["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
             "--clear-groups", "--"]
# what the shim imports, so the packages behind them are copied
SHIM_MODULES = ("pilothouse.cli", "pilothouse.runtime_shim.cli",
                "pilothouse.runtime_shim.server", "pilothouse.runtime_shim.streaming",
                "pilothouse.runtime_shim.process.backend",
                "pilothouse.runtime_shim.process.supervisor",
                "pilothouse.runtime_shim.process.zygote")


def _link_tree(source: Path, target: Path) -> None:
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another filesystem
            shutil.copy2(src, dst)

    if source.is_dir():
        shutil.copytree(source, target, copy_function=link,
                        ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    else:
        link(str(source), str(target))


def _nobody_can_run(python: str, version: str) -> bool:
    try:
        out = subprocess.run([*AS_NOBODY, python, "-c",
                              "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def _world_usable(path: str) -> bool:
    """Every directory on the way searchable by others, the file readable and executable."""
    parts = Path(path).parents
    return (os.path.exists(path) and os.stat(path).st_mode & 0o005 == 0o005
            and all(os.stat(d).st_mode & 0o001 for d in parts))


def _interpreter() -> str:
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/python{version}",
                      f"/usr/local/bin/python{version}"):
        if _world_usable(candidate) and _nobody_can_run(candidate, version):
            return candidate
    raise AssertionError(f"no python{version} interpreter that nobody can run (install "
                         f"Debian's python3 or put the interpreter where others can read it)")


def _third_party_roots() -> list[Path]:
    """Files/directories of the installed packages the shim imports (not the stdlib)."""
    script = (
        "import importlib, json, sys, sysconfig\n"
        f"for m in {SHIM_MODULES!r}: importlib.import_module(m)\n"
        "site = {sysconfig.get_paths()[k] for k in ('purelib', 'platlib')}\n"
        "roots = set()\n"
        "for name, mod in list(sys.modules.items()):\n"
        "    top = sys.modules.get(name.split('.')[0])\n"
        "    paths = list(getattr(top, '__path__', None) or [getattr(top, '__file__', '')])\n"
        "    for p in paths:\n"
        "        for s in site:\n"
        "            if p and p.startswith(s + '/'):\n"
        "                roots.add(s + '/' + p[len(s) + 1:].split('/')[0])\n"
        "print(json.dumps(sorted(roots)))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    return [Path(p) for p in json.loads(out.stdout)
            if not Path(p).name.startswith(("__editable__", "_distutils_hack"))]


@dataclass
class NobodyEnv:
    python: str
    pythonpath: Path
    home: Path


@pytest.fixture(scope="module")
def nobody_env() -> Iterator[NobodyEnv]:
    import pilothouse
    import pilothouse.runtime_shim

    home = Path(tempfile.mkdtemp(prefix="ph-nobody-", dir="/tmp"))
    try:
        os.chmod(home, 0o755)
        site = home / "site"
        site.mkdir()
        for root in _third_party_roots():
            _link_tree(root, site / root.name)
        assert sysconfig.get_paths()["purelib"] not in str(site)
        # pilothouse as the editable install maps it: one package, component folders inside
        _link_tree(Path(pilothouse.__path__[0]), site / "pilothouse")
        _link_tree(Path(pilothouse.runtime_shim.__path__[0]), site / "pilothouse" / "runtime_shim")
        yield NobodyEnv(python=_interpreter(), pythonpath=site, home=home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class NobodyShim:
    root: Path
    socket: str
    log_dir: Path
    process: subprocess.Popen[bytes]
    channel: grpc.aio.Channel
    runtime: cri_grpc.RuntimeServiceStub


def _start(env: NobodyEnv, work: Path) -> subprocess.Popen[bytes]:
    root, sock = work / "root", work / "cri.sock"
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    log = open(work / "shim.log", "ab")  # noqa: SIM115 - the child holds it
    try:
        return subprocess.Popen(
            [*AS_NOBODY, env.python, "-m", "pilothouse.cli", "runtime-shim", "--backend",
             "process", "--listen", f"unix://{sock}", "--root", str(root),
             "--log-level", "WARNING"],
            stdout=log, stderr=log, cwd=work,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env.home),
                 "PYTHONPATH": str(env.pythonpath), "PYTHONDONTWRITEBYTECODE": "1"})
    finally:
        log.close()


async def _serving(proc: subprocess.Popen[bytes], runtime: cri_grpc.RuntimeServiceStub,
                   work: Path) -> None:
    async def up() -> bool:
        assert proc.poll() is None, (work / "shim.log").read_text()
        try:
            await runtime.Version(cri.VersionRequest(), timeout=2)
        except grpc.aio.AioRpcError:
            return False
        return True

    await wait_for(up, within=60, what="the shim run by nobody serving")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def nobody_shim(nobody_env: NobodyEnv,
                      image_archives: dict[str, Path]) -> AsyncIterator[NobodyShim]:
    work = Path(tempfile.mkdtemp(prefix="ph-nb-", dir="/tmp"))
    os.chmod(work, 0o755)
    root = work / "root"
    ImageStore(root / "images").import_archive(image_archives["busybox"])
    (work / "logs").mkdir()
    for path in (work, *work.rglob("*")):
        os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid, follow_symlinks=False)
    proc = _start(nobody_env, work)
    channel = grpc.aio.insecure_channel(f"unix://{work}/cri.sock")
    shim = NobodyShim(root, f"unix://{work}/cri.sock", work / "logs", proc, channel,
                      cri_grpc.RuntimeServiceStub(channel))
    try:
        await _serving(proc, shim.runtime, work)
        yield shim
    finally:
        with contextlib.suppress(grpc.aio.AioRpcError):
            listed = await shim.runtime.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=5)
            for sb in listed.items:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await shim.runtime.RemovePodSandbox(
                        cri.RemovePodSandboxRequest(pod_sandbox_id=sb.id), timeout=20)
        await channel.close()
        _stop(shim.process)
        kill_leftovers(root)
        shutil.rmtree(work, ignore_errors=True)


def _sandbox_config(shim: NobodyShim, name: str) -> cri.PodSandboxConfig:
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="default", uid=f"uid-{name}"),
        hostname=name, log_directory=str(shim.log_dir / name))
    config.linux.security_context.namespace_options.pid = cri.CONTAINER
    return config


async def _run(shim: NobodyShim, sid: str, sconfig: cri.PodSandboxConfig, name: str,
               command: list[str], **resources: int) -> str:
    config = cri.ContainerConfig(metadata=cri.ContainerMetadata(name=name),
                                 image=cri.ImageSpec(image=BUSYBOX), command=command,
                                 log_path=f"{name}.log", working_dir="/etc")
    config.linux.security_context.namespace_options.pid = cri.CONTAINER
    if "memory" in resources:
        config.linux.resources.memory_limit_in_bytes = resources["memory"]
    cid = (await shim.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, config=config, sandbox_config=sconfig))).container_id
    await shim.runtime.StartContainer(cri.StartContainerRequest(container_id=cid))
    return cid


async def _status(shim: NobodyShim, cid: str) -> cri.ContainerStatus:
    return (await shim.runtime.ContainerStatus(
        cri.ContainerStatusRequest(container_id=cid))).status


def _log_text(shim: NobodyShim, sandbox: str, name: str) -> str:
    try:
        return (shim.log_dir / sandbox / f"{name}.log").read_text()
    except FileNotFoundError:
        return ""


async def test_status_says_host_network_only(nobody_shim: NobodyShim) -> None:
    status = await nobody_shim.runtime.Status(cri.StatusRequest(verbose=True))
    conditions = {c.type: c for c in status.status.conditions}
    assert conditions["RuntimeReady"].status is True
    net = conditions["NetworkReady"]
    assert (net.status, net.reason) == (True, "HostNetworkOnly")
    assert "host network" in net.message
    config = json.loads(status.info["config"])
    assert config["isolation"] is False
    assert config["cgroupsWritable"] is False


async def test_pod_on_host_network_runs_image_commands_as_nobody(
        nobody_shim: NobodyShim) -> None:
    config = _sandbox_config(nobody_shim, "plain")
    sid = (await nobody_shim.runtime.RunPodSandbox(
        cri.RunPodSandboxRequest(config=config))).pod_sandbox_id
    sandbox = (await nobody_shim.runtime.PodSandboxStatus(
        cri.PodSandboxStatusRequest(pod_sandbox_id=sid))).status
    assert sandbox.state == cri.SANDBOX_READY
    assert sandbox.network.ip  # the host's address, not one from a pod CIDR
    assert not sandbox.network.ip.startswith("10.88.")

    # the container runs the image's executable (busybox's sh, not the host's), in the
    # image's working directory, as the shim's user, in the host's namespaces
    cid = await _run(nobody_shim, sid, config, "main", [
        "sh", "-c", "echo started; readlink /proc/$$/exe; pwd; id -u; "
        "readlink /proc/self/ns/net; exec sleep 3600"])
    status = await _status(nobody_shim, cid)
    assert status.state == cri.CONTAINER_RUNNING

    await wait_for(lambda: "sleep" not in _log_text(nobody_shim, "plain", "main")
                   and len(_log_text(nobody_shim, "plain", "main").splitlines()) >= 5,
                   within=20, what="the container's output")
    lines = [line.split(" ", 3)[3] for line in
             _log_text(nobody_shim, "plain", "main").splitlines()]
    assert lines[0] == "started"
    assert lines[1].endswith("/bin/busybox") and "/images/" in lines[1]
    assert lines[2].endswith("/etc") and "/images/" in lines[2]
    assert lines[3] == str(NOBODY.pw_uid)
    assert lines[4] == os.readlink("/proc/self/ns/net")

    info = json.loads((await nobody_shim.runtime.ContainerStatus(cri.ContainerStatusRequest(
        container_id=cid, verbose=True))).info["info"])
    uid_line = next(line for line in Path(f"/proc/{info['pid']}/status").read_text()
                    .splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1] == str(NOBODY.pw_uid)
    # forked from the zygote (its command line), named for ps/top
    assert Path(f"/proc/{info['supervisorPid']}/comm").read_text().strip() == "ph-supervise"

    out = await nobody_shim.runtime.ExecSync(cri.ExecSyncRequest(
        container_id=cid, cmd=["sh", "-c", "echo $HOSTNAME-ok; exit 4"], timeout=10))
    assert out.exit_code == 4
    assert out.stdout.decode().strip().endswith("-ok")

    await nobody_shim.runtime.StopContainer(cri.StopContainerRequest(container_id=cid,
                                                                     timeout=5))
    status = await _status(nobody_shim, cid)
    assert status.state == cri.CONTAINER_EXITED
    assert status.exit_code == 143  # sleep ends on SIGTERM
    await nobody_shim.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid))
    assert not (nobody_shim.root / "containers" / cid).exists()


async def test_exit_codes_limits_and_readoption(nobody_shim: NobodyShim,
                                                nobody_env: NobodyEnv) -> None:
    config = _sandbox_config(nobody_shim, "codes")
    sid = (await nobody_shim.runtime.RunPodSandbox(
        cri.RunPodSandboxRequest(config=config))).pod_sandbox_id
    failing = await _run(nobody_shim, sid, config, "failing", ["sh", "-c", "exit 3"])

    async def exited() -> bool:
        return (await _status(nobody_shim, failing)).state == cri.CONTAINER_EXITED

    await wait_for(exited, within=20, what="the failing container's exit")
    status = await _status(nobody_shim, failing)
    assert (status.exit_code, status.reason) == (3, "Error")

    missing = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="missing"),
                                  image=cri.ImageSpec(image=BUSYBOX),
                                  command=["no-such-command"], log_path="missing.log")
    mid = (await nobody_shim.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, config=missing, sandbox_config=config))).container_id
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await nobody_shim.runtime.StartContainer(cri.StartContainerRequest(container_id=mid))
    assert "executable file not found" in (info.value.details() or "")

    # no writable cgroups without root: a limit is refused, not silently dropped
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _run(nobody_shim, sid, config, "limited", ["sleep", "60"], memory=64 << 20)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "cgroups" in (info.value.details() or "")

    # the supervisor outlives the shim; a new shim (still nobody) adopts the container
    long = await _run(nobody_shim, sid, config, "long", ["sleep", "3600"])
    _stop(nobody_shim.process)
    nobody_shim.process = _start(nobody_env, nobody_shim.root.parent)
    await nobody_shim.channel.close()
    nobody_shim.channel = grpc.aio.insecure_channel(nobody_shim.socket)
    nobody_shim.runtime = cri_grpc.RuntimeServiceStub(nobody_shim.channel)
    await _serving(nobody_shim.process, nobody_shim.runtime, nobody_shim.root.parent)
    assert (await _status(nobody_shim, long)).state == cri.CONTAINER_RUNNING
    await nobody_shim.runtime.StopContainer(cri.StopContainerRequest(container_id=long,
                                                                     timeout=0))
    status = await _status(nobody_shim, long)
    assert (status.state, status.exit_code) == (cri.CONTAINER_EXITED, 137)
    assert (await _status(nobody_shim, failing)).exit_code == 3

