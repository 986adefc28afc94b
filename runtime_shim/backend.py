"""The boundary between the CRI servicers and a container runtime.

A backend speaks the CRI's own messages (``runtime.v1``): each method takes the
request of one RPC and returns its response, so the servicers stay a thin
mapping of errors to status codes and a reader who knows the CRI knows this
interface. Failures are :mod:`pilothouse.runtime_shim.errors` exceptions:
``NotFound`` for an unknown ID, ``InvalidArgument`` for a malformed request,
``Unimplemented`` for what this backend cannot do (never a wrong success).

Contracts shared by every method:

* IDs are the full IDs the backend returned; a unique prefix is also accepted.
* ``stop_*`` and ``remove_*`` are idempotent: stopping or removing what is
  already stopped or gone succeeds.
* Methods may be called concurrently; a backend serialises what must be.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri


class RuntimeBackend(Protocol):
    """A container runtime behind the CRI (process, containerd, or a test fake)."""

    name: str

    async def start(self) -> None:
        """Load persisted state, re-adopt running containers; called once before serving."""

    async def close(self) -> None:
        """Stop background work; running containers keep running."""

    # -- runtime --------------------------------------------------------------
    async def version(self, req: cri.VersionRequest) -> cri.VersionResponse:
        """Runtime name and version; ``runtime_api_version`` is ``v1``."""

    async def status(self, req: cri.StatusRequest) -> cri.StatusResponse:
        """``RuntimeReady`` and ``NetworkReady`` conditions; a false one carries a reason."""

    async def runtime_config(self, req: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
        """The cgroup driver the kubelet must match."""

    async def update_runtime_config(
        self, req: cri.UpdateRuntimeConfigRequest
    ) -> cri.UpdateRuntimeConfigResponse:
        """Accept the pod CIDR the kubelet learned from its Node."""

    # -- sandboxes ------------------------------------------------------------
    async def run_pod_sandbox(self, req: cri.RunPodSandboxRequest) -> cri.RunPodSandboxResponse:
        """Create and start a sandbox (namespaces, network, IP); returns its ID."""

    async def stop_pod_sandbox(
        self, req: cri.StopPodSandboxRequest
    ) -> cri.StopPodSandboxResponse:
        """Kill its containers and release its network. Idempotent; unknown ID succeeds."""

    async def remove_pod_sandbox(
        self, req: cri.RemovePodSandboxRequest
    ) -> cri.RemovePodSandboxResponse:
        """Stop (if needed) and delete the sandbox and its containers. Idempotent."""

    async def pod_sandbox_status(
        self, req: cri.PodSandboxStatusRequest
    ) -> cri.PodSandboxStatusResponse:
        """State, IP, namespaces; ``NotFound`` for an unknown ID."""

    async def list_pod_sandbox(self, req: cri.ListPodSandboxRequest) -> cri.ListPodSandboxResponse:
        """Sandboxes matching the filter (ID, state, labels)."""

    # -- containers -----------------------------------------------------------
    async def create_container(
        self, req: cri.CreateContainerRequest
    ) -> cri.CreateContainerResponse:
        """Prepare a container in a ready sandbox from a local image; state CREATED."""

    async def start_container(self, req: cri.StartContainerRequest) -> cri.StartContainerResponse:
        """Run a CREATED container; fails if its process cannot be started."""

    async def stop_container(self, req: cri.StopContainerRequest) -> cri.StopContainerResponse:
        """SIGTERM (or the image's stop signal), SIGKILL after ``timeout`` s. Idempotent."""

    async def remove_container(
        self, req: cri.RemoveContainerRequest
    ) -> cri.RemoveContainerResponse:
        """Kill if running, delete its files and cgroups. Idempotent."""

    async def list_containers(self, req: cri.ListContainersRequest) -> cri.ListContainersResponse:
        """Containers matching the filter (ID, sandbox, state, labels)."""

    async def container_status(
        self, req: cri.ContainerStatusRequest
    ) -> cri.ContainerStatusResponse:
        """State, times, exit code and reason (``Completed``, ``Error``, ``OOMKilled``)."""

    async def update_container_resources(
        self, req: cri.UpdateContainerResourcesRequest
    ) -> cri.UpdateContainerResourcesResponse:
        """Apply new cgroup limits to a container."""

    async def reopen_container_log(
        self, req: cri.ReopenContainerLogRequest
    ) -> cri.ReopenContainerLogResponse:
        """Make the container's log writer open its log path afresh (after rotation)."""

    async def exec_sync(self, req: cri.ExecSyncRequest) -> cri.ExecSyncResponse:
        """Run a command in a running container, wait, return its output and exit code."""

    async def exec(self, req: cri.ExecRequest) -> cri.ExecResponse:
        """A streaming-server URL for an interactive exec."""

    async def attach(self, req: cri.AttachRequest) -> cri.AttachResponse:
        """A streaming-server URL to attach to a container's stdio."""

    async def port_forward(self, req: cri.PortForwardRequest) -> cri.PortForwardResponse:
        """A streaming-server URL to forward ports into a sandbox."""

    async def checkpoint_container(
        self, req: cri.CheckpointContainerRequest
    ) -> cri.CheckpointContainerResponse:
        """Checkpoint a container (CRIU); backends may answer ``Unimplemented``."""

    # -- stats and events -----------------------------------------------------
    async def container_stats(self, req: cri.ContainerStatsRequest) -> cri.ContainerStatsResponse:
        """CPU and memory from the container's cgroup."""

    async def list_container_stats(
        self, req: cri.ListContainerStatsRequest
    ) -> cri.ListContainerStatsResponse:
        """Stats of every container matching the filter."""

    async def pod_sandbox_stats(
        self, req: cri.PodSandboxStatsRequest
    ) -> cri.PodSandboxStatsResponse:
        """CPU, memory and process count of a sandbox and its containers."""

    async def list_pod_sandbox_stats(
        self, req: cri.ListPodSandboxStatsRequest
    ) -> cri.ListPodSandboxStatsResponse:
        """Stats of every sandbox matching the filter."""

    async def list_metric_descriptors(
        self, req: cri.ListMetricDescriptorsRequest
    ) -> cri.ListMetricDescriptorsResponse:
        """Descriptors of the metrics ``list_pod_sandbox_metrics`` returns."""

    async def list_pod_sandbox_metrics(
        self, req: cri.ListPodSandboxMetricsRequest
    ) -> cri.ListPodSandboxMetricsResponse:
        """Prometheus-style metrics per sandbox."""

    def container_events(self) -> AsyncIterator[cri.ContainerEventResponse]:
        """Events from now on: created, started, stopped, deleted. A subscriber that
        falls too far behind has its stream ended and must re-list."""

    # -- images ---------------------------------------------------------------
    async def list_images(self, req: cri.ListImagesRequest) -> cri.ListImagesResponse:
        """Images in the local store matching the filter."""

    async def image_status(self, req: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        """The image, or an empty response (not an error) when it is not present."""

    async def pull_image(self, req: cri.PullImageRequest) -> cri.PullImageResponse:
        """Make the image present: already stored succeeds at once; else fetch it from
        its registry (OCI distribution API), failing fast when unreachable."""

    async def remove_image(self, req: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
        """Delete the image. Idempotent; fails while a container uses it."""

    async def image_fs_info(self, req: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
        """Usage of the filesystems that hold images and container layers."""
