"""RedisClusterTopology: what a Redis Cluster (or a lone Redis server) reports about itself."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
from redis.asyncio import Redis, RedisCluster

from colima_ref.adapters.redis.client import Address, Client, RedisConnection
from colima_ref.domain.errors import ResourceNotFoundError
from colima_ref.domain.models import ClusterNode, NodeRole, ServiceHealth, SlotRange


@attrs.frozen
class RedisClusterTopology:
    """ClusterTopology and HealthProbe on a shared RedisConnection.

    Node names: ``redis-1``, ``redis-2``... are the connection's configured nodes in order;
    nodes the cluster reports beyond them follow in ``host:port`` order. Any ``host:port`` the
    cluster reports is accepted too. ``node_info`` raises ResourceNotFoundError for other names
    and CacheConnectionError for a named node that is down.

    A standalone server (a connection that is not in cluster mode) is reported as it is, not
    as a cluster: ``nodes`` is that one server as a master owning no slots (its ``run_id`` as
    node id, so the slot report shows coverage 0 and one gap), ``cluster_info`` is the server's
    own ``{"cluster_enabled": 0}``, and ``check`` is healthy when it answers, with
    ``cluster_enabled`` False, ``cluster_state`` None and ``total_nodes`` 1.

    Every call raises CacheConnectionError or TimeoutError as RedisConnection.run does.
    """

    _connection: RedisConnection = attrs.field(alias="connection")

    async def nodes(self) -> list[ClusterNode]:
        """The nodes as CLUSTER NODES shows them to the client's default node."""

        async def nodes(client: Client) -> list[ClusterNode]:
            if not isinstance(client, RedisCluster):
                return [await self._standalone_node(client)]
            await client.initialize()
            text: str = await client.execute_command(
                "CLUSTER", "NODES", target_nodes=client.get_default_node()
            )
            return parse_cluster_nodes(text)

        return await self._connection.run(nodes, operation="nodes")

    async def cluster_info(self) -> Mapping[str, Any]:
        """CLUSTER INFO with numbers as ints; ``{"cluster_enabled": 0}`` for a standalone server."""
        return await self._connection.run(_cluster_info, operation="cluster_info")

    async def node_info(self, node: str) -> Mapping[str, Any]:
        """INFO of the node named ``node`` (``redis-2`` or ``127.0.0.1:7002``).

        Asks CLUSTER NODES first for the node list, then the node itself on a connection of
        its own, so a replica the client never routes to answers too.
        """
        if self._connection.cluster:
            discovered = [(found.host, found.port) for found in await self.nodes()]
            address = self._resolve(node, self._connection.nodes, discovered)
        else:
            # A standalone client talks to the first configured node only.
            address = self._resolve(node, self._connection.nodes[:1])

        async def info(client: Redis) -> Mapping[str, Any]:
            found: dict[str, Any] = await client.info()
            return found

        return await self._connection.run_on_node(address, info, operation="node_info")

    async def check(self) -> ServiceHealth:
        """Healthy when the cluster state is ``ok``; see ``cluster_health``."""
        return await cluster_health(self._connection)

    @staticmethod
    def _resolve(
        name: str, configured: Sequence[Address], discovered: Iterable[Address] = ()
    ) -> Address:
        extra = sorted(set(discovered) - set(configured))
        named = {f"redis-{n}": node for n, node in enumerate((*configured, *extra), start=1)}
        if name in named:
            return named[name]
        host, _, port = name.rpartition(":")
        if port.isdigit() and (host, int(port)) in named.values():
            return host, int(port)
        raise ResourceNotFoundError(f"Unknown Redis node {name!r}", {"node": name})

    async def _standalone_node(self, client: Client) -> ClusterNode:
        info = await client.info()
        host, port = self._connection.nodes[0]
        role: NodeRole = "master" if info.get("role") == "master" else "replica"
        return ClusterNode(
            node_id=str(info["run_id"]),
            host=host,
            port=port,
            role=role,
            flags=("myself", "master" if role == "master" else "slave"),
        )


async def cluster_health(connection: RedisConnection) -> ServiceHealth:
    """The ``redis`` health the contract shows: cluster_enabled, cluster_state, total_nodes."""
    # A probe bypasses the circuit breaker, so a recovered cluster shows healthy at once.
    info = await connection.run(_cluster_info, operation="check", probe=True)
    if not connection.cluster:
        return ServiceHealth(
            healthy=True,
            info={"cluster_enabled": False, "cluster_state": None, "total_nodes": 1},
        )
    state = info.get("cluster_state")
    return ServiceHealth(
        healthy=state == "ok",
        info={
            "cluster_enabled": True,
            "cluster_state": state,
            "total_nodes": info.get("cluster_known_nodes", 0),
        },
        error=None if state == "ok" else f"cluster_state is {state}",
    )


async def _cluster_info(client: Client) -> Mapping[str, Any]:
    if not isinstance(client, RedisCluster):
        standalone: dict[str, Any] = await client.info("cluster")
        return standalone
    await client.initialize()
    text: str = await client.execute_command(
        "CLUSTER", "INFO", target_nodes=client.get_default_node()
    )
    return parse_cluster_info(text)


def parse_cluster_nodes(text: str) -> list[ClusterNode]:
    """CLUSTER NODES lines as ClusterNodes.

    A node still in handshake, neither master nor replica yet, is left out, and so are the
    ``[slot->-id]`` / ``[slot-<-id]`` entries of slots being migrated or imported.
    """
    nodes: list[ClusterNode] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        node_id, address, flag_text, master, ping_sent, pong_recv, epoch, link, *slots = fields
        flags = tuple(flag_text.split(","))
        role: NodeRole
        if "master" in flags:
            role = "master"
        elif "slave" in flags:
            role = "replica"
        else:
            continue
        host, port = _split_address(address)
        nodes.append(
            ClusterNode(
                node_id=node_id,
                host=host,
                port=port,
                role=role,
                flags=flags,
                master_id=None if master == "-" else master,
                ping_sent=ping_sent,
                pong_recv=pong_recv,
                config_epoch=int(epoch),
                link_state=link,
                slots=tuple(_slot_range(slot) for slot in slots if not slot.startswith("[")),
            )
        )
    return nodes


def parse_cluster_info(text: str) -> dict[str, Any]:
    """CLUSTER INFO's ``key:value`` lines, integers as ints (the contract shows numbers)."""
    info: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            # isdecimal accepts what the regex \d+ does (Unicode decimal digits), without a regex.
            digits = value[1:] if value[:1] == "-" else value
            info[key] = int(value) if digits.isdecimal() else value
    return info


def _split_address(address: str) -> Address:
    # ip:port@cport[,hostname]; the host may be an IPv6 address full of colons.
    host, _, port = address.partition("@")[0].rpartition(":")
    return host, int(port)


def _slot_range(text: str) -> SlotRange:
    start, _, end = text.partition("-")
    return SlotRange(int(start), int(end or start))
