"""Importing image archives into containerd (for ``pilothouse image import --containerd``).

Uses ``ctr``, which ships with containerd, against the given socket: the
archive's blobs go into containerd's content store and are unpacked for the
default snapshotter, in the namespace the CRI plugin reads (``k8s.io``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def import_archive_sync(address: str, namespace: str, archive: Path,
                        names: list[str] | None = None) -> list[str]:
    """Import ``archive``; returns the image names containerd now has from it."""
    ctr = shutil.which("ctr")
    if ctr is None:
        raise RuntimeError("ctr not found: install containerd")
    argv = [ctr, "-a", address, "-n", namespace, "images", "import"]
    if names:
        if len(names) != 1:
            raise RuntimeError("containerd import takes one --name (it becomes the image name)")
        argv += ["--index-name", names[0]]
    proc = subprocess.run([*argv, str(archive)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ctr images import failed: {proc.stderr.strip()}")
    imported = []
    for line in proc.stdout.splitlines():  # "unpacking NAME (sha256:...)...done"
        if line.startswith("unpacking "):
            imported.append(line.split()[1])
    return imported
