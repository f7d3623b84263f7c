"""An in-process moving window for ``limits`` that costs O(1) per hit, and a bounded amount of
memory per key, however high the quota."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from limits.aio.storage import MemoryStorage

SWEEP_INTERVAL = 60.0  # seconds between drops of keys whose every hit has expired
# Hits less than this part of the window apart share one bucket, so a key holds at most about
# this many buckets. The price: a hit may leave the window up to expiry/BUCKETS_PER_WINDOW
# early (60 ms of a minute).
BUCKETS_PER_WINDOW = 1000


class _Window:
    """One key's hits: buckets ``[first hit's time, hits]`` oldest first, and their total."""

    __slots__ = ("buckets", "count", "expiry", "resolution")

    def __init__(self, expiry: int) -> None:
        self.buckets: deque[list[float]] = deque()
        self.count = 0
        self.expiry = expiry
        self.resolution = expiry / BUCKETS_PER_WINDOW

    def drop_expired(self, now: float) -> None:
        buckets = self.buckets
        oldest_kept = now - self.expiry
        while buckets and buckets[0][0] <= oldest_kept:
            self.count -= int(buckets.popleft()[1])

    def start(self, now: float) -> float:
        return self.buckets[0][0] if self.buckets else now


class MovingWindowMemoryStorage(MemoryStorage):
    """limits' ``async+memory`` storage with its moving window replaced.

    limits keeps each key's hits newest first in a list, inserts every hit at the front and
    schedules, per hit, a sweep that bisects every key's list in a worker thread: O(hits in the
    window) per request, the largest single cost of a request under a high quota, and a float
    object per hit (20 MB at 6,000 requests/s under a per-minute quota). Here a key holds
    buckets of hits, oldest first: a hit joins the newest bucket or opens one, expired buckets
    leave from the left, and the window's start and count are the first bucket's time and a
    running total. The fixed window and sliding window counter strategies use limits' code
    unchanged.

    Record from the event-loop thread only: the windows take no lock.
    """

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        *,
        clock: Callable[[], float] = time.time,
        **options: str,
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._next_sweep = clock() + SWEEP_INTERVAL

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Record ``amount`` hits on ``key`` unless that would pass ``limit`` within ``expiry``
        seconds; whether they were recorded."""
        allowed, _, _ = self.hit(key, limit, expiry, amount)
        return allowed

    def hit(self, key: str, limit: int, expiry: int, amount: int = 1) -> tuple[bool, float, int]:
        """`acquire_entry` and `get_moving_window` in one call, for the middleware: whether
        the hits were recorded, and then the window's start and count."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(expiry)
        # drop_expired inlined, and the adding done here: this runs on every request.
        buckets = window.buckets
        oldest_kept = now - expiry
        while buckets and buckets[0][0] <= oldest_kept:
            window.count -= int(buckets.popleft()[1])
        allowed = amount <= limit and window.count + amount <= limit
        if allowed:
            if buckets and now - buckets[-1][0] < window.resolution:
                buckets[-1][1] += amount
            else:
                buckets.append([now, amount])
            window.count += amount
        return allowed, buckets[0][0] if buckets else now, window.count

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """When the oldest hit still in the window happened, and how many hits it holds
        (now and 0 for an empty window)."""
        now = self._clock()
        window = self._current(key, expiry, now)
        return window.start(now), window.count

    async def clear(self, key: str) -> None:
        """Forget every hit of ``key``."""
        self._windows.pop(key, None)
        await super().clear(key)

    async def reset(self) -> int | None:
        """Forget every hit of every key; how many keys there were."""
        windows = len(self._windows)
        self._windows.clear()
        return max(windows, await super().reset() or 0)

    def _current(self, key: str, expiry: int, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(expiry)
        else:
            window.drop_expired(now)
        return window

    def _sweep(self, now: float) -> None:
        # A key nobody hits again would otherwise keep its window for the life of the process.
        self._next_sweep = now + SWEEP_INTERVAL
        for key, window in list(self._windows.items()):
            window.drop_expired(now)
            if not window.buckets:
                del self._windows[key]
