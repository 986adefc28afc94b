"""The kubelet's side of the CRI: ``runtime.v1`` over gRPC, with operation metrics.

The kubelet reaches its container runtime only through this wire protocol,
exactly as Kubernetes' kubelet does, so it runs against our shim or against
containerd's own CRI endpoint. ``RuntimeClient.call("RunPodSandbox", req)``
is every call: it counts and times the operation
(``kubelet_runtime_operations_*``) and turns a gRPC failure into a
``RuntimeError_`` carrying the status code and the runtime's message.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from pilothouse.services.kubelet.metrics import KubeletMetrics

IMAGE_METHODS = frozenset({"ListImages", "ImageStatus", "PullImage", "RemoveImage",
                           "ImageFsInfo"})

# Labels and annotations the kubelet puts on sandboxes and containers, by which it
# finds its pods again after a restart (Kubernetes' own keys).
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
CONTAINER_HASH_ANNOTATION = "io.kubernetes.container.hash"
RESTART_COUNT_ANNOTATION = "io.kubernetes.container.restartCount"
TERMINATION_MESSAGE_PATH_ANNOTATION = "io.kubernetes.container.terminationMessagePath"
GRACE_PERIOD_ANNOTATION = "io.kubernetes.pod.terminationGracePeriod"
CONTAINER_TYPE_ANNOTATION = "io.kubernetes.container.type"  # pilothouse: init|sidecar|regular


class RuntimeError_(Exception):
    """A CRI call failed: ``code`` is the gRPC status, ``message`` the runtime's words."""

    def __init__(self, operation: str, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{operation}: {message or code.name}")
        self.operation = operation
        self.code = code
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.code == grpc.StatusCode.NOT_FOUND


class RuntimeClient:
    def __init__(self, endpoint: str, *, metrics: KubeletMetrics | None = None,
                 timeout: float = 120.0) -> None:
        if not endpoint.startswith("unix://"):
            raise ValueError(f"runtime endpoint must be unix:///path, not {endpoint!r}")
        self.endpoint = endpoint
        self.metrics = metrics or KubeletMetrics()
        self.timeout = timeout
        self.channel = grpc.aio.insecure_channel(endpoint, options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        self.runtime = cri_grpc.RuntimeServiceStub(self.channel)
        self.images = cri_grpc.ImageServiceStub(self.channel)
        self.runtime_name = ""

    async def close(self) -> None:
        await self.channel.close()

    async def call(self, method: str, request: Any, *, rpc_timeout: float | None = None) -> Any:
        stub: Any = self.images if method in IMAGE_METHODS else self.runtime
        op = _snake(method)
        self.metrics.runtime_operations.labels(op).inc()
        start = time.perf_counter()
        try:
            return await getattr(stub, method)(request, timeout=rpc_timeout or self.timeout)
        except grpc.aio.AioRpcError as e:
            self.metrics.runtime_operations_errors.labels(op).inc()
            raise RuntimeError_(method, e.code(), e.details() or "") from None
        finally:
            self.metrics.runtime_operations_duration.labels(op).observe(
                time.perf_counter() - start)

    async def version(self) -> cri.VersionResponse:
        resp: cri.VersionResponse = await self.call("Version", cri.VersionRequest(), rpc_timeout=10)
        self.runtime_name = resp.runtime_name
        return resp

    def container_id_uri(self, container_id: str) -> str:
        """``<runtime>://<id>``, as containerStatuses[].containerID shows it."""
        return f"{self.runtime_name or 'cri'}://{container_id}"

    # -- listing by pod --------------------------------------------------------------

    async def pod_sandboxes(self, pod_uid: str = "") -> list[cri.PodSandbox]:
        flt = cri.PodSandboxFilter()
        if pod_uid:
            flt.label_selector[POD_UID_LABEL] = pod_uid
        resp = await self.call("ListPodSandbox", cri.ListPodSandboxRequest(filter=flt))
        return list(resp.items)

    async def containers(self, pod_uid: str = "") -> list[cri.Container]:
        flt = cri.ContainerFilter()
        if pod_uid:
            flt.label_selector[POD_UID_LABEL] = pod_uid
        resp = await self.call("ListContainers", cri.ListContainersRequest(filter=flt))
        return list(resp.containers)

    async def container_status(self, container_id: str) -> cri.ContainerStatus | None:
        try:
            resp = await self.call("ContainerStatus",
                                   cri.ContainerStatusRequest(container_id=container_id))
        except RuntimeError_ as e:
            if e.not_found:
                return None
            raise
        return resp.status

    async def sandbox_status(self, sandbox_id: str) -> cri.PodSandboxStatus | None:
        try:
            resp = await self.call("PodSandboxStatus",
                                   cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id))
        except RuntimeError_ as e:
            if e.not_found:
                return None
            raise
        return resp.status

    async def exec_sync(self, container_id: str, cmd: list[str],
                        seconds: int) -> cri.ExecSyncResponse:
        resp: cri.ExecSyncResponse = await self.call(
            "ExecSync", cri.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=seconds),
            rpc_timeout=(seconds + 10) if seconds else None)
        return resp


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
