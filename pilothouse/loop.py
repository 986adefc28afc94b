"""The event loop every long-running component runs on.

uvloop where it is installed (Linux, the default install): its scheduling and
socket writes are several times cheaper than the standard loop's, which is
what a watch fan-out to a thousand clients spends its time on. The standard
loop otherwise; behaviour is the same.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


# Components hold many long-lived objects (caches of every object, informers) and
# allocate many short-lived acyclic ones per request, which reference counting
# frees. With CPython's default thresholds (700, 10, 10) a full collection that
# walks every cached object ran in the middle of a watch fan-out (148 ms with
# 1000 watchers). Collect cyclic garbage less often; ``freeze_startup_heap``
# moves what exists after start-up out of the collector's way for good.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_startup_heap() -> None:
    """Call once a component has loaded its caches: those objects live for the
    process's lifetime, so no collection needs to walk them again."""
    gc.collect()
    gc.freeze()


# -- the apiserver's collector policy ------------------------------------------------
#
# A cache that keeps growing after start-up (the apiserver's watch cache fills as
# objects are created) brings the full-collection pause back: each full
# collection walks every unfrozen long-lived object — 25-55 ms of CPU with 6-10k
# pods, growing with the store. And a young generation of 50,000 objects costs
# up to ~20 ms per walk.
#
# The policy: a young generation small enough to walk in a few milliseconds, and
# the older generations frozen whenever they hold ``freeze_at`` objects (checked
# after every collection: collections are what promote objects into them). Every
# collection, full ones included, then walks at most the young generation plus
# that many older objects, however big the cache. Objects reach the older
# generations only by surviving a collection, so what is frozen was alive;
# acyclic objects are still freed by reference counting when they die (every
# cached object is, when it is replaced or deleted). The price: an object frozen
# while alive that later becomes part of an unreachable cycle is never reclaimed
# — in practice a few in-flight requests' objects per freeze, and freezes come
# only after ``freeze_at`` new surviving objects.
HEAP_GC_THRESHOLDS = (5_000, 10, 10)
HEAP_FREEZE_AT = 4_000


class GrowingHeapPolicy:
    """Freezes the older generations once they are big (see the comment above).

    ``install()`` registers it as a ``gc`` callback; ``uninstall()`` removes it.
    ``freezes`` counts the freezes it made; ``frozen`` is the last size frozen.
    """

    def __init__(self, *, freeze_at: int = HEAP_FREEZE_AT,
                 freeze: Callable[[], None] = gc.freeze,
                 older: Callable[[], int] | None = None) -> None:
        self.freeze_at = freeze_at
        self._freeze = freeze
        self._older = older or _older_generations
        self.freezes = 0
        self.frozen = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        del info
        if phase != "stop":
            return
        old = self._older()
        if old >= self.freeze_at:
            self._freeze()
            self.freezes += 1
            self.frozen = old

    def install(self) -> GrowingHeapPolicy:
        if self not in gc.callbacks:
            gc.callbacks.append(self)
        return self

    def uninstall(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


def _older_generations() -> int:
    return len(gc.get_objects(generation=1)) + len(gc.get_objects(generation=2))


def tune_gc_for_growing_heap(*, freeze_at: int = HEAP_FREEZE_AT) -> GrowingHeapPolicy:
    """The apiserver's policy: a small young generation, the older ones frozen
    once big. Call after ``freeze_startup_heap``. Returns the installed policy."""
    gc.set_threshold(*HEAP_GC_THRESHOLDS)
    return GrowingHeapPolicy(freeze_at=freeze_at).install()


# A thread that finishes a blocking call (SQLite, a socket) while another runs
# Python code waits for the GIL up to the switch interval (5 ms by default) each
# time. The storage writer makes four or five such calls per commit, so with the
# loop busy a one-row commit took 15-40 ms of waiting for 0.5 ms of work, and
# every create waits for its commit. A shorter interval hands the GIL over sooner.
SWITCH_INTERVAL = 0.0005


def shorten_switch_interval(seconds: float = SWITCH_INTERVAL) -> None:
    sys.setswitchinterval(seconds)


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    tune_gc()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
