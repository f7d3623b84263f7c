from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from colima_ref.domain.models import ClusterNode


class ClusterTopology(Protocol):
    """What a Redis Cluster reports about itself.

    ``node_info`` takes a configured node name (``redis-1``) or a ``host:port`` address and raises
    ResourceNotFoundError for anything else. All raise CacheConnectionError when the cluster
    cannot be reached.
    """

    async def nodes(self) -> list[ClusterNode]: ...

    async def cluster_info(self) -> Mapping[str, Any]: ...

    async def node_info(self, node: str) -> Mapping[str, Any]: ...
