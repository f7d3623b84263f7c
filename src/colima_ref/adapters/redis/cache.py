"""RedisCache: the Cache port on plain string keys of Redis or a Redis Cluster."""

from __future__ import annotations

from typing import Any

import attrs

from colima_ref.adapters.redis.client import Client, RedisConnection
from colima_ref.adapters.redis.cluster import cluster_health
from colima_ref.domain.models import CacheEntry, ServiceHealth

# GET and TTL in one command: one round trip, routed by the key, with no expiry in between. A
# cluster pipeline would do the first two, but when one node fails redis-py answers by closing
# the connections of every node, failing the commands the healthy masters were answering.
_GET_WITH_TTL = "return {redis.call('GET', KEYS[1]), redis.call('TTL', KEYS[1])}"
_NO_EXPIRY = -1
_MISSING = -2
_SCAN_COUNT = 500
_DELETE_BATCH = 500


@attrs.frozen
class RedisCache:
    """Cache and HealthProbe on a shared RedisConnection.

    ``get`` runs GET and TTL in one Lua script (EVAL, so the login needs ``@scripting``).
    Commands on one key go through the circuit breaker of the node owning it, so keys on the
    masters that answer keep working while another fails over.
    A ttl of 0 or less deletes the key at once, as an immediate expiry would. ``delete_matching``
    takes Redis glob patterns and SCANs every primary of a cluster, deleting in batches; it runs
    within one operation timeout, so it suits the small key sets of a response cache.

    Raises CacheConnectionError and TimeoutError as RedisConnection.run does.
    """

    _connection: RedisConnection = attrs.field(alias="connection")

    async def get(self, key: str) -> CacheEntry | None:
        async def read(client: Client) -> list[Any]:
            reply: list[Any] = await client.eval(_GET_WITH_TTL, 1, key)
            return reply

        value, ttl = await self._connection.run(read, operation="get", key=key)
        if value is None or ttl == _MISSING:
            return None
        return CacheEntry(value, ttl=None if ttl == _NO_EXPIRY else ttl)

    async def set(self, key: str, value: str, ttl: int | None = None) -> None:
        if ttl is not None and ttl <= 0:
            await self.delete(key)
            return
        await self._connection.run(
            lambda client: client.set(key, value, ex=ttl), operation="set", key=key
        )

    async def delete(self, key: str) -> bool:
        removed: int = await self._connection.run(
            lambda client: client.delete(key), operation="delete", key=key
        )
        return removed > 0

    async def delete_matching(self, pattern: str) -> int:
        async def delete_all(client: Client) -> int:
            removed = 0
            batch: list[str] = []
            # On a RedisCluster, SCAN goes to every primary and scan_iter follows each cursor.
            async for key in client.scan_iter(match=pattern, count=_SCAN_COUNT):
                batch.append(key)
                if len(batch) >= _DELETE_BATCH:
                    removed += await client.delete(*batch)
                    batch.clear()
            if batch:
                removed += await client.delete(*batch)
            return removed

        return await self._connection.run(delete_all, operation="delete_matching")

    async def check(self) -> ServiceHealth:
        """The same health as RedisClusterTopology.check."""
        return await cluster_health(self._connection)
