"""A small in-process copy of recently served cached responses, in front of the shared cache."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from typing import Generic, TypeVar

Value = TypeVar("Value")

NEAR_TTL = 1.0  # seconds an answer is served from process memory before the cache is asked again
MAX_ENTRIES = 1024


class NearCache(Generic[Value]):
    """Entries kept for at most ``ttl`` seconds, at most ``max_entries`` of them (oldest out).

    The shared cache (Redis) is the truth; this saves its round trip for the hottest keys, so
    another process's invalidation is seen here at most ``ttl`` later. An entry never outlives
    its own expiry in the shared cache by more than ``ttl``.
    """

    def __init__(
        self,
        *,
        ttl: float = NEAR_TTL,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, Value]] = {}

    def get(self, key: str) -> Value | None:
        """The value kept for ``key``, unless it has expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        return value

    def put(self, key: str, value: Value, ttl: float | None = None) -> None:
        """Keep ``value`` for ``min(ttl, the near TTL)`` seconds."""
        lifetime = self._ttl if ttl is None else min(ttl, self._ttl)
        entries = self._entries
        entries.pop(key, None)
        while len(entries) >= self._max_entries:
            # Dicts keep insertion order, so the first key is the oldest entry.
            del entries[next(iter(entries))]
        entries[key] = (self._clock() + lifetime, value)

    def discard_matching(self, pattern: str) -> int:
        """Drop the entries whose keys match the glob ``pattern``; how many went."""
        matching = [key for key in self._entries if fnmatch.fnmatchcase(key, pattern)]
        for key in matching:
            del self._entries[key]
        return len(matching)

    def __len__(self) -> int:
        return len(self._entries)
