"""Run a private containerd (1.6, Debian's) for tests, benchmarks and local use.

There is no systemd here, so whoever needs containerd starts its own: a
``version = 2`` config with its own root, state and sockets under one
directory, runc as the runtime, the CRI plugin with
``restrict_oom_score_adj`` (root without CAP_SYS_RESOURCE cannot raise
oom_score_adj), the local pause image as ``sandbox_image``, and a CNI
conflist (bridge + host-local + portmap from /usr/lib/cni) written next to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pilothouse.runtime_shim.containerd.cni import conflist as cni_conflist
from pilothouse.runtime_shim.images.oci import PAUSE_TAG

MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the terminating NUL

CONFIG = """version = 2
root = "{dir}/root"
state = "{dir}/state"
[grpc]
  address = "{dir}/containerd.sock"
[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"
[debug]
  address = "{dir}/debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{dir}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"""


@dataclass
class Containerd:
    directory: Path
    bridge: str
    subnet: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return str(self.directory / "containerd.sock")

    def write_config(self) -> list[str]:
        """Write config.toml and the CNI conflist; return the daemon's command line
        (``pilothouse up`` runs it under its own supervisor instead of ``start``)."""
        d = self.directory
        longest = d / "containerd.sock.ttrpc"
        if len(str(longest).encode()) > MAX_SOCKET_PATH:
            raise ValueError(f"{d} is too long for containerd's unix sockets "
                             f"({longest} is over {MAX_SOCKET_PATH} bytes): use a shorter "
                             "directory")
        (d / "cni").mkdir(parents=True, exist_ok=True)
        (d / "config.toml").write_text(CONFIG.format(dir=d, pause=PAUSE_TAG,
                                                     cni_bin="/usr/lib/cni"))
        (d / "cni" / "10-pilothouse.conflist").write_text(json.dumps(cni_conflist(
            name=f"pilothouse-{self.bridge}", bridge=self.bridge, subnet=self.subnet,
            data_dir=str(d / "ipam"))))
        return ["containerd", "--config", str(d / "config.toml")]

    def accepts(self) -> bool:
        """The gRPC socket accepts connections (the socket file exists a moment before
        listen(), so its presence is not enough)."""
        return _accepts(self.address)

    def start(self, timeout: float = 30.0) -> None:
        d = self.directory
        argv = self.write_config()
        log = open(d / "containerd.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while not _accepts(self.address):  # the socket file exists a moment before listen()
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start; see {d / 'containerd.log'}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the daemon (its shims and containers keep running, as with systemd)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)

    def import_image(self, archive: Path, namespace: str = "k8s.io") -> None:
        """Import over containerd's gRPC API (content, snapshots, diff, images)."""
        from pilothouse.runtime_shim.containerd.images import import_archive_sync

        import_archive_sync(self.address, namespace, archive)

    def cleanup(self) -> None:
        """After stop(): kill this daemon's shims, unmount its mounts, drop its bridge."""
        self.stop()
        root = str(self.directory)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and \
                        root.encode() in b" ".join(cmdline):
                    for pid in [*_descendants(int(proc.name)), int(proc.name)]:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            mountpoint = line.split()[4]
            if mountpoint.startswith(root + "/"):
                subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)


def _accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            out += [*_descendants(int(child)), int(child)]
    return out
