"""PrioritySort: the active queue pops higher priority first, then the oldest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilothouse.services.scheduler.framework import Handle, PodInfo
from pilothouse.services.scheduler.plugins.names import PRIORITY_SORT

__all__ = ["PrioritySort"]


class PrioritySort:
    name = PRIORITY_SORT

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        pass

    def sort_key(self, pod: PodInfo, timestamp: float) -> tuple[int, float]:
        return (-pod.priority, timestamp)
