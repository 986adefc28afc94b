"""Images in containerd, over its gRPC API: import, unpack, and the CRI ImageService.

Importing (``pilothouse image import --containerd``, PullImage, the pause
image at backend start) goes through a staging :class:`ImageStore` that reads
OCI-layout / docker-archive tarballs (or pulls from a registry); then, under a
lease, every blob is written into containerd's content store with the
garbage-collection labels containerd's own client sets (index → manifests,
manifest → config and layers), each layer is applied by containerd's diff
service onto an overlayfs snapshot named by its chain ID, the config is
labelled with the top snapshot, and an image record names the manifest.

An image's CRI ID is its config digest, as in containerd's CRI plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from pilothouse.gen.containerd.services.diff.v1 import diff_pb2 as diff
from pilothouse.gen.containerd.services.images.v1 import images_pb2 as images
from pilothouse.gen.containerd.services.snapshots.v1 import snapshots_pb2 as snapshots
from pilothouse.gen.containerd.types import descriptor_pb2
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim.containerd.client import Client
from pilothouse.runtime_shim.errors import FailedPrecondition, InvalidArgument, RuntimeFailure
from pilothouse.runtime_shim.images import oci, registry
from pilothouse.runtime_shim.images.reference import BadReference, is_image_id, parse
from pilothouse.runtime_shim.images.store import ImageConfig, ImageError, ImageRecord, ImageStore

SNAPSHOTTER = "overlayfs"
GC_SNAPSHOT = f"containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI chain IDs: the first layer's diff ID, then sha256(parent + " " + diff ID)."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else
                   "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while data := f.read(1 << 20):
            yield data


async def push_record(client: Client, store: ImageStore, record: ImageRecord,
                      names: list[str]) -> None:
    """Copy one staged image into containerd, unpack it, and name it ``names``."""
    manifest_bytes = store.read_blob(record.manifest)
    manifest = json.loads(manifest_bytes)
    config_digest = manifest["config"]["digest"]
    config = json.loads(store.read_blob(config_digest))
    layers = manifest.get("layers", [])
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    chains = chain_ids(diff_ids)
    async with client.lease() as md:
        for layer in layers:
            await _push_blob(client, store, layer["digest"], {}, md)
        config_labels = {GC_SNAPSHOT: chains[-1]} if chains else {}
        await _push_blob(client, store, config_digest, config_labels, md)
        manifest_labels = {"containerd.io/gc.ref.content.config": config_digest}
        for i, layer in enumerate(layers):
            manifest_labels[f"containerd.io/gc.ref.content.l.{i}"] = layer["digest"]
        await _push_blob(client, store, record.manifest, manifest_labels, md)
        await unpack(client, layers, diff_ids, md)
        target = descriptor_pb2.Descriptor(
            media_type=manifest.get("mediaType") or oci.MEDIA_MANIFEST,
            digest=record.manifest, size=len(manifest_bytes))
        for name in names:
            await _put_image(client, name, target, md)


async def _push_blob(client: Client, store: ImageStore, digest: str, labels: dict[str, str],
                     md: tuple[tuple[str, str], ...]) -> None:
    if await client.has_blob(digest):
        if labels:
            await client.label_blob(digest, labels)
        return
    path = store.root / "blobs" / "sha256" / digest.removeprefix("sha256:")
    await client.write_blob(digest, _chunks(path), path.stat().st_size, labels, md)


async def unpack(client: Client, layers: list[dict[str, Any]], diff_ids: list[str],
                 md: tuple[tuple[str, str], ...]) -> None:
    """Apply each layer onto a snapshot of its parent, committed under its chain ID."""
    parent = ""
    for layer, chain in zip(layers, chain_ids(diff_ids), strict=True):
        try:
            await client.snapshots.Stat(snapshots.StatSnapshotRequest(
                snapshotter=SNAPSHOTTER, key=chain), metadata=md)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            parent = chain
            continue
        key = f"extract-{secrets.token_hex(6)} {chain}"
        prepared = await client.snapshots.Prepare(snapshots.PrepareSnapshotRequest(
            snapshotter=SNAPSHOTTER, key=key, parent=parent), metadata=md)
        try:
            applied = await client.diff.Apply(diff.ApplyRequest(
                diff=descriptor_pb2.Descriptor(media_type=layer["mediaType"],
                                               digest=layer["digest"], size=layer["size"]),
                mounts=prepared.mounts), metadata=md)
            if applied.applied.digest != chain_diff(diff_ids, chain):
                raise ImageError(f"layer {layer['digest']} unpacked to {applied.applied.digest},"
                                 f" not its diff ID")
            await client.snapshots.Commit(snapshots.CommitSnapshotRequest(
                snapshotter=SNAPSHOTTER, name=chain, key=key), metadata=md)
        except BaseException:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await client.snapshots.Remove(snapshots.RemoveSnapshotRequest(
                    snapshotter=SNAPSHOTTER, key=key), metadata=md)
            raise
        parent = chain


def chain_diff(diff_ids: list[str], chain: str) -> str:
    return diff_ids[chain_ids(diff_ids).index(chain)]


async def _put_image(client: Client, name: str, target: descriptor_pb2.Descriptor,
                     md: tuple[tuple[str, str], ...]) -> None:
    from google.protobuf.field_mask_pb2 import FieldMask

    image = images.Image(name=name, target=target)
    try:
        await client.images.Create(images.CreateImageRequest(image=image), metadata=md)
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        await client.images.Update(images.UpdateImageRequest(
            image=image, update_mask=FieldMask(paths=["target"])), metadata=md)


def _names(record: ImageRecord) -> list[str]:
    names = list(record.repo_tags)
    if not names:  # an untagged image: name it by digest reference
        names = list(record.repo_digests)
    return names


async def import_archive(client: Client, archive: Path, names: list[str] | None = None,
                         staging: Path | None = None) -> list[str]:
    """Import an OCI-layout or docker-archive tarball; returns the image names created."""
    tmp = Path(tempfile.mkdtemp(prefix="ph-import-", dir=staging))
    try:
        store = ImageStore(tmp)
        records = await asyncio.to_thread(store.import_archive, archive, names)
        out: list[str] = []
        for record in records:
            await push_record(client, store, record, _names(record))
            out += _names(record)
        return out
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


def import_archive_sync(address: str, namespace: str, archive: Path,
                        names: list[str] | None = None) -> list[str]:
    """``pilothouse image import --containerd``: import over containerd's gRPC API."""

    try:
        Client.check_address(address)
    except ValueError as err:
        raise RuntimeError(str(err)) from None

    async def go() -> list[str]:
        client = Client(address, namespace)
        try:
            await client.ensure_namespace()
            return await import_archive(client, archive, names)
        except grpc.aio.AioRpcError as err:
            raise RuntimeError(f"containerd at {address}: {err.details()}") from None
        finally:
            await client.close()

    return asyncio.run(go())


# -- reading images back for the CRI --------------------------------------------------
@dataclass
class Resolved:
    """An image in containerd as the CRI sees it."""

    id: str  # config digest
    manifest: str
    names: list[str] = field(default_factory=list)
    size: int = 0
    config: ImageConfig = field(default_factory=ImageConfig)
    chain_id: str = ""

    @property
    def repo_tags(self) -> list[str]:
        return sorted(n for n in self.names if "@" not in n and not is_image_id(n))

    @property
    def repo_digests(self) -> list[str]:
        repos = {n.rsplit(":", 1)[0] if "@" not in n else n.split("@")[0] for n in self.names
                 if not is_image_id(n)}
        return sorted(f"{r}@{self.manifest}" for r in repos)

    def message(self) -> cri.Image:
        msg = cri.Image(id=self.id, repo_tags=self.repo_tags, repo_digests=self.repo_digests,
                        size=self.size)
        user = self.config.user.split(":", 1)[0]
        if user.isdigit():
            msg.uid.value = int(user)
        elif user:
            msg.username = user
        msg.spec.image = self.id
        return msg


class ContainerdImages:
    """The CRI ImageService over containerd's images, content and snapshots."""

    def __init__(self, client: Client, staging: Path, in_use: Any) -> None:
        self.client = client
        self.staging = staging
        self.in_use = in_use
        self._manifests: dict[str, tuple[str, int, ImageConfig, str]] = {}
        self._pulls: dict[str, asyncio.Lock] = {}

    async def _describe(self, target: descriptor_pb2.Descriptor) -> tuple[str, int,
                                                                        ImageConfig, str]:
        """(config digest, size, config, top chain ID) of a manifest; cached (immutable)."""
        hit = self._manifests.get(target.digest)
        if hit is not None:
            return hit
        doc = json.loads(await self.client.read_blob(target.digest))
        if "manifests" in doc:  # an index: the linux/amd64 manifest
            chosen = [m for m in doc["manifests"] if (m.get("platform") or {}).get(
                "architecture", "amd64") == "amd64"] or doc["manifests"]
            doc = json.loads(await self.client.read_blob(chosen[0]["digest"]))
        config_digest = doc["config"]["digest"]
        config_doc = json.loads(await self.client.read_blob(config_digest))
        size = sum(int(layer.get("size", 0)) for layer in doc.get("layers", []))
        size += int(doc["config"].get("size", 0))
        chains = chain_ids(list((config_doc.get("rootfs") or {}).get("diff_ids") or []))
        hit = (config_digest, size, ImageConfig.from_json(config_doc),
               chains[-1] if chains else "")
        self._manifests[target.digest] = hit
        return hit

    async def all(self) -> list[Resolved]:
        listed = await self.client.images.List(images.ListImagesRequest(),
                                               metadata=self.client.md)
        by_id: dict[str, Resolved] = {}
        for image in listed.images:
            try:
                config_digest, size, config, chain = await self._describe(image.target)
            except (grpc.aio.AioRpcError, ValueError, KeyError):
                continue  # content missing (being garbage collected): not an image for us
            r = by_id.setdefault(config_digest, Resolved(config_digest, image.target.digest,
                                                         size=size, config=config,
                                                         chain_id=chain))
            r.names.append(image.name)
        return sorted(by_id.values(), key=lambda r: r.id)

    async def resolve(self, ref: str) -> Resolved | None:
        everything = await self.all()
        if is_image_id(ref):
            return next((r for r in everything if r.id == ref), None)
        if len(ref) >= 12 and all(c in "0123456789abcdef" for c in ref):
            hits = [r for r in everything if r.id.removeprefix("sha256:").startswith(ref)]
            if len(hits) == 1:
                return hits[0]
        try:
            parsed = parse(ref)
        except BadReference:
            return None
        for r in everything:
            if parsed.digest and (str(parsed) in r.names or str(parsed) in r.repo_digests):
                return r
            if not parsed.digest and parsed.tagged in r.names:
                return r
        return None

    async def list_images(self, req: cri.ListImagesRequest) -> cri.ListImagesResponse:
        wanted = req.filter.image.image if req.HasField("filter") else ""
        if wanted:
            hit = await self.resolve(wanted)
            found = [hit] if hit else []
        else:
            found = await self.all()
        return cri.ListImagesResponse(images=[r.message() for r in found])

    async def image_status(self, req: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        r = await self.resolve(req.image.image)
        if r is None:
            return cri.ImageStatusResponse()
        resp = cri.ImageStatusResponse(image=r.message())
        if req.verbose:
            resp.info["info"] = json.dumps({"names": r.names, "manifest": r.manifest,
                                            "chainID": r.chain_id})
        return resp

    async def pull_image(self, req: cri.PullImageRequest) -> cri.PullImageResponse:
        name = req.image.image
        r = await self.resolve(name)
        if r is not None:
            return cri.PullImageResponse(image_ref=r.id)
        if is_image_id(name):
            raise InvalidArgument(f"image {name} is not present and an ID cannot be pulled")
        try:
            ref = parse(name)
        except BadReference as err:
            raise InvalidArgument(str(err)) from None
        auth = req.auth
        try:
            creds = registry.Credentials.from_auth(auth.username, auth.password, auth.auth,
                                                   auth.identity_token, auth.registry_token)
        except registry.PullError as err:
            raise InvalidArgument(str(err)) from None
        async with self._pulls.setdefault(str(ref), asyncio.Lock()):
            r = await self.resolve(str(ref))
            if r is None:
                tmp = Path(tempfile.mkdtemp(prefix="ph-pull-", dir=self.staging))
                try:
                    store = ImageStore(tmp)
                    record = await asyncio.to_thread(registry.pull, store, ref, creds)
                    await push_record(self.client, store, record, [str(ref)])
                except (registry.PullError, ImageError) as err:
                    raise RuntimeFailure(str(err)) from None
                finally:
                    await asyncio.to_thread(shutil.rmtree, tmp, True)
                r = await self.resolve(str(ref))
                if r is None:
                    raise RuntimeFailure(f"pulled {ref} but containerd does not list it")
        return cri.PullImageResponse(image_ref=r.id)

    async def remove_image(self, req: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
        r = await self.resolve(req.image.image)
        if r is None:
            return cri.RemoveImageResponse()
        if await self.in_use(r.id):
            raise FailedPrecondition(f"image {req.image.image} ({r.id}) is used by a "
                                     "container; remove the container first")
        for name in r.names:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.client.images.Delete(images.DeleteImageRequest(name=name),
                                                metadata=self.client.md)
        return cri.RemoveImageResponse()
