"""Helpers every test tier shares."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], within: float = 30.0,
                   what: str = "condition") -> None:
    """Poll ``predicate`` (plain or async) until it is true; fail after ``within`` seconds.

    Tests wait for conditions, never for a guessed sleep; ``within`` is only the
    point at which waiting any longer means the test failed.
    """
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.02)


def wait_until(predicate: Callable[[], bool], within: float = 30.0,
               what: str = "condition") -> None:
    """``wait_for`` for synchronous tests: poll until true, fail after ``within`` s."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        time.sleep(0.02)
