"""``pilothouse runtime-shim`` and ``pilothouse image`` as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from tests.support import wait_until

PILOTHOUSE = [sys.executable, "-m", "pilothouse.cli"]
pytestmark = pytest.mark.slow


def wait_for_socket(proc: subprocess.Popen[bytes], socket: Path, within: float) -> None:
    """Until the shim has created its socket; its stderr if it exits first."""
    def ready() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        return socket.exists()
    wait_until(ready, within=within, what="the shim's socket")


def test_bad_listen_address_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([*PILOTHOUSE, "runtime-shim", "--listen", "tcp://0.0.0.0:1",
                           "--root", str(tmp_path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2
    assert "unix:///ABSOLUTE/PATH" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_containerd_backend_without_containerd_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([*PILOTHOUSE, "runtime-shim", "--backend", "containerd",
                           "--listen", f"unix://{tmp_path}/s.sock", "--root", str(tmp_path),
                           "--containerd-address", f"unix://{tmp_path}/nothing.sock"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert f"containerd at unix://{tmp_path}/nothing.sock does not answer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_containerd_backend_rejects_a_malformed_address(tmp_path: Path) -> None:
    proc = subprocess.run([*PILOTHOUSE, "runtime-shim", "--backend", "containerd",
                           "--listen", f"unix://{tmp_path}/s.sock", "--root", str(tmp_path),
                           "--containerd-address", "tcp://127.0.0.1:1"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "unix:///ABSOLUTE/PATH" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_shim_process_serves_and_stops_on_sigterm(short_dir: Path) -> None:
    socket = short_dir / "cri.sock"
    proc = subprocess.Popen([*PILOTHOUSE, "runtime-shim", "--listen", f"unix://{socket}",
                             "--root", str(short_dir / "root"), "--bridge",
                             f"phx{os.getpid() % 100000}", "--pod-cidr", "10.215.0.0/24"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_socket(proc, socket, within=30)
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            stub = cri_grpc.RuntimeServiceStub(channel)
            version = stub.Version(cri.VersionRequest(), timeout=10)
        assert version.runtime_name == "pilothouse-process"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "link", "del", f"phx{os.getpid() % 100000}"],
                       capture_output=True, check=False)


def test_bad_streaming_address_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([*PILOTHOUSE, "runtime-shim", "--listen", f"unix://{tmp_path}/s.sock",
                           "--root", str(tmp_path), "--streaming-address", "localhost"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "--streaming-address must be HOST:PORT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_image_import_into_containerd_over_its_grpc_api(short_dir: Path) -> None:
    import asyncio

    from pilothouse.runtime_shim.containerd.client import Client
    from pilothouse.runtime_shim.containerd.daemon import Containerd
    from pilothouse.runtime_shim.containerd.images import ContainerdImages
    from pilothouse.runtime_shim.images import oci

    archive = short_dir / "pause.tar"
    oci.write_oci_layout(archive, [oci.build_pause()])
    daemon = Containerd(short_dir / "ctd", bridge=f"phi{os.getpid() % 100000}",
                        subnet="10.217.0.0/24")
    daemon.start()
    try:
        proc = subprocess.run([*PILOTHOUSE, "image", "import", str(archive), "--containerd",
                               f"unix://{daemon.address}", "--namespace", "imports"],
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [oci.PAUSE_TAG]

        async def listed() -> list[str]:
            client = Client(daemon.address, "imports")
            try:
                images = await ContainerdImages(client, short_dir, None).all()
            finally:
                await client.close()
            return [name for image in images for name in image.names]

        assert asyncio.run(listed()) == [oci.PAUSE_TAG]
        bad = subprocess.run([*PILOTHOUSE, "image", "import", str(archive), "--containerd",
                              f"unix://{short_dir}/none.sock"], capture_output=True, text=True,
                             timeout=120, check=False)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr
        assert "none.sock" in bad.stderr
    finally:
        daemon.cleanup()


def test_containerd_backend_process_serves_and_stops_on_sigterm(short_dir: Path) -> None:
    from pilothouse.runtime_shim.containerd.daemon import Containerd

    tag = os.getpid() % 100000
    daemon = Containerd(short_dir / "ctd", bridge=f"phj{tag}", subnet="10.218.0.0/24")
    daemon.start()
    socket = short_dir / "cri.sock"
    proc = subprocess.Popen([*PILOTHOUSE, "runtime-shim", "--backend", "containerd",
                             "--containerd-address", f"unix://{daemon.address}",
                             "--listen", f"unix://{socket}", "--root", str(short_dir / "root"),
                             "--bridge", f"phk{tag}", "--pod-cidr", "10.219.0.0/24"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_socket(proc, socket, within=60)
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            stub = cri_grpc.RuntimeServiceStub(channel)
            version = stub.Version(cri.VersionRequest(), timeout=30)
            status = stub.Status(cri.StatusRequest(), timeout=30)
            images = cri_grpc.ImageServiceStub(channel).ListImages(cri.ListImagesRequest(),
                                                                   timeout=30)
        assert version.runtime_name == "pilothouse-containerd"
        assert "containerd 1.6" in version.runtime_version
        assert {c.type: c.status for c in status.status.conditions} == {
            "RuntimeReady": True, "NetworkReady": True}
        # the pause image was built from busybox-static and imported at start
        assert any("pause" in tag for image in images.images for tag in image.repo_tags)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        daemon.cleanup()
