"""An in-process moving window for ``limits`` that costs O(1) per hit, however high the quota."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable

from limits.aio.storage import MemoryStorage

SWEEP_INTERVAL = 60.0  # seconds between drops of keys whose every hit has expired


class MovingWindowMemoryStorage(MemoryStorage):
    """limits' ``async+memory`` storage with its moving window replaced.

    limits keeps each key's hits newest first in a list, inserts every hit at the front and
    schedules, per hit, a sweep that bisects every key's list in a worker thread: O(hits in the
    window) per request, the largest single cost of a request under a high quota. Here a key
    holds its hit times oldest first in a deque: a hit appends, expired hits leave from the
    left, and the window's start and count are its first element and its length. The fixed
    window and sliding window counter strategies use limits' code unchanged.

    Record from the event-loop thread only: the deques take no lock.
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
        self._windows: dict[str, tuple[deque[float], int]] = {}
        self._next_sweep = clock() + SWEEP_INTERVAL

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Record ``amount`` hits on ``key`` unless that would pass ``limit`` within ``expiry``
        seconds; whether they were recorded."""
        if amount > limit:
            return False
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        hits = self._current(key, expiry, now)
        if len(hits) + amount > limit:
            return False
        hits.extend(itertools.repeat(now, amount))
        return True

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """When the oldest hit still in the window happened, and how many hits it holds
        (now and 0 for an empty window)."""
        now = self._clock()
        hits = self._current(key, expiry, now)
        if not hits:
            return now, 0
        return hits[0], len(hits)

    async def clear(self, key: str) -> None:
        """Forget every hit of ``key``."""
        self._windows.pop(key, None)
        await super().clear(key)

    async def reset(self) -> int | None:
        """Forget every hit of every key; how many keys there were."""
        windows = len(self._windows)
        self._windows.clear()
        return max(windows, await super().reset() or 0)

    def _current(self, key: str, expiry: int, now: float) -> deque[float]:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = (deque(), expiry)
        hits = window[0]
        oldest_kept = now - expiry
        while hits and hits[0] <= oldest_kept:
            hits.popleft()
        return hits

    def _sweep(self, now: float) -> None:
        # A key nobody hits again would otherwise keep its deque for the life of the process.
        self._next_sweep = now + SWEEP_INTERVAL
        for key, (hits, expiry) in list(self._windows.items()):
            if not hits or hits[-1] <= now - expiry:
                del self._windows[key]
