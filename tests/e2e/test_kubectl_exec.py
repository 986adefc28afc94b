"""kubectl exec, attach and cp (and the official Python client's exec and port-forward)
against `pilothouse up`: kubectl 1.32 speaks WebSockets to the apiserver
(pods/exec|attach|portforward), which relays them to the kubelet, which relays them to
the runtime shim's streaming server. kubectl port-forward: test_kubectl_portforward.py."""

from __future__ import annotations

import hashlib
import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.e2e.conftest import KUBECTL, Cluster
from tests.e2e.test_workloads import wait_until

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: shell}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
  - name: side
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: echoer}
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    stdin: true
    command: ["sh", "-c", "read line; echo got $line"]
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /tmp/www && echo hello-pf > /tmp/www/index.html &&
              exec httpd -f -p 8080 -h /tmp/www"]
"""


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    name = "exec-e2e"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("apply", "-n", name, "-f", "-", input=PODS)

    def all_running() -> bool:
        out = cluster.kubectl("get", "pods", "-n", name, "-o",
                              "jsonpath={.items[*].status.phase}").stdout.split()
        return out == ["Running"] * 3

    wait_until(all_running, "pods Running")
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_exec_prints_output_and_exits_with_the_commands_code(cluster: Cluster,
                                                             ns: str) -> None:
    proc = cluster.kubectl("exec", "-n", ns, "shell", "--", "sh", "-c",
                           "echo out; echo err >&2; exit 7", check=False)
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == "out\n"
    assert "err\n" in proc.stderr
    ok = cluster.kubectl("exec", "-n", ns, "shell", "-c", "side", "--", "cat", "/etc/hostname")
    assert ok.stdout == "shell\n"


def test_exec_with_piped_stdin(cluster: Cluster, ns: str) -> None:
    data = "".join(f"line {i}\n" for i in range(20000))  # ~200 KB: many messages
    proc = cluster.kubectl("exec", "-i", "-n", ns, "shell", "--", "sh", "-c",
                           "cat > /tmp/stdin.txt; wc -l < /tmp/stdin.txt; md5sum < /tmp/stdin.txt",
                           input=data)
    lines, digest = proc.stdout.split("\n", 1)
    assert lines.strip() == "20000"
    assert digest.split()[0] == hashlib.md5(data.encode()).hexdigest()


def run_in_terminal(cluster: Cluster, *args: str, within: float = 60,
                    typed: Sequence[tuple[bytes, bytes]] = ()) -> tuple[int, str]:
    """Run kubectl with a pseudo-terminal as its stdin/stdout/stderr (as a shell would).

    ``typed``: (what to wait for in the output, what to type then), in order. A
    cursor-position query (ESC [6n, busybox's line editor asks it) is answered as a
    terminal would."""
    master, slave = pty.openpty()
    pending = list(typed)
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), TERM="xterm")
    proc = subprocess.Popen([KUBECTL, *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal is gone
                    break
                if not chunk:
                    break
                out += chunk
                if b"\x1b[6n" in chunk:
                    os.write(master, b"\x1b[1;1R")
                while pending and pending[0][0] in out:
                    os.write(master, pending.pop(0)[1])
            elif proc.poll() is not None:
                break
        else:
            raise AssertionError(f"kubectl {' '.join(args)} still running: {out!r}")
        return proc.wait(timeout=10), out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_exec_with_a_terminal(cluster: Cluster, ns: str) -> None:
    code, out = run_in_terminal(cluster, "exec", "-it", "-n", ns, "shell", "--", "sh", "-c",
                                "test -t 0 && test -t 1 && echo a-terminal; exit 3")
    assert "a-terminal" in out
    assert code == 3



def test_an_interactive_shell(cluster: Cluster, ns: str) -> None:
    """kubectl exec -it sh: keystrokes in, the prompt and results out, exit code back."""
    code, out = run_in_terminal(cluster, "exec", "-it", "-n", ns, "shell", "--", "sh",
                                typed=[(b"# ", b"echo $((6*7))-answer\r"),
                                       (b"42-answer", b"exit 5\r")])
    assert "42-answer" in out
    assert code == 5


def test_attach_sends_stdin_and_shows_output(cluster: Cluster, ns: str) -> None:
    proc = cluster.kubectl("attach", "-i", "-n", ns, "echoer", input="hello\n")
    assert "got hello" in proc.stdout
    wait_until(lambda: cluster.kubectl("get", "pod", "-n", ns, "echoer", "-o",
                                       "jsonpath={.status.phase}").stdout == "Succeeded",
               "echoer Succeeded")


def test_cp_to_and_from_a_pod(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 400  # binary, 100 KiB
    src = tmp_path / "data.bin"
    src.write_bytes(payload)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a.txt").write_text("alpha\n")
    (tree / "b.txt").write_text("beta\n")
    cluster.kubectl("cp", str(src), f"{ns}/shell:/tmp/data.bin")
    cluster.kubectl("cp", str(tree), f"{ns}/shell:/tmp/tree")
    listing = cluster.kubectl("exec", "-n", ns, "shell", "--", "sh", "-c",
                              "wc -c < /tmp/data.bin; cat /tmp/tree/sub/a.txt /tmp/tree/b.txt")
    assert listing.stdout.split() == [str(len(payload)), "alpha", "beta"]
    back = tmp_path / "back.bin"
    cluster.kubectl("cp", f"{ns}/shell:/tmp/data.bin", str(back))
    assert back.read_bytes() == payload
    cluster.kubectl("cp", f"{ns}/shell:/tmp/tree", str(tmp_path / "tree-back"))
    assert (tmp_path / "tree-back" / "sub" / "a.txt").read_text() == "alpha\n"
    assert (tmp_path / "tree-back" / "b.txt").read_text() == "beta\n"


def test_errors_are_reported_as_kubernetes_does(cluster: Cluster, ns: str) -> None:
    proc = cluster.kubectl("exec", "-n", ns, "nope", "--", "ls", check=False)
    assert proc.returncode == 1
    assert 'Error from server (NotFound): pods "nope" not found' in proc.stderr
    proc = cluster.kubectl("exec", "-n", ns, "shell", "-c", "nope", "--", "ls", check=False)
    assert proc.returncode == 1
    assert "container nope is not valid for pod shell" in proc.stderr
    proc = cluster.kubectl("attach", "-n", ns, "shell", "-c", "nope", check=False)
    assert proc.returncode == 1
    assert "nope" in proc.stderr


def test_the_official_python_clients_exec_and_port_forward(cluster: Cluster, ns: str) -> None:
    """kubernetes.stream: v5/v4 channel exec and v4 WebSocket port-forward (?ports=)."""
    from kubernetes import client, config
    from kubernetes.stream import portforward, stream

    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        core = client.CoreV1Api(api_client)
        out = stream(core.connect_get_namespaced_pod_exec, "shell", ns, container="main",
                     command=["sh", "-c", "echo from-python"], stdout=True, stderr=True,
                     stdin=False, tty=False)
        assert out == "from-python\n"
        forward = portforward(core.connect_get_namespaced_pod_portforward, "web", ns,
                              ports="8080")
        try:
            sock = forward.socket(8080)
            sock.setblocking(True)
            sock.settimeout(20)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            page = b""
            while not page.endswith(b"hello-pf\n") and (chunk := sock.recv(4096)):
                page += chunk
            assert page.startswith(b"HTTP/1.") and page.endswith(b"hello-pf\n")
        finally:
            forward.close()
    finally:
        api_client.close()
