"""The whole cluster as users run it: ``pilothouse up`` in a subprocess, driven by the
real kubectl (/usr/bin/kubectl) and the official ``kubernetes`` Python client.

Several engineers run the e2e suite at once on one machine, so every cluster gets
its own pod bridge and pod CIDR (``e2e_network``: the bridge is named after this
test run's pid and the cluster's number, ``phe2e<pid><n>``; the CIDR is a free
/20 of 10.128.0.0/10), and stopping a cluster removes that bridge and whatever
``--nodes`` made from it, whether or not ``pilothouse up`` did."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

KUBECTL = "/usr/bin/kubectl"
MANIFESTS = Path(__file__).parent / "manifests"


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_clusters = itertools.count()
E2E_SPACE = ipaddress.IPv4Network("10.128.0.0/10")  # 1024 /20s to choose from


def _base36(n: int) -> str:
    out = ""
    while True:
        n, digit = divmod(n, 36)
        out = _DIGITS[digit] + out
        if not n:
            return out


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network an address or route on this machine is in."""
    used = []
    for argv in (["ip", "-4", "-o", "addr"], ["ip", "-4", "route"]):
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        for word in out.split():
            if word[:1].isdigit() and word.count(".") == 3:
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.IPv4Network(word, strict=False))
    return used


def e2e_network() -> tuple[str, str]:
    """A pod bridge and pod CIDR no other cluster on this machine uses: the bridge is
    ``phe2e`` + this run's pid (base 36) + the cluster's number in this run (at most
    11 characters, so ``--nodes`` can name links ``<bridge>-v9``); the CIDR a /20 of
    10.128.0.0/10 chosen from the pid and number, skipping any in use."""
    n = next(_clusters)
    bridge = f"phe2e{_base36(os.getpid())}{_DIGITS[n % 36]}"
    used = _networks_in_use()
    slots = 2 ** (20 - E2E_SPACE.prefixlen)
    start = os.getpid() * 37 + n * 101
    for k in range(slots):
        cidr = ipaddress.IPv4Network(
            (int(E2E_SPACE.network_address) + ((start + k) % slots) * 4096, 20))
        if not any(cidr.overlaps(u) for u in used):
            return bridge, str(cidr)
    raise AssertionError(f"no free /20 left in {E2E_SPACE}")


def remove_network(bridge: str) -> None:
    """What a cluster on ``bridge`` may leave: the bridge, its ``--nodes`` links
    (``<bridge>-n``, ``<bridge>-vN``) and namespaces (``pilothouse-<bridge>-N``)."""
    for name in sorted(os.listdir("/run/netns") if os.path.isdir("/run/netns") else []):
        if name.startswith(f"pilothouse-{bridge}-"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    for name in os.listdir("/sys/class/net"):
        if name == bridge or name.startswith(f"{bridge}-"):
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


@dataclass
class Cluster:
    data_dir: Path
    kubeconfig: Path
    url: str
    process: subprocess.Popen[bytes]
    bridge: str = ""
    pod_cidr: str = ""

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                env: dict[str, str] | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), **(env or {}))
        proc = subprocess.run([KUBECTL, *args], capture_output=True, text=True, input=input,
                              env=full_env, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"pilothouse up exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"cluster not ready: {log.read_text()}")


def start_cluster(data_dir: Path, extra_args: Sequence[str] = (),
                  network: tuple[str, str] | None = None, within: float = 120) -> Cluster:
    """Run ``pilothouse up`` on ``data_dir`` (with ``extra_args``) on its own pod bridge
    and CIDR (``network``, default a fresh ``e2e_network()``) and wait until it is
    ready (the kubeconfig is written once every component is)."""
    bridge, pod_cidr = network or e2e_network()
    log = data_dir / "up.log"
    kubeconfig = data_dir / "kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pilothouse.cli", "up", "--data-dir", str(data_dir),
             "--port", "0", "--grpc-port", "0",
             # Not the default bridge: a developer's own `pilothouse up` may be using it,
             # and neither another engineer's e2e run.
             "--pod-cidr", pod_cidr, "--pod-bridge", bridge, *extra_args],
            stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + within
    while not kubeconfig.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            remove_network(bridge)
            raise AssertionError(f"no kubeconfig: {log.read_text()}")
        time.sleep(0.05)
    url = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    _wait_ready(url, process, log)
    return Cluster(data_dir, kubeconfig, url, process, bridge, pod_cidr)


def stop_cluster(cluster: Cluster, within: float = 60) -> int:
    """SIGTERM, as Ctrl-C would; returns the exit code. The cluster's bridge and node
    network are removed afterwards in any case (tests that check that ``pilothouse
    up`` removed them itself look before calling this)."""
    cluster.process.terminate()
    try:
        return cluster.process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        cluster.process.kill()
        cluster.process.wait()
        raise AssertionError("pilothouse up did not stop on SIGTERM") from None
    finally:
        if cluster.bridge:
            remove_network(cluster.bridge)


# Package scope: the cluster stops when the e2e tests are done, instead of running
# (and using the cores) through the rest of the session.
@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield running
    finally:
        stop_cluster(running)
