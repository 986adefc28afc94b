"""``pilothouse kubelet``: bad flags are clear errors, never tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pilothouse.cli import main


@pytest.mark.parametrize("args,message", [
    (["--runtime-endpoint", "/run/cri.sock"], "--runtime-endpoint must be unix:///PATH"),
    (["--runtime-endpoint", "unix:///x", "--apiserver", "ftp://x"],
     "--apiserver must be grpc://host:port"),
    (["--runtime-endpoint", "unix:///x", "--port", "70000"], "--port must be 0-65535"),
    (["--runtime-endpoint", "unix:///x", "--max-pods", "0"], "--max-pods must be at least 1"),
    (["--runtime-endpoint", "unix:///x", "--node-labels", "novalue"],
     "--node-labels: expected key=value"),
], ids=["endpoint", "apiserver", "port", "max-pods", "labels"])
def test_bad_flags(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kubelet", "--node-name", "n1", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_node_name_is_required() -> None:
    proc = subprocess.run([sys.executable, "-m", "pilothouse.cli", "kubelet",
                           "--runtime-endpoint", "unix:///x"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2
    assert "--node-name" in proc.stderr and "Traceback" not in proc.stderr
