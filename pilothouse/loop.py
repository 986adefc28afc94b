"""The event loop every long-running component runs on.

uvloop where it is installed (Linux, the default install): its scheduling and
socket writes are several times cheaper than the standard loop's, which is
what a watch fan-out to a thousand clients spends its time on. The standard
loop otherwise; behaviour is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
