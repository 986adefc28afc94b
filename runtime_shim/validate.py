"""Request checks done before a backend sees a request (pure; raise ``InvalidArgument``).

Only shape is checked here — required fields and well-formed values; whether
an ID exists is the backend's business (``NotFound``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim.errors import InvalidArgument


def _need(value: object, what: str) -> None:
    if not value:
        raise InvalidArgument(f"{what} is required")


def _sandbox_config(config: cri.PodSandboxConfig, where: str) -> None:
    _need(config.ByteSize() and config.HasField("metadata"), f"{where}.metadata")
    meta = config.metadata
    _need(meta.name, f"{where}.metadata.name")
    _need(meta.namespace, f"{where}.metadata.namespace")
    _need(meta.uid, f"{where}.metadata.uid")
    if meta.attempt < 0:
        raise InvalidArgument(f"{where}.metadata.attempt must not be negative")
    for i, port in enumerate(config.port_mappings):
        if not 0 < port.container_port < 65536 or not 0 <= port.host_port < 65536:
            raise InvalidArgument(f"{where}.port_mappings[{i}] has a port out of range")


def run_pod_sandbox(req: cri.RunPodSandboxRequest) -> None:
    _need(req.HasField("config"), "config")
    _sandbox_config(req.config, "config")


def create_container(req: cri.CreateContainerRequest) -> None:
    _need(req.pod_sandbox_id, "pod_sandbox_id")
    _need(req.HasField("config"), "config")
    config = req.config
    _need(config.HasField("metadata") and config.metadata.name, "config.metadata.name")
    _need(config.HasField("image") and config.image.image, "config.image.image")
    for i, mount in enumerate(config.mounts):
        if not mount.container_path.startswith("/"):
            raise InvalidArgument(f"config.mounts[{i}].container_path must be absolute")
        if not mount.host_path.startswith("/"):
            raise InvalidArgument(f"config.mounts[{i}].host_path must be absolute")
    for i, env in enumerate(config.envs):
        if not env.key or "=" in env.key:
            raise InvalidArgument(f"config.envs[{i}].key {env.key!r} is not a variable name")
    resources = config.linux.resources
    if resources.cpu_quota < -1 or resources.cpu_period < 0 or resources.cpu_shares < 0:
        raise InvalidArgument("config.linux.resources has a negative CPU value")
    if resources.memory_limit_in_bytes < 0:
        raise InvalidArgument("config.linux.resources.memory_limit_in_bytes is negative")


def _container_id(req: Any) -> None:
    _need(req.container_id, "container_id")


def _sandbox_id(req: Any) -> None:
    _need(req.pod_sandbox_id, "pod_sandbox_id")


def stop_container(req: cri.StopContainerRequest) -> None:
    _need(req.container_id, "container_id")
    if req.timeout < 0:
        raise InvalidArgument("timeout must not be negative")


def exec_sync(req: cri.ExecSyncRequest) -> None:
    _need(req.container_id, "container_id")
    _need(list(req.cmd), "cmd")
    if req.timeout < 0:
        raise InvalidArgument("timeout must not be negative")


def exec_(req: cri.ExecRequest) -> None:
    _need(req.container_id, "container_id")
    _need(list(req.cmd), "cmd")
    if not (req.stdin or req.stdout or req.stderr):
        raise InvalidArgument("one of stdin, stdout or stderr must be set")


def image_spec(req: Any) -> None:
    _need(req.HasField("image") and req.image.image, "image.image")


# RPC name -> check; RPCs without an entry need no check.
CHECKS: dict[str, Callable[[Any], None]] = {
    "RunPodSandbox": run_pod_sandbox,
    "StopPodSandbox": _sandbox_id,
    "RemovePodSandbox": _sandbox_id,
    "PodSandboxStatus": _sandbox_id,
    "PodSandboxStats": _sandbox_id,
    "PortForward": _sandbox_id,
    "CreateContainer": create_container,
    "StartContainer": _container_id,
    "StopContainer": stop_container,
    "RemoveContainer": _container_id,
    "ContainerStatus": _container_id,
    "ContainerStats": _container_id,
    "UpdateContainerResources": _container_id,
    "ReopenContainerLog": _container_id,
    "ExecSync": exec_sync,
    "Exec": exec_,
    "Attach": _container_id,
    "CheckpointContainer": _container_id,
    "ImageStatus": image_spec,
    "PullImage": image_spec,
    "RemoveImage": image_spec,
}
