"""CrashLoopBackOff timing with a fake clock."""

from __future__ import annotations

import pytest

from pilothouse.client.clock import AsyncFakeClock
from pilothouse.services.kubelet.backoff import Backoff


def test_first_event_is_not_in_back_off_then_delays_double_to_the_cap() -> None:
    clock = AsyncFakeClock()
    b = Backoff(clock=clock, initial=10, maximum=300)
    assert not b.in_backoff_since("k", clock.monotonic())
    delays = []
    for _ in range(8):
        t = clock.monotonic()
        delays.append(b.next("k", t))
        clock.advance(1)
        assert b.in_backoff_since("k", t + 1) or delays[-1] <= 1
        clock.advance(delays[-1])
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]


def test_in_back_off_until_the_delay_has_passed() -> None:
    clock = AsyncFakeClock()
    b = Backoff(clock=clock, initial=10, maximum=300)
    b.next("k", 0.0)
    clock.advance(2)
    b.next("k", 2.0)  # delay 20 from t=2
    clock.advance(19.9)
    assert b.in_backoff_since("k", 2.0)
    assert b.retry_at("k", 2.0) == 22.0
    clock.advance(0.1)
    assert not b.in_backoff_since("k", 2.0)


def test_an_event_long_after_the_last_resets_the_delay() -> None:
    clock = AsyncFakeClock()
    b = Backoff(clock=clock, initial=10, maximum=300, reset_after=600)
    for t in (0.0, 1.0, 2.0):
        b.next("k", t)
    assert b.delay("k") == 40
    clock.advance(700)
    assert not b.in_backoff_since("k", 700.0)
    assert b.next("k", 700.0) == 10


def test_keys_are_independent_and_forgotten_by_prefix() -> None:
    clock = AsyncFakeClock()
    b = Backoff(clock=clock)
    b.next("uid1/a", 0.0)
    b.next("uid2/a", 0.0)
    b.forget_prefix("uid1/")
    assert b.delay("uid1/a") == 0 and b.delay("uid2/a") == 10


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(clock=AsyncFakeClock(), initial=0)
    with pytest.raises(ValueError):
        Backoff(clock=AsyncFakeClock(), initial=10, maximum=5)
