"""The apiserver's collector policy (pilothouse/loop.py): the older generations are
frozen once they hold ``freeze_at`` objects, so no collection walks the whole cache."""

from __future__ import annotations

import gc

import pytest

from pilothouse.loop import GrowingHeapPolicy


def test_freezes_only_once_older_generations_are_big() -> None:
    sizes = iter([10, 3_999, 4_000, 12])
    freezes: list[int] = []
    policy = GrowingHeapPolicy(freeze_at=4_000, freeze=lambda: freezes.append(1),
                               older=lambda: next(sizes))
    for _ in range(4):
        policy("start", {"generation": 0})  # start phases are ignored
        policy("stop", {"generation": 0, "collected": 0, "uncollectable": 0})
    assert freezes == [1]
    assert policy.freezes == 1
    assert policy.frozen == 4_000


@pytest.fixture
def thawed() -> object:
    """Leave the process's collector as it was: thresholds, callbacks, frozen set."""
    thresholds = gc.get_threshold()
    callbacks = list(gc.callbacks)
    # An apiserver started earlier in this process (integration tests run in-process)
    # installed its own policy; it would freeze first and leave this one nothing to see.
    gc.callbacks[:] = [c for c in callbacks if not isinstance(c, GrowingHeapPolicy)]
    yield None
    gc.callbacks[:] = callbacks
    gc.set_threshold(*thresholds)


def test_installed_policy_freezes_surviving_objects(thawed: object) -> None:
    del thawed
    before = gc.get_freeze_count()
    policy = GrowingHeapPolicy(freeze_at=1_000).install()
    try:
        policy.install()  # idempotent
        assert gc.callbacks.count(policy) == 1
        survivors = [[i] for i in range(5_000)]  # tracked objects that stay alive
        gc.collect(0)  # promotes them out of the young generation
        assert policy.freezes >= 1
        assert gc.get_freeze_count() >= before + len(survivors)
    finally:
        policy.uninstall()
    assert policy not in gc.callbacks
