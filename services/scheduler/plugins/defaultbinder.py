"""DefaultBinder: POST the Binding (``pods/{name}/binding``) through the client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilothouse.client import APIError, ClientError
from pilothouse.services.scheduler.framework import CycleState, Handle, PodInfo, Status
from pilothouse.services.scheduler.plugins.names import DEFAULT_BINDER

__all__ = ["DefaultBinder"]


class DefaultBinder:
    name = DEFAULT_BINDER

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        self.handle = handle or Handle()

    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        client = self.handle.client
        if client is None:
            return Status.as_error("DefaultBinder: no API client", self.name)
        try:
            await client.bind(pod.namespace, pod.name, node_name, pod_uid=pod.uid)
        except (APIError, ClientError) as exc:
            return Status.as_error(exc, self.name)
        return None
