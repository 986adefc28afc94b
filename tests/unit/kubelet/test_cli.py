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
    (["--runtime-endpoint", "unix:///x", "--eviction-hard", "memory.available<lots"],
     "eviction threshold 'memory.available<lots': 'lots' is not a quantity"),
    (["--runtime-endpoint", "unix:///x", "--eviction-hard", "disk.free<1Gi"],
     "unknown signal 'disk.free'"),
    (["--runtime-endpoint", "unix:///x", "--image-gc-high-threshold", "70"],
     "--image-gc-low-threshold (80) must be at most --image-gc-high-threshold (70)"),
    (["--runtime-endpoint", "unix:///x", "--cgroup-root", "kubepods"],
     "--cgroup-root must be an absolute cgroup path"),
], ids=["endpoint", "apiserver", "port", "max-pods", "labels", "eviction-quantity",
        "eviction-signal", "image-gc", "cgroup-root"])
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


def test_eviction_and_image_gc_flags_reach_the_config() -> None:
    import argparse

    from pilothouse.services.kubelet.cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args([
        "--node-name", "n1", "--runtime-endpoint", "unix:///x",
        "--eviction-hard", "memory.available<1Gi,pid.available<5%",
        "--image-gc-high-threshold", "90", "--image-gc-low-threshold", "50"]))
    assert config.eviction_hard == "memory.available<1Gi,pid.available<5%"
    assert (config.image_gc_high_threshold_percent, config.image_gc_low_threshold_percent) == \
        (90, 50)
