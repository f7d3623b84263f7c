"""The O(1) in-memory moving window behaves as limits' moving window does."""

from __future__ import annotations

import limits
from limits.aio.strategies import MovingWindowRateLimiter

from colima_ref.http.middleware.moving_window import SWEEP_INTERVAL, MovingWindowMemoryStorage


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_hits_past_the_limit_are_refused_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    limiter = MovingWindowRateLimiter(MovingWindowMemoryStorage(clock=clock))
    item = limits.parse("3/minute")

    allowed = []
    for _ in range(4):
        allowed.append(await limiter.hit(item, "client"))
        clock.now += 10
    clock.now = 1_000.0 + 60.5  # the first hit (at 1000) has left, the second (1010) has not

    assert allowed == [True, True, True, False]
    assert await limiter.hit(item, "client") is True
    assert await limiter.hit(item, "client") is False


async def test_window_stats_report_the_oldest_hit_in_the_window_and_what_remains() -> None:
    clock = Clock()
    limiter = MovingWindowRateLimiter(MovingWindowMemoryStorage(clock=clock))
    item = limits.parse("5/minute")
    await limiter.hit(item, "client")
    clock.now += 7
    await limiter.hit(item, "client")

    stats = await limiter.get_window_stats(item, "client")

    assert (stats.reset_time, stats.remaining) == (1_000.0 + 60, 3)


async def test_an_empty_window_starts_now_with_the_whole_quota() -> None:
    clock = Clock()
    limiter = MovingWindowRateLimiter(MovingWindowMemoryStorage(clock=clock))
    item = limits.parse("5/minute")

    stats = await limiter.get_window_stats(item, "nobody")

    assert (stats.reset_time, stats.remaining) == (clock.now + 60, 5)


async def test_keys_are_counted_apart_and_clear_forgets_one() -> None:
    limiter = MovingWindowRateLimiter(MovingWindowMemoryStorage(clock=Clock()))
    item = limits.parse("1/minute")
    await limiter.hit(item, "a")
    await limiter.hit(item, "b")

    await limiter.clear(item, "a")

    assert await limiter.hit(item, "a") is True
    assert await limiter.hit(item, "b") is False


async def test_a_cost_larger_than_the_limit_is_refused_without_counting() -> None:
    storage = MovingWindowMemoryStorage(clock=Clock())

    assert await storage.acquire_entry("k", limit=2, expiry=60, amount=3) is False
    assert await storage.get_moving_window("k", 2, 60) == (1_000.0, 0)


async def test_keys_nobody_hits_again_are_dropped_by_the_periodic_sweep() -> None:
    clock = Clock()
    storage = MovingWindowMemoryStorage(clock=clock)
    await storage.acquire_entry("idle", limit=5, expiry=60)
    clock.now += SWEEP_INTERVAL + 61

    await storage.acquire_entry("busy", limit=5, expiry=60)

    assert await storage.reset() == 1


async def test_a_key_keeps_a_bounded_number_of_buckets_however_many_hits() -> None:
    clock = Clock()
    storage = MovingWindowMemoryStorage(clock=clock)
    for _ in range(20_000):
        clock.now += 0.001  # 1,000 hits a second for 20 s
        assert await storage.acquire_entry("busy", limit=1_000_000, expiry=60) is True

    window = storage._windows["busy"]

    assert window.count == 20_000
    # One bucket per 60 ms (a thousandth of the window) instead of one entry per hit.
    assert len(window.buckets) <= 20 / 0.060 + 1
    assert await storage.get_moving_window("busy", 1_000_000, 60) == (
        window.buckets[0][0],
        20_000,
    )


async def test_hits_sharing_a_bucket_leave_the_window_together_at_most_a_bucket_early() -> None:
    clock = Clock()
    storage = MovingWindowMemoryStorage(clock=clock)
    await storage.acquire_entry("k", limit=10, expiry=60)  # opens a bucket at 1000.0
    clock.now += 0.05  # within the same 60 ms bucket
    await storage.acquire_entry("k", limit=10, expiry=60)

    clock.now = 1_000.0 + 59.99
    assert (await storage.get_moving_window("k", 10, 60))[1] == 2
    clock.now = 1_000.0 + 60.0
    assert await storage.get_moving_window("k", 10, 60) == (clock.now, 0)


async def test_one_call_counts_the_hit_and_reports_the_window() -> None:
    clock = Clock()
    storage = MovingWindowMemoryStorage(clock=clock)

    first = storage.hit("k", limit=2, expiry=60)
    clock.now += 1
    second = storage.hit("k", limit=2, expiry=60)
    refused = storage.hit("k", limit=2, expiry=60)

    assert first == (True, 1_000.0, 1)
    assert second == (True, 1_000.0, 2)
    assert refused == (False, 1_000.0, 2)
