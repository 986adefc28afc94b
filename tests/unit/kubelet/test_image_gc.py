"""Image garbage collection on a fake image runtime, fake disk usage and a fake clock."""

from __future__ import annotations

import grpc
import pytest

from pilothouse.client.clock import AsyncFakeClock
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.services.kubelet.image_gc import ImageGCError, ImageGCManager
from pilothouse.services.kubelet.runtime import RuntimeError_

GB = 1_000_000_000
PAUSE = "registry.k8s.io/pause:3.10"


class FakeImages:
    """Images with sizes, containers using some of them, and a disk that frees what is
    removed."""

    def __init__(self, capacity: int, used: int) -> None:
        self.images: dict[str, cri.Image] = {}
        self.containers: list[cri.Container] = []
        self.capacity = capacity
        self.used = used
        self.refuse: set[str] = set()
        self.remove_calls: list[str] = []

    def add(self, image_id: str, size: int, *, tag: str = "", pinned: bool = False) -> None:
        self.images[image_id] = cri.Image(id=image_id, size=size, pinned=pinned,
                                          repo_tags=[tag] if tag else [])

    def use(self, image_ref: str, *, by_name: bool = False) -> None:
        c = cri.Container(id=f"c{len(self.containers)}", state=cri.CONTAINER_EXITED)
        if by_name:
            c.image.image = image_ref
        else:
            c.image_ref = image_ref
        self.containers.append(c)

    async def list_images(self) -> list[cri.Image]:
        return list(self.images.values())

    async def list_containers(self) -> list[cri.Container]:
        return list(self.containers)

    async def image_id(self, image: str) -> str:
        for i in self.images.values():
            if image in i.repo_tags or image == i.id:
                return str(i.id)
        return ""

    async def remove_image(self, image_id: str) -> None:
        self.remove_calls.append(image_id)
        if image_id in self.refuse:
            raise RuntimeError_("RemoveImage", grpc.StatusCode.FAILED_PRECONDITION, "in use")
        image = self.images.pop(image_id)
        self.used -= image.size

    async def image_fs(self) -> tuple[int, int]:
        return self.capacity, self.capacity - self.used


def manager(fake: FakeImages, clock: AsyncFakeClock, events: list[tuple[str, str, str]]
            ) -> ImageGCManager:
    return ImageGCManager(runtime=fake, image_fs=fake.image_fs, clock=clock,
                          sandbox_image=PAUSE,
                          event=lambda t, r, m: events.append((t, r, m)))


async def test_below_the_high_threshold_nothing_is_removed() -> None:
    fake = FakeImages(capacity=100 * GB, used=84 * GB)
    fake.add("sha256:old", 10 * GB)
    clock = AsyncFakeClock()
    gc = manager(fake, clock, [])
    await gc.detect_images()
    clock.advance(600)
    assert await gc.garbage_collect() == 0
    assert fake.remove_calls == []


async def test_unused_images_go_oldest_first_down_to_the_low_threshold() -> None:
    fake = FakeImages(capacity=100 * GB, used=90 * GB)
    clock = AsyncFakeClock()
    events: list[tuple[str, str, str]] = []
    gc = manager(fake, clock, events)
    fake.add("sha256:pause", 1 * GB, tag=PAUSE)
    fake.add("sha256:oldest", 3 * GB)
    fake.add("sha256:running", 20 * GB)
    fake.use("sha256:running")
    await gc.detect_images()
    clock.advance(100)
    fake.add("sha256:middle", 4 * GB)
    fake.add("sha256:by-name", 8 * GB, tag="docker.io/library/app:1")
    fake.use("docker.io/library/app:1", by_name=True)  # an exited container's image
    await gc.detect_images()
    clock.advance(100)
    fake.add("sha256:newest", 5 * GB)
    fake.add("sha256:pinned", 5 * GB, pinned=True)
    await gc.detect_images()
    clock.advance(200)  # every image is past the 2 min minimum age now
    # 90% used >= 85%: free down to 80% = 10 GB; oldest unused first: 3 + 4 + 5 = 12 GB.
    assert await gc.garbage_collect() == 12 * GB
    assert gc.removed == ["sha256:oldest", "sha256:middle", "sha256:newest"]
    assert "sha256:running" in fake.images and "sha256:by-name" in fake.images
    assert "sha256:pause" in fake.images and "sha256:pinned" in fake.images
    assert events == []


async def test_a_recently_used_image_goes_after_one_unused_for_longer() -> None:
    fake = FakeImages(capacity=100 * GB, used=99 * GB)
    clock = AsyncFakeClock()
    gc = manager(fake, clock, [])
    fake.add("sha256:a", GB)
    fake.add("sha256:b", GB)
    fake.use("sha256:b")
    await gc.detect_images()
    clock.advance(300)
    fake.containers.clear()
    fake.use("sha256:a")  # a is used now, b no longer
    await gc.detect_images()
    fake.containers.clear()
    clock.advance(300)
    await gc.free_space(GB)
    assert gc.removed == ["sha256:b"]


async def test_images_younger_than_the_minimum_age_stay_and_shortfall_is_reported() -> None:
    fake = FakeImages(capacity=100 * GB, used=95 * GB)
    clock = AsyncFakeClock()
    events: list[tuple[str, str, str]] = []
    gc = manager(fake, clock, events)
    fake.add("sha256:fresh", 10 * GB)
    fake.add("sha256:stale", 2 * GB)
    fake.add("sha256:stuck", 3 * GB)
    fake.refuse.add("sha256:stuck")
    await gc.detect_images()
    clock.advance(200)
    fake.add("sha256:fresh2", 10 * GB)  # first seen now: too young
    del fake.images["sha256:fresh"]  # and one disappeared on its own
    fake.used -= 10 * GB
    with pytest.raises(ImageGCError) as err:
        await gc.garbage_collect()
    # 85% used: back to 80% means 20 GB available, 15 GB are: 5 GB to free.
    assert str(err.value) == ("Failed to garbage collect required amount of images. Attempted "
                              "to free 5000000000 bytes, but only found 2000000000 bytes "
                              "eligible to free.")
    assert gc.removed == ["sha256:stale"]
    assert "sha256:fresh2" in fake.images and "sha256:stuck" in fake.images
    assert events == [("Warning", "FreeDiskSpaceFailed", str(err.value))]
    assert "sha256:fresh" not in gc.records


async def test_delete_unused_images_removes_every_unused_one() -> None:
    fake = FakeImages(capacity=100 * GB, used=10 * GB)
    clock = AsyncFakeClock()
    gc = manager(fake, clock, [])
    for i in range(3):
        fake.add(f"sha256:{i}", GB)
    fake.use("sha256:1")
    await gc.detect_images()
    clock.advance(121)
    assert await gc.delete_unused_images() == 2 * GB
    assert sorted(fake.images) == ["sha256:1"]


def test_thresholds_are_checked() -> None:
    fake = FakeImages(1, 0)
    with pytest.raises(ValueError, match="low"):
        ImageGCManager(runtime=fake, image_fs=fake.image_fs, clock=AsyncFakeClock(),
                       high_threshold_percent=70, low_threshold_percent=80)
