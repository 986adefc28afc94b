"""Image garbage collection: keep the image filesystem under its high threshold.

Kubernetes' image GC manager. Every ``image_gc_period`` (5 min) the kubelet
notes which images exist (first detected when) and which any container uses
(last used when); when the image filesystem is at least
``image_gc_high_threshold_percent`` (85) full, it removes unused images through
the CRI's ``RemoveImage``, least recently used first (then first detected),
until usage is back at ``image_gc_low_threshold_percent`` (80). Never removed:
an image a container (running or not) uses, the sandbox (pause) image, a
pinned image, or one first seen less than ``image_minimum_gc_age`` (2 min) ago.
When it cannot free enough it says so (``FreeDiskSpaceFailed``).

The eviction manager calls ``delete_unused_images`` under disk pressure, before
evicting pods.

Both dependencies are narrow protocols so tests use fakes: ``ImageRuntime``
(``CRIImages`` adapts the kubelet's CRI client) and a function returning the
image filesystem's (capacity, available) bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pilothouse.client.clock import AsyncClock
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.services.kubelet.runtime import RuntimeClient, RuntimeError_

log = logging.getLogger("pilothouse.kubelet.images")

EventFunc = Callable[[str, str, str], None]  # type, reason, message (on the Node)


class ImageGCError(Exception):
    """Image GC could not free what it had to (the message is Kubernetes')."""


class ImageRuntime(Protocol):
    async def list_images(self) -> list[cri.Image]:
        """Every image the runtime holds."""
        ...

    async def list_containers(self) -> list[cri.Container]:
        """Every container, whatever its state (their images are in use)."""
        ...

    async def image_id(self, image: str) -> str:
        """The ID of the image a reference names ("" if the runtime lacks it)."""
        ...

    async def remove_image(self, image_id: str) -> None:
        """Remove an image; raises ``RuntimeError_`` when the runtime refuses."""
        ...


class CRIImages:
    """``ImageRuntime`` over the kubelet's CRI client."""

    def __init__(self, runtime: RuntimeClient) -> None:
        self.runtime = runtime

    async def list_images(self) -> list[cri.Image]:
        resp = await self.runtime.call("ListImages", cri.ListImagesRequest())
        return list(resp.images)

    async def list_containers(self) -> list[cri.Container]:
        return await self.runtime.containers()

    async def image_id(self, image: str) -> str:
        resp = await self.runtime.call("ImageStatus", cri.ImageStatusRequest(
            image=cri.ImageSpec(image=image)))
        return str(resp.image.id) if resp.HasField("image") else ""

    async def remove_image(self, image_id: str) -> None:
        await self.runtime.call("RemoveImage", cri.RemoveImageRequest(
            image=cri.ImageSpec(image=image_id)))

    async def image_fs(self, fallback: Path) -> tuple[int, int]:
        """(capacity, available) bytes of the filesystem holding the images."""
        mount = ""
        with contextlib.suppress(RuntimeError_):
            info = await self.runtime.call("ImageFsInfo", cri.ImageFsInfoRequest())
            for usage in info.image_filesystems:
                mount = usage.fs_id.mountpoint
                break
        return await asyncio.to_thread(_statvfs, [Path(mount)] if mount else [], fallback)


def _statvfs(paths: list[Path], fallback: Path) -> tuple[int, int]:
    for path in [*paths, fallback, Path("/")]:
        if path.exists():
            st = os.statvfs(path)
            return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    return 0, 0


@dataclass
class ImageRecord:
    first_detected: float  # monotonic
    last_used: float  # monotonic (first_detected until a container uses it)
    size: int
    pinned: bool = False


def _in_use(image: cri.Image, used_refs: set[str]) -> bool:
    names = {image.id, *image.repo_tags, *image.repo_digests}
    return not names.isdisjoint(used_refs)


class ImageGCManager:
    def __init__(self, *, runtime: ImageRuntime,
                 image_fs: Callable[[], Awaitable[tuple[int, int]]], clock: AsyncClock,
                 high_threshold_percent: int = 85, low_threshold_percent: int = 80,
                 minimum_age: float = 120.0, sandbox_image: str = "",
                 event: EventFunc = lambda type_, reason, message: None) -> None:
        if not 0 <= low_threshold_percent <= high_threshold_percent <= 100:
            raise ValueError(f"image GC thresholds must satisfy 0 <= low "
                             f"({low_threshold_percent}) <= high ({high_threshold_percent}) "
                             "<= 100")
        self.runtime = runtime
        self.image_fs = image_fs
        self.clock = clock
        self.high = high_threshold_percent
        self.low = low_threshold_percent
        self.minimum_age = minimum_age
        self.sandbox_image = sandbox_image
        self.event = event
        self.records: dict[str, ImageRecord] = {}  # by image id
        self.removed: list[str] = []  # image ids, in removal order (for tests and logs)

    async def detect_images(self) -> set[str]:
        """Refresh the records; the IDs of the images in use now."""
        now = self.clock.monotonic()
        images = await self.runtime.list_images()
        containers = await self.runtime.list_containers()
        used_refs = {c.image_ref for c in containers if c.image_ref}
        used_refs |= {c.image.image for c in containers if c.image.image}
        if self.sandbox_image:
            used_refs.add(self.sandbox_image)
            with contextlib.suppress(RuntimeError_):
                sandbox_id = await self.runtime.image_id(self.sandbox_image)
                if sandbox_id:
                    used_refs.add(sandbox_id)
        in_use: set[str] = set()
        for image in images:
            record = self.records.get(image.id)
            if record is None:
                record = self.records[image.id] = ImageRecord(now, now, image.size,
                                                              image.pinned)
            record.size = image.size
            record.pinned = image.pinned
            if _in_use(image, used_refs):
                in_use.add(image.id)
                record.last_used = now
        present = {image.id for image in images}
        for gone in [i for i in self.records if i not in present]:
            del self.records[gone]
        return in_use

    async def free_space(self, bytes_to_free: int) -> int:
        """Remove unused images, least recently used first, until ``bytes_to_free`` are
        freed (or nothing is left to remove); the bytes freed."""
        in_use = await self.detect_images()
        now = self.clock.monotonic()
        candidates = sorted(((image_id, r) for image_id, r in self.records.items()
                             if image_id not in in_use),
                            key=lambda item: (item[1].last_used, item[1].first_detected))
        freed = 0
        for image_id, record in candidates:
            if freed >= bytes_to_free:
                break
            if record.pinned or now - record.first_detected < self.minimum_age:
                continue
            try:
                await self.runtime.remove_image(image_id)
            except RuntimeError_ as e:
                log.warning("removing image %s failed: %s", image_id, e.message)
                continue
            log.info("removed unused image %s (%d bytes)", image_id, record.size)
            self.removed.append(image_id)
            del self.records[image_id]
            freed += record.size
        return freed

    async def garbage_collect(self) -> int:
        """One GC pass by the thresholds; the bytes freed. Raises ``ImageGCError`` when
        the filesystem is over its high threshold and not enough could be freed."""
        if self.high >= 100:
            return 0  # image GC disabled
        capacity, available = await self.image_fs()
        if capacity <= 0:
            raise ImageGCError(f"invalid capacity {capacity} on image filesystem")
        available = min(available, capacity)
        usage_percent = 100 - available * 100 // capacity
        if usage_percent < self.high:
            await self.detect_images()  # keep first-detected / last-used times current
            return 0
        to_free = capacity * (100 - self.low) // 100 - available
        log.info("image filesystem %d%% used (high threshold %d%%): freeing %d bytes",
                 usage_percent, self.high, to_free)
        freed = await self.free_space(to_free)
        if freed < to_free:
            message = (f"Failed to garbage collect required amount of images. Attempted to "
                       f"free {to_free} bytes, but only found {freed} bytes eligible to free.")
            self.event("Warning", "FreeDiskSpaceFailed", message)
            raise ImageGCError(message)
        return freed

    async def delete_unused_images(self) -> int:
        """Every unused image old enough goes (the eviction manager's node-level reclaim)."""
        return await self.free_space(1 << 62)

    async def run(self, period: float) -> None:
        while True:
            try:
                await self.garbage_collect()
            except ImageGCError as e:
                log.warning("image garbage collection: %s", e)
            except (RuntimeError_, OSError) as e:
                log.warning("image garbage collection failed: %s", e)
                self.event("Warning", "ImageGCFailed", str(e))
            await self.clock.sleep(period)
