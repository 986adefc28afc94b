"""Helpers shared by plugins."""

from __future__ import annotations

from pilothouse.services.scheduler.framework import Status

__all__ = ["default_normalize_score"]


def default_normalize_score(max_priority: int, reverse: bool, scores: list[int]) -> Status | None:
    """Scale scores so the highest becomes ``max_priority`` (reversed: the lowest)."""
    top = max(scores, default=0)
    if top <= 0:
        if reverse:
            scores[:] = [max_priority] * len(scores)
        return None
    if reverse:
        scores[:] = [max_priority - max_priority * s // top for s in scores]
    else:
        scores[:] = [max_priority * s // top for s in scores]
    return None
