"""RedisCache and RedisClusterTopology against real Redis: the private cluster of
tests/conftest.py, 6379 and the devstack. Logins, timeouts and shutdown are in the contract suite
(tests/contract/test_logins.py, test_outages.py).

The 6-node cluster runs on free loopback ports (servers/redis.py), so ACL changes, killed
connections and servers coming up late never disturb the shared devstack. The application logs in
as an ACL user of its own; the servers' admin is the ``default`` user.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import hvac
import pytest
import requests
from live_support import credentials_for, skip_or_fail
from servers.redis import (
    Account,
    Address,
    PrivateCluster,
    RedisServer,
    free_node_port,
    redis_account,
    wait_for,
)

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.redis import RedisCache, RedisClusterTopology, RedisConnection
from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.domain.errors import (
    CacheConnectionError,
    ResourceNotFoundError,
    ValidationError,
)
from colima_ref.domain.models import SLOT_COUNT, ClusterNode, SlotRange
from colima_ref.domain.slots import distribute

pytestmark = [pytest.mark.redis, pytest.mark.integration]

VAULT_ADDR = os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200")
VAULT_TOKEN = os.environ.get("VAULT_TOKEN", "root")
STANDALONE_PORT = 6379


@pytest.fixture
async def account(redis_private_cluster: PrivateCluster) -> AsyncIterator[Account]:
    """An ACL user of this test's own on every node, deleted afterwards."""
    async with redis_account(redis_private_cluster) as created:
        yield created


def open_connection(
    nodes: Sequence[Address], credentials: CredentialSource, **options: Any
) -> AbstractAsyncContextManager[RedisConnection]:
    return RedisConnection.open(nodes=nodes, credentials=credentials, **options)


async def test_the_private_clusters_slots_are_fully_covered_by_three_masters(
    redis_private_cluster: PrivateCluster, account: Account
) -> None:
    async with open_connection(
        redis_private_cluster.addresses[:3], credentials_for("redis-1", account.secret())
    ) as redis_:
        report = distribute(await RedisClusterTopology(redis_).nodes())

    assert report.coverage_percentage == 100.0
    assert (report.gaps, report.overlaps) == ((), ())
    assert len(report.slots_per_master) == 3
    assert all(len(shard.replicas) == 1 for shard in report.shards)


async def test_node_names_follow_the_configured_nodes_then_the_others_by_address(
    redis_private_cluster: PrivateCluster, account: Account
) -> None:
    configured = redis_private_cluster.addresses[:3]
    others = sorted(redis_private_cluster.addresses[3:])
    async with open_connection(configured, credentials_for("redis-1", account.secret())) as redis_:
        topology = RedisClusterTopology(redis_)
        ports = {
            name: (await topology.node_info(name))["tcp_port"]
            for name in [f"redis-{number}" for number in range(1, 7)]
        }
        by_address = await topology.node_info(f"127.0.0.1:{others[0][1]}")
        with pytest.raises(ResourceNotFoundError) as caught:
            await topology.node_info("redis-7")

    assert ports == {
        f"redis-{number}": port for number, (_, port) in enumerate([*configured, *others], 1)
    }
    assert by_address["tcp_port"] == others[0][1]
    assert caught.value.details == {"node": "redis-7"}


async def test_cluster_info_and_health_report_the_cluster_in_numbers(
    redis_private_cluster: PrivateCluster, account: Account
) -> None:
    async with open_connection(
        redis_private_cluster.addresses[:3], credentials_for("redis-1", account.secret())
    ) as redis_:
        topology = RedisClusterTopology(redis_)
        info = await topology.cluster_info()
        health = await topology.check()

    assert info["cluster_state"] == "ok"
    assert (info["cluster_known_nodes"], info["cluster_size"]) == (6, 3)
    assert info["cluster_slots_assigned"] == SLOT_COUNT
    assert health.healthy
    assert health.info == {"cluster_enabled": True, "cluster_state": "ok", "total_nodes": 6}


def owner_of(key: str, cluster: PrivateCluster, nodes: Sequence[ClusterNode]) -> RedisServer:
    """The server of the master whose slots hold ``key``."""
    slot = cluster.servers[0].command("CLUSTER", "KEYSLOT", key)
    [port] = [
        node.port
        for node in nodes
        if node.role == "master" and any(r.start <= slot <= r.end for r in node.slots)
    ]
    return next(server for server in cluster.servers if server.port == port)


async def test_a_key_written_through_the_cluster_lands_on_the_master_owning_its_slot(
    redis_private_cluster: PrivateCluster, account: Account
) -> None:
    key = f"colima-test:{secrets.token_hex(8)}"
    credentials = credentials_for("redis-1", account.secret())
    async with open_connection(redis_private_cluster.addresses[:3], credentials) as redis_:
        cache = RedisCache(redis_)
        await cache.set(key, "landed", ttl=60)
        entry = await cache.get(key)
        owner = owner_of(key, redis_private_cluster, await RedisClusterTopology(redis_).nodes())
        with owner.admin() as direct:
            stored, ttl = direct.get(key), direct.ttl(key)
        await cache.delete(key)

    assert entry is not None
    assert entry.value == stored == "landed"
    assert entry.ttl is not None
    assert 55 <= entry.ttl <= 60
    assert 55 <= ttl <= 60


async def test_delete_matching_reaches_keys_on_every_master(
    redis_private_cluster: PrivateCluster, account: Account
) -> None:
    prefix = f"colima-test:{secrets.token_hex(4)}:"
    keys = [f"{prefix}{number}" for number in range(60)]
    credentials = credentials_for("redis-1", account.secret())
    async with open_connection(redis_private_cluster.addresses[:3], credentials) as redis_:
        cache = RedisCache(redis_)
        nodes = await RedisClusterTopology(redis_).nodes()
        for key in keys:
            await cache.set(key, "v", ttl=60)
        await cache.set("colima-test:kept", "v", ttl=60)

        removed = await cache.delete_matching(f"{prefix}*")
        left = [key for key in keys if await cache.get(key) is not None]
        kept = await cache.get("colima-test:kept")
        await cache.delete("colima-test:kept")
    owners = {owner_of(key, redis_private_cluster, nodes).port for key in keys}

    assert len(owners) == 3
    assert (removed, left) == (60, [])
    assert kept is not None


async def test_more_concurrent_commands_than_pooled_connections_wait_and_all_succeed(
    redis_private_cluster: PrivateCluster, account: Account
) -> None:
    key = f"colima-test:{secrets.token_hex(8)}"
    credentials = credentials_for("redis-1", account.secret())
    async with open_connection(
        redis_private_cluster.addresses[:3], credentials, max_connections=2
    ) as redis_:
        cache = RedisCache(redis_)
        await cache.set(key, "shared", ttl=60)
        entries = await asyncio.gather(*(cache.get(key) for _ in range(50)))
        await cache.delete(key)

    assert [entry.value if entry else None for entry in entries] == ["shared"] * 50


async def test_a_cluster_down_at_start_is_used_once_it_comes_up(tmp_path: Path) -> None:
    port = free_node_port()
    late = RedisServer(tmp_path, port, admin_password="")
    async with open_connection(
        [("127.0.0.1", port)], credentials_for("redis-1", {}), cluster=True
    ) as redis_:
        cache = RedisCache(redis_)
        with pytest.raises(CacheConnectionError):
            await cache.get("colima-test:any")
        try:
            late.start()
            late.command("CLUSTER", "ADDSLOTSRANGE", 0, SLOT_COUNT - 1)
            wait_for(lambda: "cluster_state:ok" in late.command("CLUSTER", "INFO"), "cluster ok")

            await cache.set("colima-test:late", "here")
            entry = await cache.get("colima-test:late")
            health = await cache.check()
        finally:
            late.stop()

    assert entry is not None
    assert entry.value == "here"
    assert health.info == {"cluster_enabled": True, "cluster_state": "ok", "total_nodes": 1}


async def test_reading_a_key_that_holds_a_list_is_a_validation_error_naming_the_key(
    redis_private_cluster: PrivateCluster, account: Account
) -> None:
    key = f"colima-test:{secrets.token_hex(4)}"
    async with open_connection(
        redis_private_cluster.addresses[:3], credentials_for("redis-1", account.secret())
    ) as redis_:
        await redis_.run(lambda client: client.rpush(key, "not a string"), operation="rpush")
        try:
            with pytest.raises(ValidationError) as caught:
                await RedisCache(redis_).get(key)
        finally:
            await RedisCache(redis_).delete(key)

    assert caught.value.details == {"field": "key", "cause": "ResponseError"}


async def test_closing_after_talking_to_every_node_leaves_nothing_open(
    redis_private_cluster: PrivateCluster, account: Account
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with open_connection(
            redis_private_cluster.addresses[:3], credentials_for("redis-1", account.secret())
        ) as redis_:
            topology = RedisClusterTopology(redis_)
            for number in range(1, 7):
                await topology.node_info(f"redis-{number}")
            await RedisCache(redis_).delete_matching("colima-test:nothing:*")
        gc.collect()

    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.fixture
async def standalone() -> AsyncIterator[RedisConnection]:
    """The machine's Redis on 6379, without a password."""
    async with open_connection(
        [("127.0.0.1", STANDALONE_PORT)], credentials_for("redis-1", {})
    ) as redis_:
        try:
            await RedisCache(redis_).check()
        except CacheConnectionError as exc:
            skip_or_fail(f"redis 6379 is unreachable ({exc.message})")
        yield redis_


async def test_a_standalone_server_caches_with_ttl(standalone: RedisConnection) -> None:
    cache = RedisCache(standalone)
    key = f"colima-test:{secrets.token_hex(8)}"
    await cache.set(key, "v", ttl=30)

    entry = await cache.get(key)
    removed = await cache.delete_matching(f"{key}*")

    assert entry is not None
    assert entry.value == "v"
    assert entry.ttl is not None
    assert 25 <= entry.ttl <= 30
    assert removed == 1


async def test_a_standalone_server_is_reported_as_one_master_owning_no_slots(
    standalone: RedisConnection,
) -> None:
    topology = RedisClusterTopology(standalone)

    [node] = await topology.nodes()
    report = distribute([node])
    health = await topology.check()
    info = await topology.cluster_info()
    node_info = await topology.node_info("redis-1")

    assert (node.role, node.port, node.slots) == ("master", STANDALONE_PORT, ())
    assert report.coverage_percentage == 0.0
    assert report.gaps == (SlotRange(0, SLOT_COUNT - 1),)
    assert info == {"cluster_enabled": 0}
    assert health.healthy
    assert health.info == {"cluster_enabled": False, "cluster_state": None, "total_nodes": 1}
    assert (node_info["tcp_port"], node_info["redis_mode"]) == (STANDALONE_PORT, "standalone")
    with pytest.raises(ResourceNotFoundError):
        await topology.node_info("redis-2")


@asynccontextmanager
async def devstack_credentials() -> AsyncIterator[CredentialSource]:
    client = hvac.Client(url=VAULT_ADDR, token=VAULT_TOKEN, timeout=2)
    try:
        client.sys.read_health_status(method="GET")
    except requests.RequestException as exc:
        skip_or_fail(f"vault is unreachable ({type(exc).__name__})")
    finally:
        client.adapter.close()
    async with VaultSecretStore.open(addr=VAULT_ADDR, token=VAULT_TOKEN) as store:
        yield CredentialSource(store)


@pytest.mark.vault
async def test_the_devstack_cluster_with_its_vault_password_covers_every_slot() -> None:
    seeds = os.environ.get("REDIS_NODES") or "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    nodes = [(host, int(port)) for host, _, port in (s.rpartition(":") for s in seeds.split(","))]
    async with devstack_credentials() as credentials, open_connection(nodes, credentials) as redis_:
        topology = RedisClusterTopology(redis_)
        try:
            health = await topology.check()
        except CacheConnectionError as exc:
            skip_or_fail(f"redis cluster is unreachable ({exc.message})")
        key = f"colima-test:{secrets.token_hex(8)}"
        cache = RedisCache(redis_)
        await cache.set(key, "devstack", ttl=30)
        entry = await cache.get(key)
        await cache.delete(key)
        report = distribute(await topology.nodes())

    assert health.healthy, health.error
    assert report.coverage_percentage == 100.0
    assert entry is not None
    assert entry.value == "devstack"
