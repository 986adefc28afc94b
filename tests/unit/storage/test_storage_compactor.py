"""Periodic compaction: the retention windows, with an injected clock."""

from __future__ import annotations

import pytest

from pilothouse.storage import CompactedError, CompactionPolicy, Compactor, MemoryStorage
from pilothouse.storage.compactor import compaction_target

POLICY = CompactionPolicy(interval_seconds=60, retain_seconds=300, retain_revisions=10)


@pytest.mark.parametrize(
    ("samples", "now", "current", "target"),
    [
        ([], 0, 0, 0),
        ([(0, 100)], 299, 200, 0),  # nothing is 5 minutes old yet
        ([(0, 100)], 300, 200, 100),  # the sample at t=0 is exactly old enough
        ([(0, 100), (60, 150), (120, 180)], 400, 200, 150),
        ([(0, 100), (60, 150)], 1000, 155, 145),  # the revision window is the tighter one
        ([(0, 5)], 1000, 8, 0),  # fewer revisions than the window keeps
    ],
    ids=["empty", "too-young", "just-old-enough", "newest-old-sample", "by-count", "short"],
)
def test_compaction_target(
    samples: list[tuple[float, int]], now: float, current: int, target: int
) -> None:
    assert compaction_target(samples, now, current, POLICY) == target


@pytest.mark.parametrize(
    "kwargs",
    [{"interval_seconds": 0}, {"retain_seconds": -1}, {"retain_revisions": -1}],
    ids=["interval", "seconds", "revisions"],
)
def test_bad_policies(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CompactionPolicy(**kwargs)  # type: ignore[arg-type]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def write(store: MemoryStorage, n: int) -> None:
    for _ in range(n):
        await store.update("/k", b"x", expected_revision=0)


async def test_ticks_compact_what_left_both_windows() -> None:
    store = MemoryStorage()
    await store.create("/k", b"x")
    clock = FakeClock()
    compactor = Compactor(store, policy=POLICY, clock=clock)
    ticks: list[int] = []
    for _ in range(8):  # a minute apart, 20 writes a minute
        await write(store, 20)
        ticks.append(await compactor.tick())
        clock.now += 60
    # the tick at t=0 saw revision 21; it is old enough at t=300 (tick 6): compact to 21,
    # then to 41 one tick later
    assert ticks == [0, 0, 0, 0, 0, 21, 41, 61]
    with pytest.raises(CompactedError):
        await store.get("/k", revision=60)
    assert (await store.get("/k", revision=61)) is not None
    assert len(compactor._samples) <= 300 / 60 + 1


async def test_run_stops_when_the_store_closes() -> None:
    store = MemoryStorage()
    await store.close()
    await Compactor(store, policy=POLICY).run()
