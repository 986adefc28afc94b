"""An in-memory :class:`RuntimeBackend` for tests (the kubelet's and the shim's own).

It keeps the CRI's state machine — sandboxes READY/NOTREADY, containers
CREATED → RUNNING → EXITED, idempotent stop/remove, NotFound for unknown IDs,
events — without processes. Tests drive what a real runtime would do on its
own through :meth:`FakeBackend.exit` (a container's process ends) and
:attr:`FakeBackend.exec_results`; :attr:`FakeBackend.calls` records every call.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim import filters
from pilothouse.runtime_shim.errors import FailedPrecondition, NotFound, Unimplemented
from pilothouse.runtime_shim.events import EventHub


class FakeBackend:
    name = "fake"

    def __init__(self, images: list[str] | None = None) -> None:
        self.sandboxes: dict[str, cri.PodSandboxStatus] = {}
        self.containers: dict[str, cri.ContainerStatus] = {}
        self.container_sandbox: dict[str, str] = {}
        self.images: dict[str, cri.Image] = {}
        self.exec_results: dict[tuple[str, ...], cri.ExecSyncResponse] = {}
        self.calls: list[str] = []
        self.events = EventHub()
        self._ids = itertools.count(1)
        for name in images or []:
            self.add_image(name)

    # -- test controls -----------------------------------------------------------
    def add_image(self, name: str) -> cri.Image:
        image = cri.Image(id=f"sha256:{next(self._ids):064x}", repo_tags=[name], size=1000)
        self.images[image.id] = image
        return image

    def exit(self, container_id: str, code: int, reason: str = "") -> None:
        """The container's process ends with ``code``."""
        status = self.containers[container_id]
        if status.state == cri.CONTAINER_RUNNING:
            status.state = cri.CONTAINER_EXITED
            status.exit_code = code
            status.finished_at = time.time_ns()
            status.reason = reason or ("Completed" if code == 0 else "Error")
            self._publish(container_id, cri.CONTAINER_STOPPED_EVENT)

    def _new_id(self) -> str:
        return f"{next(self._ids):064x}"

    def _sandbox(self, sandbox_id: str) -> cri.PodSandboxStatus:
        if sandbox_id not in self.sandboxes:
            raise NotFound(f"pod sandbox {sandbox_id!r} not found")
        return self.sandboxes[sandbox_id]

    def _container(self, container_id: str) -> cri.ContainerStatus:
        if container_id not in self.containers:
            raise NotFound(f"container {container_id!r} not found")
        return self.containers[container_id]

    def _image(self, ref: str) -> cri.Image | None:
        for image in self.images.values():
            if ref == image.id or ref in image.repo_tags:
                return image
        return None

    def _publish(self, container_id: str, kind: cri.ContainerEventType.ValueType) -> None:
        event = cri.ContainerEventResponse(container_id=container_id, container_event_type=kind,
                                           created_at=time.time_ns())
        sandbox_id = self.container_sandbox.get(container_id, "")
        if sandbox_id in self.sandboxes:
            event.pod_sandbox_status.CopyFrom(self.sandboxes[sandbox_id])
        self.events.publish(event)

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        self.calls.append("start")

    async def close(self) -> None:
        self.events.close()

    async def version(self, req: cri.VersionRequest) -> cri.VersionResponse:
        return cri.VersionResponse(version="0.1.0", runtime_name="fake", runtime_version="0",
                                   runtime_api_version="v1")

    async def status(self, req: cri.StatusRequest) -> cri.StatusResponse:
        return cri.StatusResponse(status=cri.RuntimeStatus(conditions=[
            cri.RuntimeCondition(type="RuntimeReady", status=True),
            cri.RuntimeCondition(type="NetworkReady", status=True)]))

    async def runtime_config(self, req: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
        resp = cri.RuntimeConfigResponse()
        resp.linux.cgroup_driver = cri.CgroupDriver.Value("CGROUPFS")
        return resp

    async def update_runtime_config(
        self, req: cri.UpdateRuntimeConfigRequest
    ) -> cri.UpdateRuntimeConfigResponse:
        return cri.UpdateRuntimeConfigResponse()

    # -- sandboxes -----------------------------------------------------------------
    async def run_pod_sandbox(self, req: cri.RunPodSandboxRequest) -> cri.RunPodSandboxResponse:
        self.calls.append("RunPodSandbox")
        sandbox_id = self._new_id()
        n = len(self.sandboxes) + 2
        status = cri.PodSandboxStatus(
            id=sandbox_id, metadata=req.config.metadata, state=cri.SANDBOX_READY,
            created_at=time.time_ns(), labels=req.config.labels,
            annotations=req.config.annotations, runtime_handler=req.runtime_handler)
        status.network.ip = f"10.88.{n // 256}.{n % 256}"
        self.sandboxes[sandbox_id] = status
        return cri.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)

    async def stop_pod_sandbox(
        self, req: cri.StopPodSandboxRequest
    ) -> cri.StopPodSandboxResponse:
        self.calls.append("StopPodSandbox")
        if req.pod_sandbox_id in self.sandboxes:
            for cid, sid in self.container_sandbox.items():
                if sid == req.pod_sandbox_id:
                    self.exit(cid, 137)
            self.sandboxes[req.pod_sandbox_id].state = cri.SANDBOX_NOTREADY
        return cri.StopPodSandboxResponse()

    async def remove_pod_sandbox(
        self, req: cri.RemovePodSandboxRequest
    ) -> cri.RemovePodSandboxResponse:
        self.calls.append("RemovePodSandbox")
        await self.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=req.pod_sandbox_id))
        for cid in [c for c, s in self.container_sandbox.items() if s == req.pod_sandbox_id]:
            await self.remove_container(cri.RemoveContainerRequest(container_id=cid))
        self.sandboxes.pop(req.pod_sandbox_id, None)
        return cri.RemovePodSandboxResponse()

    async def pod_sandbox_status(
        self, req: cri.PodSandboxStatusRequest
    ) -> cri.PodSandboxStatusResponse:
        status = self._sandbox(req.pod_sandbox_id)
        return cri.PodSandboxStatusResponse(status=status, timestamp=time.time_ns())

    async def list_pod_sandbox(self, req: cri.ListPodSandboxRequest) -> cri.ListPodSandboxResponse:
        flt = req.filter if req.HasField("filter") else None
        items = []
        for s in self.sandboxes.values():
            item = cri.PodSandbox(id=s.id, metadata=s.metadata, state=s.state,
                                  created_at=s.created_at, labels=s.labels,
                                  annotations=s.annotations, runtime_handler=s.runtime_handler)
            if filters.sandbox_matches(flt, item):
                items.append(item)
        return cri.ListPodSandboxResponse(items=items)

    # -- containers ----------------------------------------------------------------
    async def create_container(
        self, req: cri.CreateContainerRequest
    ) -> cri.CreateContainerResponse:
        self.calls.append("CreateContainer")
        sandbox = self._sandbox(req.pod_sandbox_id)
        if sandbox.state != cri.SANDBOX_READY:
            raise FailedPrecondition(f"pod sandbox {sandbox.id} is not ready")
        image = self._image(req.config.image.image)
        if image is None:
            raise NotFound(f"image {req.config.image.image!r} is not present")
        cid = self._new_id()
        self.containers[cid] = cri.ContainerStatus(
            id=cid, metadata=req.config.metadata, state=cri.CONTAINER_CREATED,
            created_at=time.time_ns(), image=req.config.image, image_ref=image.id,
            image_id=image.id, labels=req.config.labels, annotations=req.config.annotations,
            mounts=req.config.mounts, log_path=req.config.log_path)
        self.container_sandbox[cid] = sandbox.id
        self._publish(cid, cri.CONTAINER_CREATED_EVENT)
        return cri.CreateContainerResponse(container_id=cid)

    async def start_container(self, req: cri.StartContainerRequest) -> cri.StartContainerResponse:
        self.calls.append("StartContainer")
        status = self._container(req.container_id)
        if status.state != cri.CONTAINER_CREATED:
            raise FailedPrecondition(f"container {status.id} is not CREATED")
        status.state = cri.CONTAINER_RUNNING
        status.started_at = time.time_ns()
        self._publish(status.id, cri.CONTAINER_STARTED_EVENT)
        return cri.StartContainerResponse()

    async def stop_container(self, req: cri.StopContainerRequest) -> cri.StopContainerResponse:
        self.calls.append("StopContainer")
        if req.container_id in self.containers:
            self.exit(req.container_id, 143 if req.timeout > 0 else 137)
        return cri.StopContainerResponse()

    async def remove_container(
        self, req: cri.RemoveContainerRequest
    ) -> cri.RemoveContainerResponse:
        self.calls.append("RemoveContainer")
        if req.container_id in self.containers:
            self.exit(req.container_id, 137)
            self._publish(req.container_id, cri.CONTAINER_DELETED_EVENT)
            self.containers.pop(req.container_id)
            self.container_sandbox.pop(req.container_id, None)
        return cri.RemoveContainerResponse()

    async def list_containers(self, req: cri.ListContainersRequest) -> cri.ListContainersResponse:
        flt = req.filter if req.HasField("filter") else None
        out = []
        for cid, s in self.containers.items():
            item = cri.Container(id=cid, pod_sandbox_id=self.container_sandbox[cid],
                                 metadata=s.metadata, image=s.image, image_ref=s.image_ref,
                                 image_id=s.image_id, state=s.state, created_at=s.created_at,
                                 labels=s.labels, annotations=s.annotations)
            if filters.container_matches(flt, item):
                out.append(item)
        return cri.ListContainersResponse(containers=out)

    async def container_status(
        self, req: cri.ContainerStatusRequest
    ) -> cri.ContainerStatusResponse:
        return cri.ContainerStatusResponse(status=self._container(req.container_id))

    async def update_container_resources(
        self, req: cri.UpdateContainerResourcesRequest
    ) -> cri.UpdateContainerResourcesResponse:
        self._container(req.container_id).resources.linux.CopyFrom(req.linux)
        return cri.UpdateContainerResourcesResponse()

    async def reopen_container_log(
        self, req: cri.ReopenContainerLogRequest
    ) -> cri.ReopenContainerLogResponse:
        self._container(req.container_id)
        return cri.ReopenContainerLogResponse()

    async def exec_sync(self, req: cri.ExecSyncRequest) -> cri.ExecSyncResponse:
        status = self._container(req.container_id)
        if status.state != cri.CONTAINER_RUNNING:
            raise FailedPrecondition(f"container {status.id} is not running")
        return self.exec_results.get(tuple(req.cmd), cri.ExecSyncResponse())

    async def exec(self, req: cri.ExecRequest) -> cri.ExecResponse:
        raise Unimplemented("the fake runtime has no streaming server")

    async def attach(self, req: cri.AttachRequest) -> cri.AttachResponse:
        raise Unimplemented("the fake runtime has no streaming server")

    async def port_forward(self, req: cri.PortForwardRequest) -> cri.PortForwardResponse:
        raise Unimplemented("the fake runtime has no streaming server")

    async def checkpoint_container(
        self, req: cri.CheckpointContainerRequest
    ) -> cri.CheckpointContainerResponse:
        raise Unimplemented("the fake runtime cannot checkpoint")

    # -- stats ---------------------------------------------------------------------
    def _stats(self, cid: str) -> cri.ContainerStats:
        s = self.containers[cid]
        stats = cri.ContainerStats()
        stats.attributes.id = cid
        stats.attributes.metadata.CopyFrom(s.metadata)
        stats.cpu.timestamp = stats.memory.timestamp = time.time_ns()
        stats.memory.working_set_bytes.value = 1 << 20
        return stats

    async def container_stats(self, req: cri.ContainerStatsRequest) -> cri.ContainerStatsResponse:
        self._container(req.container_id)
        return cri.ContainerStatsResponse(stats=self._stats(req.container_id))

    async def list_container_stats(
        self, req: cri.ListContainerStatsRequest
    ) -> cri.ListContainerStatsResponse:
        return cri.ListContainerStatsResponse(stats=[self._stats(c) for c in self.containers])

    async def pod_sandbox_stats(
        self, req: cri.PodSandboxStatsRequest
    ) -> cri.PodSandboxStatsResponse:
        sandbox = self._sandbox(req.pod_sandbox_id)
        stats = cri.PodSandboxStats()
        stats.attributes.id = sandbox.id
        stats.attributes.metadata.CopyFrom(sandbox.metadata)
        return cri.PodSandboxStatsResponse(stats=stats)

    async def list_pod_sandbox_stats(
        self, req: cri.ListPodSandboxStatsRequest
    ) -> cri.ListPodSandboxStatsResponse:
        out = []
        for sid in self.sandboxes:
            resp = await self.pod_sandbox_stats(cri.PodSandboxStatsRequest(pod_sandbox_id=sid))
            out.append(resp.stats)
        return cri.ListPodSandboxStatsResponse(stats=out)

    async def list_metric_descriptors(
        self, req: cri.ListMetricDescriptorsRequest
    ) -> cri.ListMetricDescriptorsResponse:
        return cri.ListMetricDescriptorsResponse()

    async def list_pod_sandbox_metrics(
        self, req: cri.ListPodSandboxMetricsRequest
    ) -> cri.ListPodSandboxMetricsResponse:
        return cri.ListPodSandboxMetricsResponse()

    def container_events(self) -> AsyncIterator[cri.ContainerEventResponse]:
        return self.events.subscribe()

    # -- images --------------------------------------------------------------------
    async def list_images(self, req: cri.ListImagesRequest) -> cri.ListImagesResponse:
        return cri.ListImagesResponse(images=list(self.images.values()))

    async def image_status(self, req: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        image = self._image(req.image.image)
        return cri.ImageStatusResponse(image=image) if image else cri.ImageStatusResponse()

    async def pull_image(self, req: cri.PullImageRequest) -> cri.PullImageResponse:
        self.calls.append("PullImage")
        image = self._image(req.image.image) or self.add_image(req.image.image)
        return cri.PullImageResponse(image_ref=image.id)

    async def remove_image(self, req: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
        image = self._image(req.image.image)
        if image is not None:
            self.images.pop(image.id)
        return cri.RemoveImageResponse()

    async def image_fs_info(self, req: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
        return cri.ImageFsInfoResponse()
