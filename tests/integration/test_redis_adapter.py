"""RedisCache and RedisClusterTopology against real Redis: a private cluster, 6379, the devstack.

The 6-node cluster is started by this module on free loopback ports and stopped by it, so ACL
changes, killed connections and servers coming up late never disturb the shared devstack. The
application logs in as an ACL user of its own; the servers' admin is the ``default`` user.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import secrets
import socket
import subprocess
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import attrs
import hvac
import pytest
import redis
import requests
from live_support import every_text_of

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.adapters.redis import RedisCache, RedisClusterTopology, RedisConnection
from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.domain.errors import (
    CacheConnectionError,
    OperationTimeoutError,
    ResourceNotFoundError,
    ValidationError,
)
from colima_ref.domain.models import SLOT_COUNT, ClusterNode, Secret, SlotRange
from colima_ref.domain.slots import distribute

pytestmark = [pytest.mark.redis, pytest.mark.integration]

VAULT_ADDR = os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200")
VAULT_TOKEN = os.environ.get("VAULT_TOKEN", "root")
STANDALONE_PORT = 6379
Address = tuple[str, int]


def unreachable(service: str, detail: str) -> NoReturn:
    reason = f"{service} is unreachable ({detail})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}. CI=true requires every service", pytrace=False)
    pytest.skip(reason)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_node_port(taken: Sequence[int] = ()) -> int:
    """A port free for a cluster node and for its bus (port + 10000)."""
    while True:
        port = random.randint(20000, 29999)
        if port not in taken and port_is_free(port) and port_is_free(port + 10000):
            return port


def wait_for(condition: Any, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


@attrs.define
class RedisServer:
    """One redis-server process on 127.0.0.1, in the foreground so we own its pid."""

    workdir: Path
    port: int
    admin_password: str = attrs.field(repr=False)
    cluster: bool = True
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        directory = self.workdir / str(self.port)
        directory.mkdir(parents=True, exist_ok=True)
        options = ["--cluster-enabled", "yes", "--cluster-node-timeout", "3000"]
        if self.admin_password:
            options += ["--requirepass", self.admin_password, "--masterauth", self.admin_password]
        with (directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(directory),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    *(options if self.cluster else []),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: self.admin().ping(), f"redis-server on {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def admin(self) -> redis.Redis:
        return redis.Redis(
            port=self.port,
            password=self.admin_password or None,
            decode_responses=True,
            socket_timeout=2,
        )

    def command(self, *args: Any) -> Any:
        with self.admin() as client:
            return client.execute_command(*args)


@attrs.define
class PrivateCluster:
    """Three masters and three replicas; the first three ports are created as the masters."""

    servers: list[RedisServer]

    @property
    def addresses(self) -> list[Address]:
        return [("127.0.0.1", server.port) for server in self.servers]

    def create(self) -> None:
        first = self.servers[0]
        subprocess.run(
            [
                "redis-cli",
                "--no-auth-warning",
                "--cluster",
                "create",
                *(f"127.0.0.1:{server.port}" for server in self.servers),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            env={"PATH": os.environ["PATH"], "REDISCLI_AUTH": first.admin_password},
            check=True,
            capture_output=True,
        )
        wait_for(self.healthy, "a healthy private cluster", within=30)

    def healthy(self) -> bool:
        for server in self.servers:
            info = server.command("CLUSTER", "INFO")
            if (
                "cluster_state:ok" not in info
                or f"cluster_known_nodes:{len(self.servers)}" not in info
            ):
                return False
            replication = server.admin().info("replication")
            if replication["role"] == "slave" and replication["master_link_status"] != "up":
                return False
        return True

    def on_every_node(self, *args: Any) -> None:
        for server in self.servers:
            server.command(*args)


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    workdir = tmp_path_factory.mktemp("redis-cluster")
    admin_password = secrets.token_hex(16)
    ports: list[int] = []
    for _ in range(6):
        ports.append(free_node_port(ports))
    cluster = PrivateCluster([RedisServer(workdir, port, admin_password) for port in ports])
    try:
        for server in cluster.servers:
            server.start()
        cluster.create()
        yield cluster
    finally:
        for server in cluster.servers:
            server.stop()


@attrs.frozen
class Account:
    user: str
    password: str = attrs.field(repr=False)

    def secret(self, password: str | None = None) -> dict[str, str]:
        return {"user": self.user, "password": password or self.password}


@pytest.fixture
def account(private_cluster: PrivateCluster) -> Iterator[Account]:
    """An ACL user of this test's own on every node, deleted afterwards."""
    created = Account(f"colima_test_{secrets.token_hex(4)}", secrets.token_hex(16))
    private_cluster.on_every_node(
        "ACL", "SETUSER", created.user, "on", f">{created.password}", "~*", "&*", "+@all"
    )
    try:
        yield created
    finally:
        private_cluster.on_every_node("ACL", "DELUSER", created.user)


class CountingStore:
    """A SecretStore that counts its reads, to see the adapter ask again after a refusal."""

    def __init__(self, secret: dict[str, str]) -> None:
        self.store = InMemorySecretStore(secrets={"redis-1": secret})
        self.reads = 0

    async def read(self, path: str) -> Secret:
        self.reads += 1
        return await self.store.read(path)


def credentials_for(secret: dict[str, str]) -> CredentialSource:
    return CredentialSource(InMemorySecretStore(secrets={"redis-1": secret}))


def open_connection(
    nodes: Sequence[Address], credentials: CredentialSource, **options: Any
) -> AbstractAsyncContextManager[RedisConnection]:
    return RedisConnection.open(nodes=nodes, credentials=credentials, **options)


async def test_the_private_clusters_slots_are_fully_covered_by_three_masters(
    private_cluster: PrivateCluster, account: Account
) -> None:
    async with open_connection(
        private_cluster.addresses[:3], credentials_for(account.secret())
    ) as redis_:
        report = distribute(await RedisClusterTopology(redis_).nodes())

    assert report.coverage_percentage == 100.0
    assert (report.gaps, report.overlaps) == ((), ())
    assert len(report.slots_per_master) == 3
    assert all(len(shard.replicas) == 1 for shard in report.shards)


async def test_node_names_follow_the_configured_nodes_then_the_others_by_address(
    private_cluster: PrivateCluster, account: Account
) -> None:
    configured = private_cluster.addresses[:3]
    others = sorted(private_cluster.addresses[3:])
    async with open_connection(configured, credentials_for(account.secret())) as redis_:
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
    private_cluster: PrivateCluster, account: Account
) -> None:
    async with open_connection(
        private_cluster.addresses[:3], credentials_for(account.secret())
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
    private_cluster: PrivateCluster, account: Account
) -> None:
    key = f"colima-test:{secrets.token_hex(8)}"
    credentials = credentials_for(account.secret())
    async with open_connection(private_cluster.addresses[:3], credentials) as redis_:
        cache = RedisCache(redis_)
        await cache.set(key, "landed", ttl=60)
        entry = await cache.get(key)
        owner = owner_of(key, private_cluster, await RedisClusterTopology(redis_).nodes())
        with owner.admin() as direct:
            stored, ttl = direct.get(key), direct.ttl(key)
        await cache.delete(key)

    assert entry is not None
    assert entry.value == stored == "landed"
    assert entry.ttl is not None
    assert 55 <= entry.ttl <= 60
    assert 55 <= ttl <= 60


async def test_delete_matching_reaches_keys_on_every_master(
    private_cluster: PrivateCluster, account: Account
) -> None:
    prefix = f"colima-test:{secrets.token_hex(4)}:"
    keys = [f"{prefix}{number}" for number in range(60)]
    credentials = credentials_for(account.secret())
    async with open_connection(private_cluster.addresses[:3], credentials) as redis_:
        cache = RedisCache(redis_)
        nodes = await RedisClusterTopology(redis_).nodes()
        for key in keys:
            await cache.set(key, "v", ttl=60)
        await cache.set("colima-test:kept", "v", ttl=60)

        removed = await cache.delete_matching(f"{prefix}*")
        left = [key for key in keys if await cache.get(key) is not None]
        kept = await cache.get("colima-test:kept")
        await cache.delete("colima-test:kept")
    owners = {owner_of(key, private_cluster, nodes).port for key in keys}

    assert len(owners) == 3
    assert (removed, left) == (60, [])
    assert kept is not None


async def test_more_concurrent_commands_than_pooled_connections_wait_and_all_succeed(
    private_cluster: PrivateCluster, account: Account
) -> None:
    key = f"colima-test:{secrets.token_hex(8)}"
    credentials = credentials_for(account.secret())
    async with open_connection(
        private_cluster.addresses[:3], credentials, max_connections=2
    ) as redis_:
        cache = RedisCache(redis_)
        await cache.set(key, "shared", ttl=60)
        entries = await asyncio.gather(*(cache.get(key) for _ in range(50)))
        await cache.delete(key)

    assert [entry.value if entry else None for entry in entries] == ["shared"] * 50


async def test_a_password_rotated_on_every_node_and_in_the_store_is_used_after_one_rebuild(
    private_cluster: PrivateCluster, account: Account
) -> None:
    store = CountingStore(account.secret())
    rotated = secrets.token_hex(16)
    async with open_connection(private_cluster.addresses[:3], CredentialSource(store)) as redis_:
        cache = RedisCache(redis_)
        await cache.set("colima-test:rotation", "before", ttl=60)
        private_cluster.on_every_node("ACL", "SETUSER", account.user, "resetpass", f">{rotated}")
        store.store.put("redis-1", account.secret(rotated))
        # Redis keeps sessions opened with the old password: end them, as a restart would.
        private_cluster.on_every_node("CLIENT", "KILL", "USER", account.user)

        entry = await cache.get("colima-test:rotation")
        await cache.delete("colima-test:rotation")

    assert entry is not None
    assert entry.value == "before"
    assert store.reads == 2


async def test_a_refused_password_is_read_again_once_then_reported_without_the_password(
    private_cluster: PrivateCluster, account: Account
) -> None:
    wrong = secrets.token_hex(16)
    store = CountingStore(account.secret(wrong))
    async with open_connection(private_cluster.addresses[:3], CredentialSource(store)) as redis_:
        with pytest.raises(CacheConnectionError) as caught:
            await RedisCache(redis_).get("colima-test:any")

    assert caught.value.message == "Redis refused the credentials from the secret store"
    assert caught.value.details == {"service": "redis", "cause": "AuthenticationError"}
    assert store.reads == 2
    assert wrong not in every_text_of(caught.value)


async def test_an_unreachable_cluster_opens_then_fails_fast_with_cache_connection_error() -> None:
    closed = [("127.0.0.1", free_node_port()) for _ in range(3)]
    async with open_connection(closed, credentials_for({})) as redis_:
        started = time.monotonic()
        with pytest.raises(CacheConnectionError) as caught:
            await RedisCache(redis_).get("colima-test:any")
        elapsed = time.monotonic() - started
        with pytest.raises(CacheConnectionError):
            await RedisClusterTopology(redis_).check()

    assert elapsed < 2.0
    assert caught.value.details == {"service": "redis", "cause": "RedisClusterException"}
    assert caught.value.message == "Redis is unreachable"


async def test_a_cluster_down_at_start_is_used_once_it_comes_up(tmp_path: Path) -> None:
    port = free_node_port()
    late = RedisServer(tmp_path, port, admin_password="")
    async with open_connection([("127.0.0.1", port)], credentials_for({}), cluster=True) as redis_:
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


async def test_a_server_that_never_answers_raises_timeout_error_at_the_operation_timeout() -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold_silently(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold_silently, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with open_connection(
            [("127.0.0.1", port)], credentials_for({}), operation_timeout=0.5
        ) as redis_:
            started = time.monotonic()
            with pytest.raises(OperationTimeoutError) as caught:
                await RedisCache(redis_).get("colima-test:any")
            elapsed = time.monotonic() - started
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()

    assert caught.value.details["service"] == "redis"
    assert 0.4 < elapsed < 1.5


async def test_reading_a_key_that_holds_a_list_is_a_validation_error_naming_the_key(
    private_cluster: PrivateCluster, account: Account
) -> None:
    key = f"colima-test:{secrets.token_hex(4)}"
    async with open_connection(
        private_cluster.addresses[:3], credentials_for(account.secret())
    ) as redis_:
        await redis_.run(lambda client: client.rpush(key, "not a string"), operation="rpush")
        try:
            with pytest.raises(ValidationError) as caught:
                await RedisCache(redis_).get(key)
        finally:
            await RedisCache(redis_).delete(key)

    assert caught.value.details == {"field": "key", "cause": "ResponseError"}


async def test_a_missing_secret_is_a_cache_connection_error_naming_the_path() -> None:
    credentials = CredentialSource(InMemorySecretStore(secrets={}))
    async with open_connection([("127.0.0.1", STANDALONE_PORT)], credentials) as redis_:
        with pytest.raises(CacheConnectionError) as caught:
            await RedisCache(redis_).get("colima-test:any")

    assert caught.value.details == {"service": "redis", "secret_path": "redis-1"}


async def test_closing_after_talking_to_every_node_leaves_nothing_open(
    private_cluster: PrivateCluster, account: Account
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with open_connection(
            private_cluster.addresses[:3], credentials_for(account.secret())
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
    async with open_connection([("127.0.0.1", STANDALONE_PORT)], credentials_for({})) as redis_:
        try:
            await RedisCache(redis_).check()
        except CacheConnectionError as exc:
            unreachable("redis 6379", exc.message)
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
        unreachable("vault", type(exc).__name__)
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
            unreachable("redis cluster", exc.message)
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
