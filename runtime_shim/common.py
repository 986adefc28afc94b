"""What the process and containerd backends share, beyond the RuntimeBackend protocol.

* :class:`DelegatedRPCs`: the RPCs both answer by handing the request to a
  collaborator — the image RPCs to their image service (``self.images``), the
  container event stream to their :class:`~pilothouse.runtime_shim.events.EventHub`
  (``self.events``). A backend inherits it and sets those two attributes.
* :func:`fill_usage`: a cgroup's CPU and memory usage into CRI stats, with the CPU
  rate (``usage_nano_cores``) from the previous sample of the same key.
* :func:`disk_usage`: bytes and inodes below a directory, as ``du`` counts them.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim.events import EventHub
from pilothouse.runtime_shim.process.cgroups import Cgroups, CgroupSet


class ImageRPCs(Protocol):
    """The image service a backend delegates to (the CRI ImageService's RPCs)."""

    async def list_images(self, req: cri.ListImagesRequest) -> cri.ListImagesResponse: ...

    async def image_status(self, req: cri.ImageStatusRequest) -> cri.ImageStatusResponse: ...

    async def pull_image(self, req: cri.PullImageRequest) -> cri.PullImageResponse: ...

    async def remove_image(self, req: cri.RemoveImageRequest) -> cri.RemoveImageResponse: ...


Images = TypeVar("Images", bound=ImageRPCs)


class DelegatedRPCs(Generic[Images]):
    """GetContainerEvents and the image RPCs, answered by ``events`` and ``images``
    (``DelegatedRPCs[TheImageService]``: the backend keeps its service's own type)."""

    images: Images
    events: EventHub

    def container_events(self) -> AsyncIterator[cri.ContainerEventResponse]:
        return self.events.subscribe()

    async def list_images(self, req: cri.ListImagesRequest) -> cri.ListImagesResponse:
        return await self.images.list_images(req)

    async def image_status(self, req: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        return await self.images.image_status(req)

    async def pull_image(self, req: cri.PullImageRequest) -> cri.PullImageResponse:
        return await self.images.pull_image(req)

    async def remove_image(self, req: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
        return await self.images.remove_image(req)


def fill_usage(cgroups: Cgroups, samples: dict[str, tuple[int, int]], key: str,
               cg: CgroupSet, cpu: cri.CpuUsage, memory: cri.MemoryUsage, now: int) -> None:
    """``cg``'s CPU and memory usage at ``now`` (ns) into ``cpu`` and ``memory``.

    ``samples[key]`` keeps the last (time, cumulative CPU ns) of ``key`` (a container
    or sandbox id): the CPU rate is measured since then, and is left unset on a first
    sample. What the cgroup cannot tell (no such controller) stays unset."""
    usage = cgroups.cpu_usage_ns(cg)
    if usage is not None:
        cpu.timestamp = now
        cpu.usage_core_nano_seconds.value = usage
        last = samples.get(key)
        if last is not None and now > last[0]:
            rate = (usage - last[1]) * 1_000_000_000 // (now - last[0])
            cpu.usage_nano_cores.value = max(0, rate)
        samples[key] = (now, usage)
    mem = cgroups.memory(cg)
    if mem is not None:
        memory.timestamp = now
        memory.usage_bytes.value, memory.working_set_bytes.value, rss = mem
        memory.rss_bytes.value = rss


def disk_usage(path: Path) -> tuple[int, int]:
    """(bytes in allocated blocks, inodes) below ``path``; symlinks count as inodes only,
    files that vanish during the walk are skipped."""
    used = inodes = 0
    for dirpath, dirnames, filenames in os.walk(path):
        inodes += len(dirnames) + len(filenames)
        for name in filenames:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if not stat.S_ISLNK(st.st_mode):
                    used += st.st_blocks * 512
    return used, inodes
