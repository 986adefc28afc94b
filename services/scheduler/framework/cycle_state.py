"""``CycleState``: per-cycle data shared between one plugin's extension points.

A plugin writes what it pre-computed in PreFilter/PreScore under a private
key and reads it back in Filter/Score. ``clone`` is used by preemption and
nominated-pod checks, which mutate a copy through PreFilterExtensions; values
that are mutated that way implement ``clone()`` (others are shared).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["CycleState", "StateData"]


class StateData(Protocol):
    def clone(self) -> Any:
        """A copy safe to mutate without touching the original."""
        ...


class CycleState:
    __slots__ = ("_data", "record_plugin_metrics", "skip_filter_plugins",
                 "skip_score_plugins")

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self.skip_filter_plugins: set[str] = set()
        self.skip_score_plugins: set[str] = set()
        self.record_plugin_metrics = False

    def write(self, key: str, value: Any) -> None:
        self._data[key] = value

    def read(self, key: str) -> Any:
        """The value under ``key``; ``KeyError`` (a plugin bug) when nothing was written."""
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def clone(self) -> CycleState:
        new = CycleState()
        for key, value in self._data.items():
            clone = getattr(value, "clone", None)
            new._data[key] = clone() if callable(clone) else value
        new.skip_filter_plugins = set(self.skip_filter_plugins)
        new.skip_score_plugins = set(self.skip_score_plugins)
        new.record_plugin_metrics = self.record_plugin_metrics
        return new
