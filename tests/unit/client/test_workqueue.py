"""WorkQueue contract (client-go's), driven by a fake clock: no test waits on real time."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from pilothouse.client.clock import AsyncFakeClock
from pilothouse.client.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    ShutDown,
    WorkQueue,
    WorkQueueMetrics,
    default_controller_rate_limiter,
    process_next_item,
    run_worker,
)


@pytest.fixture
def clock() -> AsyncFakeClock:
    return AsyncFakeClock()


def make_queue(clock: AsyncFakeClock, **kw: object) -> WorkQueue[str]:
    return WorkQueue("test", clock=clock, metrics=WorkQueueMetrics(CollectorRegistry()),
                     **kw)  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_fifo_and_duplicates_collapse(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    for item in ["a", "b", "a", "c", "b"]:
        q.add(item)
    assert len(q) == 3
    assert [await q.get(), await q.get(), await q.get()] == ["a", "b", "c"]


async def test_item_is_never_handed_out_twice_at_once(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    q.add("a")
    assert await q.get() == "a"
    q.add("a")  # re-added while processing: deferred
    assert len(q) == 0
    second = asyncio.create_task(q.get())
    await settle()
    assert not second.done()
    q.done("a")
    assert await asyncio.wait_for(second, 1) == "a"
    q.done("a")
    assert len(q) == 0


async def test_readd_while_processing_collapses_to_one(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    q.add("a")
    await q.get()
    q.add("a")
    q.add("a")
    q.done("a")
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0


async def test_done_without_readd_does_not_requeue(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    q.add("a")
    await q.get()
    q.done("a")
    assert len(q) == 0 and q.processing == 0


async def test_waiting_getter_is_woken_by_add(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    getter = asyncio.create_task(q.get())
    await settle()
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_two_workers_get_different_items(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    g1, g2 = asyncio.create_task(q.get()), asyncio.create_task(q.get())
    await settle()
    q.add("a")
    q.add("b")
    assert {await g1, await g2} == {"a", "b"}


async def test_add_after_waits_for_the_clock(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    q.add_after("late", 5.0)
    assert len(q) == 0 and q.waiting == 1
    getter = asyncio.create_task(q.get())
    await clock.wait_for_sleepers(1)
    clock.advance(4.9)
    await settle()
    assert not getter.done()
    clock.advance(0.1)
    assert await asyncio.wait_for(getter, 1) == "late"


async def test_add_after_keeps_the_earliest_deadline(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    q.add_after("a", 10)
    q.add_after("a", 2)
    q.add_after("a", 7)
    clock.advance(2)
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    clock.advance(10)
    assert len(q) == 0  # the superseded deadlines do not add it again


async def test_delayed_items_come_out_in_deadline_order(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    q.add_after("c", 3)
    q.add_after("a", 1)
    q.add_after("b", 2)
    clock.advance(3)
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_add_after_zero_is_immediate(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    q.add_after("now", 0)
    assert len(q) == 1


async def test_getter_sleeping_on_a_later_deadline_wakes_for_an_earlier_one(
        clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    q.add_after("late", 100)
    getter = asyncio.create_task(q.get())
    await clock.wait_for_sleepers(1)
    q.add_after("early", 1)
    await settle()
    clock.advance(1)
    assert await asyncio.wait_for(getter, 1) == "early"


async def test_rate_limited_back_off_is_exponential_per_item(clock: AsyncFakeClock) -> None:
    q = make_queue(clock, rate_limiter=ItemExponentialFailureRateLimiter(0.005, 1000))
    q.add_rate_limited("a")
    assert q.num_requeues("a") == 1
    assert len(q) == 0
    clock.advance(0.005)
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    q.add_rate_limited("a")  # second failure: 10 ms
    clock.advance(0.009)
    assert len(q) == 0
    clock.advance(0.001)
    assert len(q) == 1
    await q.get()
    q.done("a")
    q.forget("a")
    assert q.num_requeues("a") == 0
    q.add_rate_limited("a")
    clock.advance(0.005)
    assert len(q) == 1


@pytest.mark.parametrize(("failures", "expected"), [
    pytest.param(0, 0.005, id="first"),
    pytest.param(1, 0.010, id="second"),
    pytest.param(10, 5.12, id="eleventh"),
    pytest.param(17, 655.36, id="eighteenth"),
    pytest.param(18, 1000.0, id="capped"),
    pytest.param(500, 1000.0, id="far-past-cap"),
])
def test_exponential_limiter_delays(failures: int, expected: float) -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    for _ in range(failures):
        limiter.when("x")
    assert limiter.when("x") == pytest.approx(expected)
    assert limiter.when("other") == pytest.approx(0.005)


def test_bucket_limiter_allows_burst_then_qps(clock: AsyncFakeClock) -> None:
    limiter = BucketRateLimiter(10, 100, clock=clock)
    assert all(limiter.when(i) == 0 for i in range(100))
    assert limiter.when("101") == pytest.approx(0.1)
    assert limiter.when("102") == pytest.approx(0.2)
    clock.advance(0.2)
    assert limiter.when("103") == pytest.approx(0.1)


def test_default_controller_limiter_is_the_max_of_both(clock: AsyncFakeClock) -> None:
    limiter = default_controller_rate_limiter(clock)
    assert isinstance(limiter, MaxOfRateLimiter)
    assert limiter.when("a") == pytest.approx(0.005)
    for i in range(99):
        limiter.when(f"burst{i}")
    # The bucket is empty: a fresh item waits for a token, not just 5 ms.
    assert limiter.when("b") == pytest.approx(0.1)
    assert limiter.num_requeues("a") == 1
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


@pytest.mark.parametrize("bad", [
    pytest.param(lambda: ItemExponentialFailureRateLimiter(0, 1), id="zero-base"),
    pytest.param(lambda: ItemExponentialFailureRateLimiter(2, 1), id="max-below-base"),
    pytest.param(lambda: BucketRateLimiter(0, 1), id="zero-qps"),
    pytest.param(lambda: BucketRateLimiter(1, 0), id="zero-burst"),
    pytest.param(lambda: MaxOfRateLimiter(), id="no-limiters"),
])
def test_bad_limiter_settings_are_clear_errors(bad: object) -> None:
    with pytest.raises(ValueError):
        bad()  # type: ignore[operator]


async def test_shut_down_hands_out_queued_items_then_raises(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    q.add("a")
    q.add_after("delayed", 1)
    q.shut_down()
    q.add("ignored")
    assert await q.get() == "a"
    clock.advance(5)
    with pytest.raises(ShutDown):
        await q.get()
    assert q.shutting_down()


async def test_shut_down_wakes_waiting_getters(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await settle()
    q.shut_down()
    results = await asyncio.gather(*getters, return_exceptions=True)
    assert all(isinstance(r, ShutDown) for r in results)


async def test_shut_down_with_drain_waits_for_in_flight_items(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    q.add("a")
    q.add("b")
    await q.get()
    await q.get()
    drain = asyncio.create_task(q.shut_down_with_drain())
    await settle()
    assert not drain.done()
    q.done("a")
    await settle()
    assert not drain.done()
    q.done("b")
    await asyncio.wait_for(drain, 1)


async def test_drain_of_an_idle_queue_returns_at_once(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    await asyncio.wait_for(q.shut_down_with_drain(), 1)


async def test_cancelled_getter_passes_its_wake_up_on(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await settle()
    q.add("a")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "a"


async def test_worker_retries_failures_and_forgets_successes(clock: AsyncFakeClock) -> None:
    q = make_queue(clock, rate_limiter=ItemExponentialFailureRateLimiter(1, 100))
    attempts: list[str] = []

    async def sync(key: str) -> None:
        attempts.append(key)
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    q.add("k")
    assert await process_next_item(q, sync)
    assert q.num_requeues("k") == 1 and len(q) == 0
    clock.advance(1)
    assert await process_next_item(q, sync)
    assert q.num_requeues("k") == 2
    clock.advance(2)
    assert await process_next_item(q, sync)
    assert q.num_requeues("k") == 0
    assert attempts == ["k", "k", "k"]
    q.shut_down()
    assert not await process_next_item(q, sync)


async def test_workers_never_process_one_key_concurrently(clock: AsyncFakeClock) -> None:
    q = make_queue(clock)
    active: set[str] = set()
    overlaps: list[str] = []
    processed: list[str] = []
    gate = asyncio.Event()

    async def sync(key: str) -> None:
        if key in active:
            overlaps.append(key)
        active.add(key)
        await gate.wait()
        active.discard(key)
        processed.append(key)

    workers = [asyncio.create_task(run_worker(q, sync)) for _ in range(4)]
    for _ in range(3):
        for key in ["a", "b", "a"]:
            q.add(key)
        await settle()
    assert active == {"a", "b"}
    gate.set()
    await settle()
    await q.shut_down_with_drain()
    await asyncio.gather(*workers)
    assert overlaps == []
    # Re-adds during processing ran once more each, after the first run.
    assert sorted(processed) == ["a", "a", "b", "b"]


async def test_metrics_use_client_go_names(clock: AsyncFakeClock) -> None:
    registry = CollectorRegistry()
    q: WorkQueue[str] = WorkQueue("ctrl", clock=clock, metrics=WorkQueueMetrics(registry))

    def value(name: str) -> float | None:
        return registry.get_sample_value(name, {"name": "ctrl"})

    q.add("a")
    q.add("a")
    q.add("b")
    assert value("workqueue_adds_total") == 2
    assert value("workqueue_depth") == 2
    clock.advance(3)
    await q.get()
    assert value("workqueue_depth") == 1
    assert value("workqueue_queue_duration_seconds_count") == 1
    assert value("workqueue_queue_duration_seconds_sum") == pytest.approx(3)
    clock.advance(2)
    q.update_unfinished_work()
    assert value("workqueue_longest_running_processor_seconds") == pytest.approx(2)
    q.done("a")
    assert value("workqueue_work_duration_seconds_sum") == pytest.approx(2)
    q.add_rate_limited("a")
    assert value("workqueue_retries_total") == 1
