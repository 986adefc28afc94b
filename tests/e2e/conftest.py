"""The whole cluster as users run it: ``pilothouse up`` in a subprocess, driven by the
real kubectl (/usr/bin/kubectl) and the official ``kubernetes`` Python client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

KUBECTL = "/usr/bin/kubectl"
MANIFESTS = Path(__file__).parent / "manifests"


@dataclass
class Cluster:
    data_dir: Path
    kubeconfig: Path
    url: str
    process: subprocess.Popen[bytes]

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


def start_cluster(data_dir: Path) -> Cluster:
    """Run ``pilothouse up`` on ``data_dir`` and wait until it is ready."""
    log = data_dir / "up.log"
    kubeconfig = data_dir / "kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pilothouse.cli", "up", "--data-dir", str(data_dir),
             "--port", "0", "--grpc-port", "0",
             # Not the default bridge: a developer's own `pilothouse up` may be using it.
             "--pod-cidr", "10.231.0.0/16", "--pod-bridge", "phe2e0"],
            stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not kubeconfig.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no kubeconfig: {log.read_text()}")
        time.sleep(0.05)
    url = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    _wait_ready(url, process, log)
    return Cluster(data_dir, kubeconfig, url, process)


def stop_cluster(cluster: Cluster) -> int:
    """SIGTERM, as Ctrl-C would; returns the exit code."""
    cluster.process.terminate()
    try:
        return cluster.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        cluster.process.kill()
        cluster.process.wait()
        raise AssertionError("pilothouse up did not stop on SIGTERM") from None


# Package scope: the cluster stops when the e2e tests are done, instead of running
# (and using the cores) through the rest of the session.
@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield running
    finally:
        stop_cluster(running)
