"""ImageLocality: favour nodes that already have the pod's images, weighted by size and
by how widely the image is spread (an image on every node says little)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pilothouse.services.scheduler.framework import (
    MAX_NODE_SCORE,
    CycleState,
    Handle,
    NodeInfo,
    PodInfo,
    Status,
)
from pilothouse.services.scheduler.framework.types import normalized_image_name
from pilothouse.services.scheduler.plugins.names import IMAGE_LOCALITY

__all__ = ["ImageLocality", "calculate_priority"]

MB: Final = 1024 * 1024
MIN_THRESHOLD: Final = 23 * MB
MAX_CONTAINER_THRESHOLD: Final = 1000 * MB
_KEY: Final = "PreScore" + IMAGE_LOCALITY


def calculate_priority(sum_scores: int, num_containers: int) -> int:
    max_threshold = MAX_CONTAINER_THRESHOLD * num_containers
    if sum_scores < MIN_THRESHOLD:
        sum_scores = MIN_THRESHOLD
    elif sum_scores > max_threshold:
        sum_scores = max_threshold
    return MAX_NODE_SCORE * (sum_scores - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)


class ImageLocality:
    name = IMAGE_LOCALITY
    #: Scores in [0, 100] by construction (the framework skips its range check).
    SCORES_IN_RANGE: Final = True

    def __init__(self, args: Mapping[str, Any] | None = None,
                 handle: Handle | None = None) -> None:
        self.handle = handle or Handle()

    def _images(self, pod: PodInfo) -> list[str]:
        spec = pod.pod.spec
        return [normalized_image_name(c.image) for c in (*spec.initContainers, *spec.containers)]

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        state.write(_KEY, self._images(pod))
        return None

    def score(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> int:
        images: list[str] | None = state.get(_KEY)
        if images is None:
            images = self._images(pod)
        if not images:
            return 0
        if not ni.image_states:
            return calculate_priority(0, len(images))
        total_nodes = max(len(self.handle.snapshot), 1)
        total = 0
        for name in images:
            st = ni.image_states.get(name)
            if st is not None:
                total += int(st.size * (st.num_nodes / total_nodes))
        return calculate_priority(total, len(images))

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        images: list[str] | None = state.get(_KEY)
        if images is None:
            images = self._images(pod)
        if not images:
            return [0] * len(nodes)
        nothing = calculate_priority(0, len(images))
        known = self.handle.snapshot.images
        if known is not None and not any(name in known for name in images):
            return [nothing] * len(nodes)  # no node has any of them
        f = self.score
        return [nothing if not ni.image_states else f(state, pod, ni) for ni in nodes]
