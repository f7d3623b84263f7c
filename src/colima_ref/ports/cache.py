from __future__ import annotations

from typing import Protocol

from colima_ref.domain.models import CacheEntry


class Cache(Protocol):
    """String values by key with an optional time to live in seconds.

    Raises CacheConnectionError when the cache cannot be reached, TimeoutError when it is too slow.
    """

    async def get(self, key: str) -> CacheEntry | None: ...

    async def set(self, key: str, value: str, ttl: int | None = None) -> None: ...

    async def delete(self, key: str) -> bool: ...

    async def delete_matching(self, pattern: str) -> int:
        """Delete every key matching a glob pattern (``cache:vault:*``); returns how many went."""
        ...
