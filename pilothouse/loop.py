"""The event loop every long-running component runs on.

uvloop where it is installed (Linux, the default install): its scheduling and
socket writes are several times cheaper than the standard loop's, which is
what a watch fan-out to a thousand clients spends its time on. The standard
loop otherwise; behaviour is the same.

Importing this module also turns gRPC's fork handlers off for the process and
the children it starts (``disable_grpc_fork_support``, below), provided it is
imported before gRPC. ``run_event_loop`` enables ``faulthandler``, so a
component that crashes leaves the Python stacks of its threads in its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


# -- gRPC and fork() ------------------------------------------------------------------
#
# gRPC's C core (grpcio 1.80-1.85 at least) installs pthread_atfork handlers: before
# each fork() it quiesces its EventEngine threads, and in the child it starts them
# again (thread pool and poller: five threads in a child that only means to exec).
# Those threads run on state copied mid-flight from the parent, and now and then one
# dies with SIGSEGV (null read in cygrpc, thread "event_engine") before exec replaces
# the child. uvloop spawns with fork() (libuv), so `pilothouse up`, whose in-process
# apiserver serves gRPC while its supervisor starts the components, lost about one
# component start in forty this way: "exited with code -11", empty log (measured:
# 57 of 300 children of a busy uvloop+gRPC process; none with the handlers off). The
# handlers exist for children that go on using gRPC without exec; no pilothouse
# process does that, so they are turned off. gRPC reads the setting once, when it is
# imported: it must be in the environment before ``import grpc``. This module is
# imported before gRPC by `pilothouse up` and by the components that run on
# ``run_event_loop``; the supervisor also puts the setting in the environment of
# every component it starts (whatever their import order), and children inherit it.
GRPC_FORK_SUPPORT_ENV = "GRPC_ENABLE_FORK_SUPPORT"


def disable_grpc_fork_support() -> bool:
    """Turn gRPC's fork handlers off for this process (unless the environment already
    says otherwise) and for the processes it starts.

    Returns False when gRPC had been imported before and the variable was not in
    the environment: the setting then reaches only the children (this process's
    gRPC has read its configuration already).
    """
    in_time = GRPC_FORK_SUPPORT_ENV in os.environ or "grpc" not in sys.modules
    os.environ.setdefault(GRPC_FORK_SUPPORT_ENV, "0")
    return in_time


# Whether this process's gRPC got the setting (see above): done when this module is
# first imported, which must come before ``import grpc``.
GRPC_FORK_SETTING_IN_TIME = disable_grpc_fork_support()


def enable_faulthandler() -> None:
    """A fatal signal (SIGSEGV, SIGBUS, SIGABRT, ...) prints every thread's Python
    stack on stderr — a component's log — before the process dies."""
    if faulthandler.is_enabled() or sys.stderr is None:
        return
    # no usable stderr file descriptor: nowhere to write a stack to
    with contextlib.suppress(AttributeError, OSError, RuntimeError, ValueError):
        faulthandler.enable()


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
    enable_faulthandler()
    tune_gc()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
