"""The local image store: content-addressed blobs, image records, unpacked root filesystems.

Layout under ``<root>``::

    blobs/sha256/<hex>     every manifest, config and layer, named by its digest
    images.json            image ID (config digest) -> tags, digests, manifest, size
    rootfs/<hex>/          the image's layers applied in order (whiteouts honoured)
    .lock                  flock taken around every read-modify-write of images.json

An image's ID is its config digest, as in containerd and Docker. The CLI
(``pilothouse image import``) and a running shim may share a store: every
change takes the lock and rewrites ``images.json`` atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from pilothouse.runtime_shim.images import oci
from pilothouse.runtime_shim.images.reference import BadReference, is_image_id, parse


class ImageError(Exception):
    """A bad archive, a bad reference, or an image that cannot be removed."""


@dataclass
class ImageRecord:
    id: str  # config digest
    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)
    manifest: str = ""
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"repo_tags": self.repo_tags, "repo_digests": self.repo_digests,
                "manifest": self.manifest, "size": self.size}


@dataclass
class ImageConfig:
    """The runtime part of an image config (``config`` in the OCI image config)."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ImageConfig:
        cfg = doc.get("config") or {}
        return cls(
            entrypoint=list(cfg.get("Entrypoint") or []),
            cmd=list(cfg.get("Cmd") or []),
            env=list(cfg.get("Env") or []),
            working_dir=cfg.get("WorkingDir") or "",
            user=cfg.get("User") or "",
            stop_signal=cfg.get("StopSignal") or "",
        )


def _digest_path(root: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise ImageError(f"unsupported digest {digest!r}")
    return root / "blobs" / "sha256" / hexpart


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "rootfs").mkdir(exist_ok=True)
        self._index = root / "images.json"

    # -- records ------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict[str, ImageRecord]:
        try:
            doc = json.loads(self._index.read_text())
        except FileNotFoundError:
            return {}
        return {image_id: ImageRecord(image_id, **rec) for image_id, rec in doc.items()}

    def _save(self, records: dict[str, ImageRecord]) -> None:
        tmp = self._index.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v.to_json() for k, v in records.items()}, indent=1))
        tmp.replace(self._index)

    def images(self) -> list[ImageRecord]:
        return sorted(self._load().values(), key=lambda r: r.id)

    def resolve(self, ref: str) -> ImageRecord | None:
        """The image an ID, ID prefix, tag or digest reference names; None if absent."""
        records = self._load()
        if is_image_id(ref):
            return records.get(ref)
        if len(ref) >= 12 and all(c in "0123456789abcdef" for c in ref):
            hits = [r for r in records.values() if r.id.removeprefix("sha256:").startswith(ref)]
            if len(hits) == 1:
                return hits[0]
        try:
            parsed = parse(ref)
        except BadReference:
            return None
        for record in records.values():
            if parsed.digest:
                if f"{parsed.name}@{parsed.digest}" in record.repo_digests:
                    return record
            elif parsed.tagged in record.repo_tags:
                return record
        return None

    def config(self, record: ImageRecord) -> ImageConfig:
        return ImageConfig.from_json(json.loads(self.read_blob(record.id)))

    def rootfs(self, record: ImageRecord) -> Path:
        return self.root / "rootfs" / record.id.removeprefix("sha256:")

    # -- blobs --------------------------------------------------------------------
    def has_blob(self, digest: str) -> bool:
        return _digest_path(self.root, digest).exists()

    def read_blob(self, digest: str) -> bytes:
        try:
            return _digest_path(self.root, digest).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is missing from the store") from None

    def write_blob(self, stream: IO[bytes], expected: str | None = None) -> tuple[str, int]:
        """Copy ``stream`` into the store, verifying ``expected`` if given; (digest, size)."""
        h = hashlib.sha256()
        size = 0
        fd, tmpname = tempfile.mkstemp(dir=self.root / "blobs", prefix=".ingest-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = "sha256:" + h.hexdigest()
            if expected is not None and digest != expected:
                raise ImageError(f"content digest {digest} does not match {expected}")
            os.replace(tmpname, _digest_path(self.root, digest))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmpname)
        return digest, size

    def write_bytes(self, data: bytes) -> str:
        import io

        return self.write_blob(io.BytesIO(data))[0]

    # -- adding images ------------------------------------------------------------
    def add_image(self, manifest_digest: str, names: list[str]) -> ImageRecord:
        """Record the image whose manifest (and its blobs) are in the store; unpack it."""
        manifest = json.loads(self.read_blob(manifest_digest))
        config_digest = manifest["config"]["digest"]
        config = json.loads(self.read_blob(config_digest))
        layers = [layer["digest"] for layer in manifest.get("layers", [])]
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layers):
            raise ImageError(f"image {config_digest}: {len(layers)} layers but "
                             f"{len(diff_ids)} diff_ids")
        size = sum(int(layer.get("size", 0)) for layer in manifest.get("layers", []))
        tags, digests = [], []
        for name in names:
            try:
                ref = parse(name)
            except BadReference as err:
                raise ImageError(str(err)) from None
            if not ref.digest:
                tags.append(ref.tagged)
            digests.append(f"{ref.name}@{manifest_digest}")
        self._unpack(config_digest, layers, diff_ids)
        with self._locked():
            records = self._load()
            for other in records.values():  # a tag names one image at a time
                other.repo_tags = [t for t in other.repo_tags if t not in tags]
            record = records.get(config_digest) or ImageRecord(config_digest)
            record.repo_tags = sorted(set(record.repo_tags) | set(tags))
            record.repo_digests = sorted(set(record.repo_digests) | set(digests))
            record.manifest = manifest_digest
            record.size = size + len(self.read_blob(config_digest))
            records[config_digest] = record
            self._save(records)
        return record

    def _unpack(self, config_digest: str, layers: list[str], diff_ids: list[str]) -> None:
        target = self.root / "rootfs" / config_digest.removeprefix("sha256:")
        if target.exists():  # renamed into place only once complete
            return
        work = Path(tempfile.mkdtemp(dir=self.root / "rootfs", prefix=".unpack-"))
        try:
            for digest, diff_id in zip(layers, diff_ids, strict=True):
                apply_layer(_digest_path(self.root, digest), work, diff_id)
            work.rename(target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def import_archive(self, path: Path, names: list[str] | None = None) -> list[ImageRecord]:
        """Load an OCI-layout or docker-archive tarball; returns the images it held."""
        try:
            with tarfile.open(path) as tar:
                members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
                if "oci-layout" in members:
                    return self._import_oci(tar, members, names)
                if "manifest.json" in members:
                    return self._import_docker(tar, members, names)
        except (tarfile.TarError, OSError, KeyError, ValueError) as err:
            raise ImageError(f"cannot read image archive {path}: {err}") from None
        raise ImageError(f"{path} is neither an OCI layout (no oci-layout) "
                         "nor a docker archive (no manifest.json)")

    def _import_oci(self, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo],
                    names: list[str] | None) -> list[ImageRecord]:
        def blob(digest: str) -> bytes:
            member = members["blobs/sha256/" + digest.removeprefix("sha256:")]
            stream = tar.extractfile(member)
            if stream is None:
                raise ImageError(f"blob {digest} is not a file")
            return stream.read()

        def ingest(digest: str) -> None:
            if self.has_blob(digest):
                return
            member = members.get("blobs/sha256/" + digest.removeprefix("sha256:"))
            stream = tar.extractfile(member) if member else None
            if stream is None:
                raise ImageError(f"archive lacks blob {digest}")
            self.write_blob(stream, expected=digest)

        index = json.loads(tar.extractfile(members["index.json"]).read())  # type: ignore[union-attr]
        records = []
        for desc in index.get("manifests", []):
            manifest_digest, media = desc["digest"], desc.get("mediaType", oci.MEDIA_MANIFEST)
            entries = [(manifest_digest, desc)]
            if media in (oci.MEDIA_INDEX, oci.DOCKER_MANIFEST_LIST):
                entries = [(m["digest"], desc) for m in _platform_manifests(
                    json.loads(blob(manifest_digest)))]
            for digest, outer in entries:
                ingest(digest)
                manifest = json.loads(self.read_blob(digest))
                ingest(manifest["config"]["digest"])
                for layer in manifest.get("layers", []):
                    ingest(layer["digest"])
                annotations = outer.get("annotations") or {}
                image_names = names or [n for n in [
                    annotations.get(oci.ANNOTATION_CONTAINERD_NAME)
                    or annotations.get(oci.ANNOTATION_REF_NAME)] if n and _is_full_name(n)]
                records.append(self.add_image(digest, image_names))
        if not records:
            raise ImageError("the OCI layout's index.json lists no manifests")
        return records

    def _import_docker(self, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo],
                       names: list[str] | None) -> list[ImageRecord]:
        def stream(name: str) -> IO[bytes]:
            f = tar.extractfile(members[name.removeprefix("./")])
            if f is None:
                raise ImageError(f"{name} is not a file in the archive")
            return f

        records = []
        for entry in json.loads(stream("manifest.json").read()):
            config_digest, config_size = self.write_blob(stream(entry["Config"]))
            layers = []
            for layer_name in entry["Layers"]:
                digest, size = self.write_blob(stream(layer_name))
                head = _digest_path(self.root, digest).open("rb").read(2)
                media = oci.MEDIA_LAYER_GZIP if head == b"\x1f\x8b" else oci.MEDIA_LAYER_TAR
                layers.append({"mediaType": media, "digest": digest, "size": size})
            manifest = {
                "schemaVersion": 2, "mediaType": oci.MEDIA_MANIFEST,
                "config": {"mediaType": oci.MEDIA_CONFIG, "digest": config_digest,
                           "size": config_size},
                "layers": layers,
            }
            manifest_digest = self.write_bytes(oci.canonical_json(manifest))
            records.append(self.add_image(manifest_digest, names or entry.get("RepoTags") or []))
        if not records:
            raise ImageError("the docker archive's manifest.json lists no images")
        return records

    # -- removing -----------------------------------------------------------------
    def remove(self, image_id: str) -> bool:
        """Delete an image, its unpacked rootfs and blobs no other image uses."""
        with self._locked():
            records = self._load()
            record = records.pop(image_id, None)
            if record is None:
                return False
            self._save(records)
            keep: set[str] = set()
            for other in records.values():
                keep |= self._blobs_of(other)
            for digest in self._blobs_of(record) - keep:
                with contextlib.suppress(FileNotFoundError, ImageError):
                    _digest_path(self.root, digest).unlink()
        shutil.rmtree(self.rootfs(record), ignore_errors=True)
        return True

    def _blobs_of(self, record: ImageRecord) -> set[str]:
        try:
            manifest = json.loads(self.read_blob(record.manifest))
        except ImageError:
            return {record.manifest, record.id}
        return {record.manifest, record.id, *(layer["digest"] for layer in manifest["layers"])}

    def usage(self) -> tuple[int, int]:
        """(bytes, inodes) used by the store."""
        used = inodes = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            inodes += len(dirnames) + len(filenames)
            for name in filenames:
                with contextlib.suppress(OSError):
                    used += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
        return used, inodes


def _is_full_name(name: str) -> bool:
    try:
        parse(name)
    except BadReference:
        return False
    return ":" in name or "/" in name


def _platform_manifests(index: dict[str, Any]) -> list[dict[str, Any]]:
    """The linux/amd64 manifest of a multi-platform index (or all if none is marked)."""
    manifests = index.get("manifests", [])
    chosen = [m for m in manifests
              if (m.get("platform") or {}).get("os") == "linux"
              and (m.get("platform") or {}).get("architecture") == "amd64"]
    return chosen[:1] or manifests[:1]


def apply_layer(layer: Path, target: Path, diff_id: str | None = None) -> None:
    """Apply one layer tarball (gzip or plain) onto ``target``, honouring OCI whiteouts.

    ``.wh.NAME`` deletes NAME from lower layers; ``.wh..wh..opq`` empties its
    directory. Members must stay inside ``target`` (tarfile's ``tar`` filter),
    owners are taken numerically, never looked up on the host.
    """
    with layer.open("rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic[:2] == b"\x1f\x8b":
            stream: Any = gzip.GzipFile(fileobj=raw)
        elif magic == b"\x28\xb5\x2f\xfd":
            raise ImageError(f"layer {layer.name} is zstd-compressed, which is not supported")
        else:
            stream = raw
        hasher = _HashingReader(stream)
        with tarfile.open(fileobj=cast(IO[bytes], hasher), mode="r|") as tar:
            for member in tar:
                name = member.name.removeprefix("./").rstrip("/")
                if not name or name == ".":
                    continue
                base = os.path.basename(name)
                parent = target / os.path.dirname(name)
                if base == ".wh..wh..opq":
                    if parent.is_dir() and not parent.is_symlink():
                        for child in parent.iterdir():
                            _remove(child)
                    continue
                if base.startswith(".wh."):
                    _remove(parent / base.removeprefix(".wh."))
                    continue
                dest = target / name
                replaced = dest.exists() and not (dest.is_dir() and member.isdir())
                if dest.is_symlink() or replaced:
                    _remove(dest)
                _check_member(member, name, target, layer.name)
                tar.extract(member, target, numeric_owner=True, filter="fully_trusted")
            while hasher.read(1 << 16):
                pass
    if diff_id is not None and hasher.digest() != diff_id:
        raise ImageError(f"layer {layer.name}: uncompressed digest {hasher.digest()} "
                         f"does not match diff_id {diff_id}")


def _check_member(member: tarfile.TarInfo, name: str, target: Path, layer: str) -> None:
    """Refuse members that would land outside ``target`` (``..``, symlinked parents).

    Modes are kept as they are (``/tmp`` stays 1777), so tarfile's own
    ``tar``/``data`` filters, which strip such bits, do not fit; this is the
    path-safety half of them. Symlink *targets* may be absolute: they are read
    inside the container's root, and an existing symlink is removed before a
    member is written over it.
    """
    root = os.path.realpath(target)
    parts = name.split("/")
    if name.startswith("/") or ".." in parts:
        raise ImageError(f"layer {layer}: member {member.name!r} escapes the root")
    parent = os.path.realpath(os.path.join(target, *parts[:-1])) if len(parts) > 1 else root
    if parent != root and not parent.startswith(root + "/"):
        raise ImageError(f"layer {layer}: member {member.name!r} is under a symlink "
                         "that leaves the root")
    if member.islnk():
        link = member.linkname.removeprefix("./")
        if link.startswith("/") or ".." in link.split("/"):
            raise ImageError(f"layer {layer}: hard link {member.name!r} points outside")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class _HashingReader:
    """A read-only stream that hashes what passes through (the diff_id check)."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.hash.update(data)
        return data

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()
