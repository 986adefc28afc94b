"""The event loop every long-running component runs on.

uvloop where it is installed (Linux, the default install): its scheduling and
socket writes are several times cheaper than the standard loop's, which is
what a watch fan-out to a thousand clients spends its time on. The standard
loop otherwise; behaviour is the same.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
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


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    tune_gc()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
