"""Reading ``ControllerContext.settings`` (``--setting key=value``, ``--concurrent name=N``)
with clear errors for bad values."""

from __future__ import annotations

from pilothouse.services.controllers.base import ControllerContext

__all__ = ["seconds", "workers"]


def workers(ctx: ControllerContext, name: str) -> int:
    """Workers for controller ``name``: ``concurrent-<name>-syncs``, else ``ctx.workers``."""
    value = ctx.settings.get(f"concurrent-{name}-syncs", ctx.workers)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"setting concurrent-{name}-syncs must be a whole number >= 1, "
                         f"not {value!r}")
    return value


def seconds(ctx: ControllerContext, name: str, default: float) -> float:
    """A duration setting in seconds (a non-negative number)."""
    value = ctx.settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"setting {name} must be a number of seconds, not {value!r}")
    return float(value)
