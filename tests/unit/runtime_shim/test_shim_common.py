"""runtime_shim.common: what both backends share (delegated RPCs, cgroup usage, disk usage)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, cast

import pytest

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim.common import DelegatedRPCs, disk_usage, fill_usage
from pilothouse.runtime_shim.events import EventHub
from pilothouse.runtime_shim.process.cgroups import Cgroups, CgroupSet


class FakeCgroups:
    """Readings one after the other; None where a controller is missing."""

    def __init__(self, cpu: list[int | None], memory: tuple[int, int, int] | None) -> None:
        self.cpu = cpu
        self.mem = memory

    def cpu_usage_ns(self, cg: Any) -> int | None:
        return self.cpu.pop(0)

    def memory(self, cg: Any) -> tuple[int, int, int] | None:
        return self.mem


CG = cast(CgroupSet, object())


def test_fill_usage_measures_the_cpu_rate_since_the_last_sample() -> None:
    cgroups = cast(Cgroups, FakeCgroups([1_000_000_000, 1_500_000_000], (300, 200, 100)))
    samples: dict[str, tuple[int, int]] = {}
    first = cri.ContainerStats()
    fill_usage(cgroups, samples, "c1", CG, first.cpu, first.memory, now=10_000_000_000)
    assert first.cpu.usage_core_nano_seconds.value == 1_000_000_000
    assert not first.cpu.HasField("usage_nano_cores")  # no earlier sample
    assert (first.memory.usage_bytes.value, first.memory.working_set_bytes.value,
            first.memory.rss_bytes.value) == (300, 200, 100)
    second = cri.ContainerStats()
    # 0.5 s of CPU in 2 s: a quarter of a core
    fill_usage(cgroups, samples, "c1", CG, second.cpu, second.memory, now=12_000_000_000)
    assert second.cpu.usage_nano_cores.value == 250_000_000
    assert samples == {"c1": (12_000_000_000, 1_500_000_000)}


def test_fill_usage_leaves_unset_what_the_cgroup_cannot_tell() -> None:
    cgroups = cast(Cgroups, FakeCgroups([None], None))
    samples: dict[str, tuple[int, int]] = {}
    stats = cri.ContainerStats()
    fill_usage(cgroups, samples, "gone", CG, stats.cpu, stats.memory, now=1)
    assert not stats.HasField("cpu") and not stats.HasField("memory")
    assert samples == {}


def test_fill_usage_never_reports_a_negative_rate() -> None:
    # a cgroup recreated under the same key starts counting from zero again
    cgroups = cast(Cgroups, FakeCgroups([5_000, 10], None))
    samples: dict[str, tuple[int, int]] = {}
    for now in (1_000, 2_000):
        stats = cri.ContainerStats()
        fill_usage(cgroups, samples, "k", CG, stats.cpu, stats.memory, now=now)
    assert stats.cpu.usage_nano_cores.value == 0


def test_disk_usage_counts_blocks_and_inodes(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data").write_bytes(b"x" * 10_000)
    (tmp_path / "empty").write_bytes(b"")
    os.symlink("/nonexistent", tmp_path / "link")
    used, inodes = disk_usage(tmp_path)
    assert inodes == 4  # sub, sub/data, empty, link
    expected = os.lstat(tmp_path / "sub" / "data").st_blocks * 512
    assert used == expected and used >= 10_000
    assert disk_usage(tmp_path / "missing") == (0, 0)


class FakeImages:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def list_images(self, req: cri.ListImagesRequest) -> cri.ListImagesResponse:
        self.calls.append("list")
        return cri.ListImagesResponse(images=[cri.Image(id="sha256:a")])

    async def image_status(self, req: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        self.calls.append(f"status {req.image.image}")
        return cri.ImageStatusResponse()

    async def pull_image(self, req: cri.PullImageRequest) -> cri.PullImageResponse:
        self.calls.append(f"pull {req.image.image}")
        return cri.PullImageResponse(image_ref="sha256:b")

    async def remove_image(self, req: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
        self.calls.append(f"remove {req.image.image}")
        return cri.RemoveImageResponse()


class Backend(DelegatedRPCs[FakeImages]):
    def __init__(self) -> None:
        self.images = FakeImages()
        self.events = EventHub()


async def test_delegated_rpcs_reach_the_image_service_and_the_event_hub() -> None:
    backend = Backend()
    spec = cri.ImageSpec(image="busybox")
    assert [i.id for i in (await backend.list_images(cri.ListImagesRequest())).images] == \
        ["sha256:a"]
    await backend.image_status(cri.ImageStatusRequest(image=spec))
    assert (await backend.pull_image(cri.PullImageRequest(image=spec))).image_ref == "sha256:b"
    await backend.remove_image(cri.RemoveImageRequest(image=spec))
    images = backend.images
    assert images.calls == ["list", "status busybox", "pull busybox", "remove busybox"]
    stream = backend.container_events()  # subscribed from this call on
    backend.events.publish(cri.ContainerEventResponse(container_id="c1"))
    assert (await asyncio.wait_for(anext(aiter(stream)), 10)).container_id == "c1"


@pytest.mark.parametrize("name", ["list_images", "image_status", "pull_image", "remove_image",
                                  "container_events"])
def test_both_backends_take_the_delegated_rpcs_from_one_place(name: str) -> None:
    from pilothouse.runtime_shim.containerd.backend import ContainerdBackend
    from pilothouse.runtime_shim.process.backend import ProcessBackend

    for backend in (ContainerdBackend, ProcessBackend):
        assert getattr(backend, name) is getattr(DelegatedRPCs, name), backend
