from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from colima_ref.adapters.breaker import ServiceBreaker
from colima_ref.adapters.memory.outage import round_trip
from colima_ref.domain.errors import CacheConnectionError, ResourceNotFoundError
from colima_ref.domain.models import SLOT_COUNT, ClusterNode, ServiceHealth, SlotRange

_PORT = 6379
_MASTER_SLOTS = (SlotRange(0, 5460), SlotRange(5461, 10922), SlotRange(10923, 16383))


def _node_id(name: str) -> str:
    # Stable across runs so responses and tests can name a node by id.
    return hashlib.sha256(name.encode()).hexdigest()[:40]


def _demo_nodes() -> tuple[ClusterNode, ...]:
    """redis-1..3 own the slots, redis-4..6 replicate them in order; the view is redis-1's."""
    masters = tuple(
        ClusterNode(
            node_id=_node_id(f"redis-{number}"),
            host=f"redis-{number}",
            port=_PORT,
            role="master",
            flags=("myself", "master") if number == 1 else ("master",),
            config_epoch=number,
            slots=(slots,),
        )
        for number, slots in enumerate(_MASTER_SLOTS, start=1)
    )
    replicas = tuple(
        ClusterNode(
            node_id=_node_id(f"redis-{number}"),
            host=f"redis-{number}",
            port=_PORT,
            role="replica",
            flags=("slave",),
            master_id=master.node_id,
            config_epoch=number,
        )
        for number, master in enumerate(masters, start=len(masters) + 1)
    )
    return masters + replicas


def _node_lookup(nodes: tuple[ClusterNode, ...]) -> dict[str, ClusterNode]:
    by_name = {node.host: node for node in nodes}
    by_address = {node.address: node for node in nodes}
    return by_name | by_address


@attrs.define
class InMemoryClusterTopology:
    """A ClusterTopology and HealthProbe for a fixed 3-master / 3-replica cluster.

    Nodes are named ``redis-1`` .. ``redis-6`` (also their ``host:port``); redis-1..3 are the
    masters. ``node_info`` raises ResourceNotFoundError for any other name. Every call raises
    CacheConnectionError while ``failing`` is set; with a ``breaker``, every call but ``check``
    passes through it.
    """

    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    failing: bool = False
    breaker: ServiceBreaker | None = attrs.field(default=None, repr=False)
    _nodes: tuple[ClusterNode, ...] = attrs.field(factory=_demo_nodes, init=False, repr=False)
    _started: float = attrs.field(
        default=attrs.Factory(lambda self: self.clock(), takes_self=True), init=False, repr=False
    )

    async def nodes(self) -> list[ClusterNode]:
        await self._reach("nodes")
        return list(self._nodes)

    async def cluster_info(self) -> Mapping[str, Any]:
        await self._reach("cluster_info")
        return self._info()

    def _info(self) -> Mapping[str, Any]:
        masters = [node for node in self._nodes if node.role == "master"]
        assigned = sum(slots.count for node in masters for slots in node.slots)
        myself = next(node for node in self._nodes if "myself" in node.flags)
        return {
            "cluster_state": "ok" if assigned == SLOT_COUNT else "fail",
            "cluster_slots_assigned": assigned,
            "cluster_slots_ok": assigned,
            "cluster_slots_pfail": 0,
            "cluster_slots_fail": 0,
            "cluster_known_nodes": len(self._nodes),
            "cluster_size": sum(1 for node in masters if node.slots),
            "cluster_current_epoch": max(node.config_epoch for node in self._nodes),
            "cluster_my_epoch": myself.config_epoch,
            "cluster_stats_messages_sent": 0,
            "cluster_stats_messages_received": 0,
        }

    async def node_info(self, node: str) -> Mapping[str, Any]:
        await self._reach("node_info")
        found = _node_lookup(self._nodes).get(node)
        if found is None:
            raise ResourceNotFoundError(f"Unknown Redis node {node!r}", {"node": node})
        uptime = int(self.clock() - self._started)
        info: dict[str, Any] = {
            "redis_version": "7.4.0",
            "redis_mode": "cluster",
            "os": "in-memory",
            "arch_bits": 64,
            "tcp_port": found.port,
            "uptime_in_seconds": uptime,
            "uptime_in_days": uptime // 86400,
            "connected_clients": 1,
            "used_memory": 1048576,
            "used_memory_human": "1.00M",
            "cluster_enabled": 1,
        }
        if found.role == "master":
            replicas = sum(1 for other in self._nodes if other.master_id == found.node_id)
            return info | {"role": "master", "connected_slaves": replicas}
        master = next(other for other in self._nodes if other.node_id == found.master_id)
        # Redis 7 INFO still names a replica's role "slave"; callers compare against that.
        return info | {
            "role": "slave",
            "master_host": master.host,
            "master_port": master.port,
            "master_link_status": "up",
        }

    async def check(self) -> ServiceHealth:
        self._fail_if_told()
        info = self._info()
        return ServiceHealth(
            healthy=info["cluster_state"] == "ok",
            info={
                "cluster_enabled": True,
                "cluster_state": info["cluster_state"],
                "total_nodes": info["cluster_known_nodes"],
            },
        )

    async def _reach(self, operation: str) -> None:
        await round_trip(self.breaker, self._fail_if_told, operation=operation)

    def _fail_if_told(self) -> None:
        if self.failing:
            raise CacheConnectionError("In-memory Redis cluster is set to fail", service="redis")
