from __future__ import annotations

import math
import time
from collections.abc import Callable
from fnmatch import fnmatchcase

import attrs

from colima_ref.adapters.breaker import ServiceBreaker
from colima_ref.adapters.memory.outage import round_trip
from colima_ref.domain.errors import CacheConnectionError
from colima_ref.domain.models import CacheEntry, ServiceHealth


@attrs.frozen
class _Stored:
    value: str
    expires_at: float | None


@attrs.define
class InMemoryCache:
    """A Cache and HealthProbe over a dict, expiring entries against an injectable clock.

    The remaining ttl is rounded up to whole seconds, so a live entry never reports 0.
    ``delete_matching`` takes glob patterns (``fnmatchcase``; Redis' ``[^x]`` is written ``[!x]``).
    Every call raises CacheConnectionError while ``failing`` is set; with a ``breaker``, every
    call but ``check`` passes through it.
    """

    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    failing: bool = False
    breaker: ServiceBreaker | None = attrs.field(default=None, repr=False)
    _entries: dict[str, _Stored] = attrs.field(factory=dict, init=False, repr=False)

    async def get(self, key: str) -> CacheEntry | None:
        await self._reach("get")
        self._drop_expired()
        stored = self._entries.get(key)
        if stored is None:
            return None
        if stored.expires_at is None:
            return CacheEntry(stored.value, ttl=None)
        return CacheEntry(stored.value, ttl=math.ceil(stored.expires_at - self.clock()))

    async def set(self, key: str, value: str, ttl: int | None = None) -> None:
        await self._reach("set")
        expires_at = None if ttl is None else self.clock() + ttl
        self._entries[key] = _Stored(value, expires_at)

    async def delete(self, key: str) -> bool:
        await self._reach("delete")
        self._drop_expired()
        return self._entries.pop(key, None) is not None

    async def delete_matching(self, pattern: str) -> int:
        await self._reach("delete_matching")
        self._drop_expired()
        doomed = [key for key in self._entries if fnmatchcase(key, pattern)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    async def check(self) -> ServiceHealth:
        self._fail_if_told()
        return ServiceHealth(healthy=True, info={"backend": "memory"})

    def _drop_expired(self) -> None:
        now = self.clock()
        expired = [
            key
            for key, stored in self._entries.items()
            if stored.expires_at is not None and stored.expires_at <= now
        ]
        for key in expired:
            del self._entries[key]

    async def _reach(self, operation: str) -> None:
        await round_trip(self.breaker, self._fail_if_told, operation=operation)

    def _fail_if_told(self) -> None:
        if self.failing:
            raise CacheConnectionError("In-memory cache is set to fail", service="redis")
