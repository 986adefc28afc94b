"""Image garbage collection through the real runtime's ImageService (each CRI runtime)."""

from __future__ import annotations

from pathlib import Path

import grpc

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from pilothouse.gen.k8s.core.v1 import core_pb2

from .conftest import EXTRA_IMAGE, NODE, Node, busybox_pod, wait_for
from .test_kubelet import running


async def image_names(node: Node) -> set[str]:
    async with grpc.aio.insecure_channel(node.socket) as ch:
        resp = await cri_grpc.ImageServiceStub(ch).ListImages(cri.ListImagesRequest())
    return {tag for image in resp.images for tag in image.repo_tags}


async def test_unused_images_are_removed_and_images_in_use_kept(node: Node,
                                                                extra_archive: Path) -> None:
    node.overrides = {"image_gc_high_threshold_percent": 100}  # off while the pod starts
    await node.start_kubelet()
    await node.run_pod(busybox_pod("web", "sleep 3600"))
    before = await node.wait_pod("web", running, what="Running")
    assert node.import_image is not None
    await node.import_image(extra_archive)
    names = await image_names(node)
    assert EXTRA_IMAGE in names
    busybox = {n for n in names if "busybox" in n}
    pause = {n for n in names if "pause" in n}
    # A kubelet whose image filesystem is "over" its high threshold (0%) from the start.
    await node.stop_kubelet()
    node.overrides = {"image_gc_high_threshold_percent": 0, "image_gc_low_threshold_percent": 0,
                      "image_minimum_gc_age": 0.0, "image_gc_period": 0.5}
    kubelet = await node.start_kubelet()

    # (RemoveImage returns after the image is gone from ListImages: wait for the kubelet.)
    await wait_for(lambda: bool(kubelet.image_gc.removed), what="an image removed")
    remaining = await image_names(node)
    assert EXTRA_IMAGE not in remaining
    assert busybox <= remaining  # the running container's image
    assert pause <= remaining  # the sandbox image
    assert len(kubelet.image_gc.removed) == 1  # the extra image, by its ID
    after = await node.pod("web")
    assert after.status.phase == "Running"
    assert after.status.containerStatuses[0].containerID == \
        before.status.containerStatuses[0].containerID
    # Nothing else can go, and 0% cannot be reached: the node says so.

    async def shortfall_reported() -> bool:
        events = (await node.client.list(core_pb2.Event, namespace="default")).items
        return any(e.reason == "FreeDiskSpaceFailed" and e.involvedObject.kind == "Node"
                   and e.involvedObject.name == NODE for e in events)

    await wait_for(shortfall_reported, what="FreeDiskSpaceFailed on the Node")
