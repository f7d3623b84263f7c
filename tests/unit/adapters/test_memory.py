"""What only the in-memory adapters promise: injected clocks, demo data, the ``failing`` switch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from colima_ref.adapters import memory
from colima_ref.domain.errors import (
    CacheConnectionError,
    DatabaseConnectionError,
    MessageQueueError,
    ResourceNotFoundError,
    ServiceUnavailableError,
    VaultUnavailableError,
)
from colima_ref.domain.models import CacheEntry
from colima_ref.ports.services import SERVICE_NAMES


@attrs.define
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


# --- cache: time to live against the injected clock


async def test_a_cached_value_is_gone_once_its_ttl_has_passed() -> None:
    clock = FakeClock()
    cache = memory.InMemoryCache(clock=clock)
    await cache.set("k", "v", ttl=10)

    clock.advance(10)

    assert await cache.get("k") is None


async def test_a_cached_value_reports_one_second_left_in_its_last_second() -> None:
    clock = FakeClock()
    cache = memory.InMemoryCache(clock=clock)
    await cache.set("k", "v", ttl=10)

    clock.advance(9.5)

    assert await cache.get("k") == CacheEntry("v", 1)


@given(ttl=st.integers(1, 86_400), elapsed_ms=st.integers(0, 86_400_000 - 1))
async def test_remaining_ttl_is_rounded_up_to_whole_seconds(ttl: int, elapsed_ms: int) -> None:
    elapsed_ms %= ttl * 1000
    clock = FakeClock()
    cache = memory.InMemoryCache(clock=clock)
    await cache.set("k", "v", ttl=ttl)

    clock.advance(elapsed_ms / 1000)
    entry = await cache.get("k")

    assert entry is not None
    assert entry.ttl == -(-(ttl * 1000 - elapsed_ms) // 1000)
    assert 1 <= entry.ttl <= ttl


async def test_a_value_without_ttl_never_expires() -> None:
    clock = FakeClock()
    cache = memory.InMemoryCache(clock=clock)
    await cache.set("k", "v")

    clock.advance(10**9)

    assert await cache.get("k") == CacheEntry("v", None)


async def test_expired_entries_are_neither_deleted_nor_counted() -> None:
    clock = FakeClock()
    cache = memory.InMemoryCache(clock=clock)
    await cache.set("cache:a", "v", ttl=1)
    await cache.set("cache:b", "v")
    clock.advance(1)

    assert await cache.delete("cache:a") is False
    assert await cache.delete_matching("cache:*") == 1


async def test_delete_matching_is_case_sensitive() -> None:
    cache = memory.InMemoryCache()
    await cache.set("Cache:a", "v")

    assert await cache.delete_matching("cache:*") == 0
    assert await cache.get("Cache:a") is not None


# --- secret store: demo data and rotation


async def test_the_demo_store_holds_the_specifications_services() -> None:
    store = memory.InMemorySecretStore()

    for path in ("postgres", "mysql", "mongodb", "redis-1", "rabbitmq"):
        assert (await store.read(path)).path == path


async def test_demo_postgres_credentials_match_the_specification_example() -> None:
    data = (await memory.InMemorySecretStore().read("postgres")).data

    assert {key: value for key, value in data.items() if key != "password"} == {
        "user": "dev_admin",
        "database": "dev_database",
        "host": "postgres",
        "port": "5432",
    }


async def test_demo_rabbitmq_uses_the_dev_vhost_and_redis_only_a_password() -> None:
    store = memory.InMemorySecretStore()

    assert (await store.read("rabbitmq")).data["vhost"] == "dev_vhost"
    assert set((await store.read("redis-1")).data) == {"password", "host", "port"}


async def test_put_rotates_a_credential() -> None:
    store = memory.InMemorySecretStore()

    store.put("postgres", {"user": "dev_admin", "password": "rotated"})

    assert (await store.read("postgres")).data["password"] == "rotated"


async def test_rotating_in_one_store_leaves_other_stores_and_the_demo_data_alone() -> None:
    rotated, untouched = memory.InMemorySecretStore(), memory.InMemorySecretStore()

    rotated.put("postgres", {"password": "rotated"})

    assert (await untouched.read("postgres")).data == memory.DEMO_SECRETS["postgres"]


async def test_a_store_given_secrets_holds_only_those() -> None:
    store = memory.InMemorySecretStore(secrets={"app": {"token": "t"}})

    assert (await store.read("app")).data == {"token": "t"}
    with pytest.raises(ResourceNotFoundError):
        await store.read("postgres")


# --- SQL and document databases


MOMENT = datetime(2025, 10, 27, 12, 34, 56, 789123, tzinfo=UTC)


@pytest.mark.parametrize(
    ("engine", "moment", "text"),
    [
        ("PostgreSQL", MOMENT, "2025-10-27 12:34:56.789123+00"),
        ("PostgreSQL", MOMENT.replace(microsecond=500000), "2025-10-27 12:34:56.5+00"),
        ("PostgreSQL", MOMENT.replace(microsecond=0), "2025-10-27 12:34:56+00"),
        ("MySQL", MOMENT, "2025-10-27 12:34:56"),
        ("MySQL", MOMENT.astimezone(timezone(timedelta(hours=2))), "2025-10-27 12:34:56"),
        ("MySQL", MOMENT.replace(tzinfo=None), "2025-10-27 12:34:56"),
    ],
    ids=["pg", "pg-trims-zeros", "pg-whole-second", "mysql", "mysql-in-utc", "mysql-naive-is-utc"],
)
async def test_the_timestamp_is_the_clocks_time_in_the_engines_text_form(
    engine: memory.databases.SqlEngine, moment: datetime, text: str
) -> None:
    database = memory.InMemorySqlDatabase(engine, clock=fixed(moment))

    assert (await database.current_timestamp()).result == text


@pytest.mark.parametrize("engine", ["PostgreSQL", "MySQL"])
async def test_sql_health_names_the_engine_as_in_memory(engine: memory.databases.SqlEngine) -> None:
    health = await memory.InMemorySqlDatabase(engine).check()

    assert health.info == {"version": f"{engine} (in-memory)"}


async def test_the_document_database_lists_the_specifications_collections() -> None:
    names = await memory.InMemoryDocumentDatabase().collection_names()

    assert names == ["users", "sessions", "logs"]


# --- cluster topology


async def test_redis_1_to_3_are_the_masters_of_the_documented_slot_ranges() -> None:
    nodes = await memory.InMemoryClusterTopology().nodes()

    masters = {n.host: [(r.start, r.end) for r in n.slots] for n in nodes if n.role == "master"}

    assert masters == {
        "redis-1": [(0, 5460)],
        "redis-2": [(5461, 10922)],
        "redis-3": [(10923, 16383)],
    }


async def test_redis_4_to_6_replicate_redis_1_to_3_in_order() -> None:
    nodes = {node.host: node for node in await memory.InMemoryClusterTopology().nodes()}

    followed = {name: nodes[name].master_id for name in ("redis-4", "redis-5", "redis-6")}

    assert followed == {
        "redis-4": nodes["redis-1"].node_id,
        "redis-5": nodes["redis-2"].node_id,
        "redis-6": nodes["redis-3"].node_id,
    }


async def test_node_ids_are_the_same_in_every_instance() -> None:
    first = await memory.InMemoryClusterTopology().nodes()
    second = await memory.InMemoryClusterTopology().nodes()

    assert [n.node_id for n in first] == [n.node_id for n in second]


async def test_a_replicas_info_names_its_master_and_a_masters_counts_its_replica() -> None:
    cluster = memory.InMemoryClusterTopology()

    replica = await cluster.node_info("redis-5")
    master = await cluster.node_info("redis-2:6379")

    assert (replica["role"], replica["master_host"], replica["master_link_status"]) == (
        "slave",
        "redis-2",
        "up",
    )
    assert (master["role"], master["connected_slaves"]) == ("master", 1)


async def test_node_uptime_follows_the_injected_clock() -> None:
    clock = FakeClock(now=100.0)
    cluster = memory.InMemoryClusterTopology(clock=clock)

    clock.advance(90_000)
    info = await cluster.node_info("redis-1")

    assert (info["uptime_in_seconds"], info["uptime_in_days"]) == (90_000, 1)


async def test_a_known_host_on_another_port_is_not_a_node() -> None:
    with pytest.raises(ResourceNotFoundError):
        await memory.InMemoryClusterTopology().node_info("redis-1:6380")


async def test_cluster_info_matches_a_freshly_created_six_node_cluster() -> None:
    info = await memory.InMemoryClusterTopology().cluster_info()

    assert {
        key: info[key] for key in ("cluster_size", "cluster_current_epoch", "cluster_my_epoch")
    } == {
        "cluster_size": 3,
        "cluster_current_epoch": 6,
        "cluster_my_epoch": 1,
    }


async def test_cluster_health_reports_state_and_node_count() -> None:
    health = await memory.InMemoryClusterTopology().check()

    assert health.info == {"cluster_enabled": True, "cluster_state": "ok", "total_nodes": 6}


# --- message broker


async def test_the_broker_keeps_published_bodies_in_order() -> None:
    broker = memory.InMemoryMessageBroker()

    await broker.publish("q", b"1")
    await broker.publish("q", b"2")

    assert broker.messages("q") == [b"1", b"2"]


async def test_looking_at_an_unknown_queues_messages_does_not_create_it() -> None:
    broker = memory.InMemoryMessageBroker()

    assert broker.messages("q") == []
    assert (await broker.queue_info("q")).exists is False


# --- the failing switch

Call = Callable[[Any], Awaitable[object]]

FAILING_CALLS: list[tuple[Callable[[], Any], Call, type[ServiceUnavailableError], str]] = [
    (memory.InMemorySecretStore, lambda a: a.read("postgres"), VaultUnavailableError, "vault"),
    (
        lambda: memory.InMemorySqlDatabase("PostgreSQL"),
        lambda a: a.current_timestamp(),
        DatabaseConnectionError,
        "postgres",
    ),
    (
        lambda: memory.InMemorySqlDatabase("MySQL"),
        lambda a: a.current_timestamp(),
        DatabaseConnectionError,
        "mysql",
    ),
    (
        memory.InMemoryDocumentDatabase,
        lambda a: a.collection_names(),
        DatabaseConnectionError,
        "mongodb",
    ),
    (memory.InMemoryCache, lambda a: a.get("k"), CacheConnectionError, "redis"),
    (memory.InMemoryCache, lambda a: a.set("k", "v"), CacheConnectionError, "redis"),
    (memory.InMemoryCache, lambda a: a.delete("k"), CacheConnectionError, "redis"),
    (memory.InMemoryCache, lambda a: a.delete_matching("*"), CacheConnectionError, "redis"),
    (memory.InMemoryClusterTopology, lambda a: a.nodes(), CacheConnectionError, "redis"),
    (memory.InMemoryClusterTopology, lambda a: a.cluster_info(), CacheConnectionError, "redis"),
    (
        memory.InMemoryClusterTopology,
        lambda a: a.node_info("redis-1"),
        CacheConnectionError,
        "redis",
    ),
    (memory.InMemoryMessageBroker, lambda a: a.publish("q", b"{}"), MessageQueueError, "rabbitmq"),
    (memory.InMemoryMessageBroker, lambda a: a.queue_info("q"), MessageQueueError, "rabbitmq"),
]
FAILING_ADAPTERS: list[tuple[Callable[[], Any], type[ServiceUnavailableError], str]] = [
    (memory.InMemorySecretStore, VaultUnavailableError, "vault"),
    (lambda: memory.InMemorySqlDatabase("PostgreSQL"), DatabaseConnectionError, "postgres"),
    (lambda: memory.InMemorySqlDatabase("MySQL"), DatabaseConnectionError, "mysql"),
    (memory.InMemoryDocumentDatabase, DatabaseConnectionError, "mongodb"),
    (memory.InMemoryCache, CacheConnectionError, "redis"),
    (memory.InMemoryClusterTopology, CacheConnectionError, "redis"),
    (memory.InMemoryMessageBroker, MessageQueueError, "rabbitmq"),
]
FAILING_IDS = [
    "read",
    "postgres-query",
    "mysql-query",
    "collections",
    "get",
    "set",
    "delete",
    "delete_matching",
    "nodes",
    "cluster_info",
    "node_info",
    "publish",
    "queue_info",
]


@pytest.mark.parametrize(("build", "call", "error", "service"), FAILING_CALLS, ids=FAILING_IDS)
async def test_a_failing_adapter_raises_its_services_error(
    build: Callable[[], Any], call: Call, error: type[ServiceUnavailableError], service: str
) -> None:
    adapter = build()
    adapter.failing = True

    with pytest.raises(error) as caught:
        await call(adapter)

    assert caught.value.details["service"] == service


@pytest.mark.parametrize(
    ("build", "error", "service"),
    FAILING_ADAPTERS,
    ids=["vault", "postgres", "mysql", "mongodb", "cache", "cluster", "broker"],
)
async def test_a_failing_adapters_health_check_raises_its_services_error(
    build: Callable[[], Any], error: type[ServiceUnavailableError], service: str
) -> None:
    adapter = build()
    adapter.failing = True

    with pytest.raises(error) as caught:
        await adapter.check()

    assert caught.value.service == service


@pytest.mark.parametrize(("build", "call", "error", "service"), FAILING_CALLS, ids=FAILING_IDS)
async def test_an_adapter_recovers_when_failing_is_switched_off(
    build: Callable[[], Any], call: Call, error: type[ServiceUnavailableError], service: str
) -> None:
    adapter = build()
    adapter.failing = True
    with pytest.raises(error):
        await call(adapter)

    adapter.failing = False

    await call(adapter)
    assert (await adapter.check()).healthy


async def test_the_failing_flag_can_be_set_at_construction() -> None:
    with pytest.raises(VaultUnavailableError):
        await memory.InMemorySecretStore(failing=True).read("postgres")


async def test_a_failing_store_reports_unavailable_rather_than_not_found() -> None:
    with pytest.raises(VaultUnavailableError):
        await memory.InMemorySecretStore(failing=True).read("no-such-path")


# --- the bundle


def test_the_bundle_is_the_memory_backend_with_a_probe_per_service() -> None:
    services = memory.services()

    assert services.backend == "memory"
    assert set(services.probes) == set(SERVICE_NAMES)


def test_each_probe_is_the_adapter_it_reports_on() -> None:
    services = memory.services()
    adapters: dict[str, object] = {
        "vault": services.secrets,
        "postgres": services.postgres,
        "mysql": services.mysql,
        "mongodb": services.mongodb,
        "redis": services.cluster,
        "rabbitmq": services.broker,
    }

    assert {name: id(probe) for name, probe in services.probes.items()} == {
        name: id(adapter) for name, adapter in adapters.items()
    }


async def test_failing_one_adapter_in_the_bundle_fails_only_its_probe() -> None:
    services = memory.services()
    assert isinstance(services.mysql, memory.InMemorySqlDatabase)
    services.mysql.failing = True

    with pytest.raises(DatabaseConnectionError):
        await services.probes["mysql"].check()
    assert (await services.probes["postgres"].check()).healthy


async def test_each_bundle_starts_with_its_own_empty_state() -> None:
    first, second = memory.services(), memory.services()

    await first.cache.set("k", "v")

    assert await second.cache.get("k") is None
