"""Redis and Redis Cluster through redis.asyncio: one shared client, a Cache and a ClusterTopology.

async with RedisConnection.open(nodes=[("127.0.0.1", 7001), ...], credentials=creds) as redis:
    cache, cluster = RedisCache(redis), RedisClusterTopology(redis)
"""

from __future__ import annotations

from colima_ref.adapters.redis.breakers import NodeBreakers
from colima_ref.adapters.redis.cache import RedisCache
from colima_ref.adapters.redis.client import RedisConnection
from colima_ref.adapters.redis.cluster import RedisClusterTopology

__all__ = ["NodeBreakers", "RedisCache", "RedisClusterTopology", "RedisConnection"]
