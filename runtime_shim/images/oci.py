"""OCI images made with the standard library: a busybox image and a pause image.

An image here is what the OCI image spec says: a layer (a gzipped tar of the
root filesystem), a config (``rootfs.diff_ids`` = sha256 of the *uncompressed*
layer, plus Entrypoint/Cmd/Env/WorkingDir), a manifest pointing at both, and an
index naming the manifest. :func:`write_oci_layout` packs them as an OCI layout
tarball (``oci-layout``, ``index.json``, ``blobs/sha256/…``) that both our
image store and ``ctr images import`` accept.

Builds are reproducible: fixed mtimes, owners and order, gzip without a
timestamp, so the same busybox binary always gives the same image ID.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"

DEFAULT_BUSYBOX = Path("/bin/busybox")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX_TAG = "docker.io/library/busybox:latest"
PAUSE_TAG = "registry.k8s.io/pause:3.10"
EPOCH = 0


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Image:
    """A built image: its blobs by digest and the manifest that ties them together."""

    tag: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifest_digest: str = ""
    config_digest: str = ""

    def add(self, data: bytes) -> tuple[str, int]:
        digest = sha256(data)
        self.blobs[digest] = data
        return digest, len(data)


def _entry(name: str, kind: bytes, *, mode: int, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    info.size = size
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def busybox_applets(busybox: Path) -> list[str]:
    """Install paths of every applet (``bin/sh``, ``usr/bin/awk``, ...), from busybox itself."""
    try:
        out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                             check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise RuntimeError(f"cannot run {busybox} --list-full: {err}") from err
    return sorted({line.strip().lstrip("/") for line in out.splitlines() if line.strip()})


_ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n"
                  "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "etc/group": "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n",
    "etc/hostname": "localhost\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    "etc/resolv.conf": "",
    "etc/nsswitch.conf": "hosts: files dns\n",
}
_DIRS = {
    "bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
    "etc": 0o755, "dev": 0o755, "proc": 0o555, "sys": 0o555, "tmp": 0o1777, "root": 0o700,
    "var": 0o755, "var/tmp": 0o1777, "home": 0o755, "run": 0o755,
}


def busybox_layer(busybox: Path) -> bytes:
    """An uncompressed tar: the directory skeleton, /bin/busybox, applet symlinks, /etc."""
    binary = busybox.read_bytes()
    applets = busybox_applets(busybox)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = dict(_DIRS)
        for applet in applets:
            parent = applet.rsplit("/", 1)[0] if "/" in applet else ""
            while parent and parent not in dirs:
                dirs[parent] = 0o755
                parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
        for name in sorted(dirs):
            tar.addfile(_entry(name, tarfile.DIRTYPE, mode=dirs[name]))
        tar.addfile(_entry("bin/busybox", tarfile.REGTYPE, mode=0o755, size=len(binary)),
                    io.BytesIO(binary))
        for applet in applets:
            if applet == "bin/busybox":
                continue
            tar.addfile(_entry(applet, tarfile.SYMTYPE, mode=0o777, link="/bin/busybox"))
        for name, text in sorted(_ETC.items()):
            data = text.encode()
            tar.addfile(_entry(name, tarfile.REGTYPE, mode=0o644, size=len(data)),
                        io.BytesIO(data))
    return buf.getvalue()


def build(
    tag: str,
    *,
    busybox: Path = DEFAULT_BUSYBOX,
    entrypoint: Iterable[str] = (),
    cmd: Iterable[str] = ("sh",),
    env: Iterable[str] = (f"PATH={DEFAULT_PATH}",),
    working_dir: str = "/",
    stop_signal: str = "",
) -> Image:
    """One image from busybox-static with the given runtime config."""
    image = Image(tag)
    layer = busybox_layer(busybox)
    diff_id = sha256(layer)
    gz = gzip.compress(layer, compresslevel=6, mtime=0)
    layer_digest, layer_size = image.add(gz)
    runtime_config: dict[str, object] = {"Env": list(env), "WorkingDir": working_dir}
    if entrypoint:
        runtime_config["Entrypoint"] = list(entrypoint)
    if cmd:
        runtime_config["Cmd"] = list(cmd)
    if stop_signal:
        runtime_config["StopSignal"] = stop_signal
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": runtime_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z",
                     "created_by": "pilothouse image build (busybox-static)"}],
    }
    config_digest, config_size = image.add(canonical_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": layer_digest, "size": layer_size}],
    }
    image.manifest_digest, _ = image.add(canonical_json(manifest))
    image.config_digest = config_digest
    return image


def build_busybox(tag: str = BUSYBOX_TAG, *, busybox: Path = DEFAULT_BUSYBOX) -> Image:
    return build(tag, busybox=busybox)


def build_pause(tag: str = PAUSE_TAG, *, busybox: Path = DEFAULT_BUSYBOX) -> Image:
    """The sandbox image: busybox ``sleep infinity`` as its entrypoint, killed by SIGKILL."""
    return build(tag, busybox=busybox, entrypoint=("/bin/sleep", "infinity"), cmd=(),
                 stop_signal="SIGKILL")


def write_oci_layout(path: Path, images: Iterable[Image]) -> None:
    """Write an OCI layout tarball holding ``images`` (each named in index.json)."""
    images = list(images)
    manifests = []
    blobs: dict[str, bytes] = {}
    for image in images:
        blobs.update(image.blobs)
        manifest = image.blobs[image.manifest_digest]
        tag = image.tag.rsplit(":", 1)[1] if ":" in image.tag.rsplit("/", 1)[-1] else "latest"
        manifests.append({
            "mediaType": MEDIA_MANIFEST,
            "digest": image.manifest_digest,
            "size": len(manifest),
            "annotations": {ANNOTATION_CONTAINERD_NAME: image.tag, ANNOTATION_REF_NAME: tag},
        })
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}
    files = {
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": canonical_json(index),
    }
    for digest, data in blobs.items():
        files["blobs/sha256/" + digest.removeprefix("sha256:")] = data
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("blobs", "blobs/sha256"):
            tar.addfile(_entry(name, tarfile.DIRTYPE, mode=0o755))
        for name, data in sorted(files.items()):
            tar.addfile(_entry(name, tarfile.REGTYPE, mode=0o644, size=len(data)),
                        io.BytesIO(data))
    tmp.replace(path)
