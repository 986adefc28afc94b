"""The CRI ImageService over an :class:`ImageStore` (shared by the backends that use one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim.errors import FailedPrecondition, InvalidArgument, RuntimeFailure
from pilothouse.runtime_shim.images import registry
from pilothouse.runtime_shim.images.reference import BadReference, is_image_id, parse
from pilothouse.runtime_shim.images.store import ImageError, ImageRecord, ImageStore


def image_message(store: ImageStore, record: ImageRecord) -> cri.Image:
    msg = cri.Image(id=record.id, repo_tags=record.repo_tags,
                    repo_digests=record.repo_digests, size=record.size)
    user = store.config(record).user.split(":", 1)[0]
    if user.isdigit():
        msg.uid.value = int(user)
    elif user:
        msg.username = user
    msg.spec.image = record.id
    return msg


class LocalImages:
    """ImageService methods; ``in_use(image_id)`` guards RemoveImage."""

    def __init__(self, store: ImageStore, in_use: Callable[[str], bool]) -> None:
        self.store = store
        self.in_use = in_use
        self._pulls: dict[str, asyncio.Lock] = {}

    async def list_images(self, req: cri.ListImagesRequest) -> cri.ListImagesResponse:
        records = self.store.images()
        wanted = req.filter.image.image if req.HasField("filter") else ""
        if wanted:
            hit = self.store.resolve(wanted)
            records = [hit] if hit else []
        return cri.ListImagesResponse(images=[image_message(self.store, r) for r in records])

    async def image_status(self, req: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        record = self.store.resolve(req.image.image)
        if record is None:
            return cri.ImageStatusResponse()
        resp = cri.ImageStatusResponse(image=image_message(self.store, record))
        if req.verbose:
            resp.info["rootfs"] = str(self.store.rootfs(record))
        return resp

    async def pull_image(self, req: cri.PullImageRequest) -> cri.PullImageResponse:
        name = req.image.image
        record = self.store.resolve(name)
        if record is not None:
            return cri.PullImageResponse(image_ref=record.id)
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
        lock = self._pulls.setdefault(str(ref), asyncio.Lock())
        async with lock:  # one pull per reference at a time
            record = self.store.resolve(str(ref))
            if record is None:
                try:
                    record = await asyncio.to_thread(registry.pull, self.store, ref, creds)
                except (registry.PullError, ImageError) as err:
                    raise RuntimeFailure(str(err)) from None
        return cri.PullImageResponse(image_ref=record.id)

    async def remove_image(self, req: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
        record = self.store.resolve(req.image.image)
        if record is None:
            return cri.RemoveImageResponse()
        if self.in_use(record.id):
            raise FailedPrecondition(f"image {req.image.image} ({record.id}) is used by a "
                                     "container; remove the container first")
        self.store.remove(record.id)
        return cri.RemoveImageResponse()

    async def image_fs_info(self, req: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
        used, inodes = await asyncio.to_thread(self.store.usage)
        usage = cri.FilesystemUsage(timestamp=time.time_ns())
        usage.fs_id.mountpoint = str(self.store.root)
        usage.used_bytes.value = used
        usage.inodes_used.value = inodes
        return cri.ImageFsInfoResponse(image_filesystems=[usage])
