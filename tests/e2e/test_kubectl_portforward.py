"""`kubectl port-forward` against `pilothouse up`: kubectl 1.32 tunnels SPDY/3.1 in a
WebSocket (``SPDY/3.1+portforward.k8s.io``) through the apiserver's pods/portforward and
the kubelet's /portForward to the runtime shim's streaming server, which serves
Kubernetes' portforward.k8s.io streams into the pod's network namespace."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.conftest import KUBECTL, Cluster
from tests.e2e.test_workloads import wait_until

# each connection to port 80 gets its own `tr`: what it reads, upper-cased, until end of file
POD = """
apiVersion: v1
kind: Pod
metadata:
  name: upper
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: server
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["nc", "-ll", "-p", "80", "-e", "tr", "a-z", "A-Z"]
    ports:
    - containerPort: 80
"""


@pytest.fixture
def ns(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "pf-" + request.node.name.replace("_", "-").lower()[5:40].strip("-")
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("apply", "-n", name, "-f", "-", input=POD)
    wait_until(lambda: cluster.kubectl("get", "pod", "-n", name, "upper", "-o",
                                       "jsonpath={.status.phase}").stdout == "Running",
               "the pod running")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def port_forward(cluster: Cluster, ns: str, ports: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig),
               KUBECTL_PORT_FORWARD_WEBSOCKETS="true")
    return subprocess.Popen([KUBECTL, "port-forward", "-n", ns, "pod/upper", ports],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def read_line(stream: object, within: float = 30.0) -> str:
    fd = stream.fileno()  # type: ignore[attr-defined]
    line = b""
    deadline = time.monotonic() + within
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no line from kubectl within {within}s (so far {line!r})"
        chunk = os.read(fd, 1)
        if not chunk:
            break
        line += chunk
    return line.decode()


def local_port(proc: subprocess.Popen[bytes], remote: int) -> int:
    line = read_line(proc.stdout)
    found = re.match(rf"Forwarding from 127\.0\.0\.1:(\d+) -> {remote}", line)
    assert found, f"kubectl said {line!r}"
    return int(found.group(1))


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, end the sending side, and read the answer to its end."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := conn.recv(65536):
            out += chunk
        return out


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_port_forward_carries_concurrent_connections_both_ways(cluster: Cluster,
                                                               ns: str) -> None:
    proc = port_forward(cluster, ns, ":80")
    try:
        port = local_port(proc, 80)
        with ThreadPoolExecutor(2) as pool:
            small = pool.submit(exchange, port, b"hello through the tunnel\n")
            big = pool.submit(exchange, port, b"abcdefghij" * 50_000)
            assert small.result(60) == b"HELLO THROUGH THE TUNNEL\n"
            assert big.result(60) == b"ABCDEFGHIJ" * 50_000
        assert exchange(port, b"once more") == b"ONCE MORE"  # the tunnel stays up
        assert proc.poll() is None
    finally:
        stop(proc)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert "error" not in stderr.lower(), stderr


def test_a_port_nobody_listens_on_is_reported_by_kubectl(cluster: Cluster, ns: str) -> None:
    proc = port_forward(cluster, ns, ":81")
    try:
        port = local_port(proc, 81)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"anyone?")
            conn.settimeout(30)
            assert conn.recv(100) == b""  # kubectl closes the local connection
        # kubectl 1.32 treats an error from the pod's side as fatal and exits
        wait_until(lambda: proc.poll() is not None, "kubectl to exit", within=30)
    finally:
        stop(proc)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert re.search(r"an error occurred forwarding \d+ -> 81: error forwarding port 81 to "
                     r"pod \w+, uid : failed to connect to localhost:81 inside the pod's "
                     r"network namespace", stderr), stderr
