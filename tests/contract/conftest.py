"""Opens each port's adapter on each backend, so one test body runs against all of them.

A live backend joins in two lines: an opener in ``OPENERS`` keyed ``(Port, "postgres")`` that
calls ``require_reachable`` once the adapter is open, and a marked param on the port's fixture,
``pytest.param("postgres", marks=pytest.mark.postgres)``. Backends serving one of several services
of a port (SQL databases, health probes) are named ``"<backend>:<service>"`` in memory; a live
backend is just the service's name.

The failure-behaviour tests (test_logins.py, test_outages.py) take the live adapters of
live_adapters.py instead, with an ``account`` of their own on a server that checks passwords and a
``writable_store`` (in memory, or a folder of the devstack's Vault) the test rotates secrets in.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, NoReturn

import attrs
import hvac
import pytest
from live_support import DEVSTACK_HINT, VaultFolder, skip_or_fail
from servers.mongo import mongo_account
from servers.mysql import mysql_account
from servers.redis import redis_account

from colima_ref.adapters import memory
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.mongo import MongoDocumentDatabase
from colima_ref.adapters.mysql import MySqlDatabase
from colima_ref.adapters.postgres import PostgresDatabase
from colima_ref.adapters.rabbitmq import RabbitMqBroker
from colima_ref.adapters.redis import RedisCache, RedisClusterTopology, RedisConnection
from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.domain.errors import OperationTimeoutError, ServiceUnavailableError
from colima_ref.ports.cache import Cache
from colima_ref.ports.cluster import ClusterTopology
from colima_ref.ports.databases import DocumentDatabase, SqlDatabase
from colima_ref.ports.messaging import MessageBroker
from colima_ref.ports.probes import HealthProbe
from colima_ref.ports.secrets import SecretStore
from colima_ref.ports.services import SERVICE_NAMES

from .live_adapters import Account, LiveAdapter

REACHABLE_WITHIN = 5.0  # seconds

Opener = Callable[[], AbstractAsyncContextManager[Any]]


def _memory(build: Callable[[], object]) -> Opener:
    @asynccontextmanager
    async def open_memory() -> AsyncIterator[object]:
        yield build()

    return open_memory


def _memory_probe(service: str) -> Opener:
    return _memory(lambda: memory.services().probes[service])


@asynccontextmanager
async def _vault_secret_store() -> AsyncIterator[VaultSecretStore]:
    addr = os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200")
    async with VaultSecretStore.open(
        addr=addr, token=os.environ.get("VAULT_TOKEN", "root")
    ) as store:
        await require_reachable("vault", store)
        yield store


def _vault_backed(
    service: str, open_live: Callable[[CredentialSource], AbstractAsyncContextManager[Any]]
) -> Opener:
    """An opener for an adapter logging in with the devstack's credentials from Vault."""

    @asynccontextmanager
    async def open_vault_backed() -> AsyncIterator[Any]:
        async with _vault_secret_store() as store, open_live(CredentialSource(store)) as adapter:
            await require_reachable(service, adapter)
            yield adapter

    return open_vault_backed


_postgres = _vault_backed(
    "postgres",
    lambda credentials: PostgresDatabase.open(
        host=os.environ.get("POSTGRES_HOST", "127.0.0.1"),
        port=int(os.environ.get("POSTGRES_PORT", "5432")),
        credentials=credentials,
    ),
)
_mysql = _vault_backed(
    "mysql",
    lambda credentials: MySqlDatabase.open(
        host=os.environ.get("MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("MYSQL_PORT", "3306")),
        credentials=credentials,
    ),
)
_mongodb = _vault_backed(
    "mongodb",
    lambda credentials: MongoDocumentDatabase.open(
        host=os.environ.get("MONGODB_HOST", "127.0.0.1"),
        port=int(os.environ.get("MONGODB_PORT", "27017")),
        credentials=credentials,
    ),
)
_rabbitmq = _vault_backed(
    "rabbitmq",
    lambda credentials: RabbitMqBroker.open(
        host=os.environ.get("RABBITMQ_HOST", "127.0.0.1"),
        port=int(os.environ.get("RABBITMQ_PORT", "5672")),
        credentials=credentials,
    ),
)


def _redis(build: Callable[[RedisConnection], object]) -> Opener:
    """The devstack's cluster (REDIS_NODES, default 7001-7003) with its password from Vault."""
    seeds = os.environ.get("REDIS_NODES") or "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    nodes = [(host, int(port)) for host, _, port in (s.rpartition(":") for s in seeds.split(","))]

    @asynccontextmanager
    async def open_redis(credentials: CredentialSource) -> AsyncIterator[object]:
        async with RedisConnection.open(nodes=nodes, credentials=credentials) as connection:
            yield build(connection)

    return _vault_backed("redis", open_redis)


OPENERS: dict[tuple[type[Any], str], Opener] = {
    (SecretStore, "vault"): _vault_secret_store,
    (HealthProbe, "vault"): _vault_secret_store,
    (SqlDatabase, "postgres"): _postgres,
    (HealthProbe, "postgres"): _postgres,
    (SqlDatabase, "mysql"): _mysql,
    (HealthProbe, "mysql"): _mysql,
    (DocumentDatabase, "mongodb"): _mongodb,
    (HealthProbe, "mongodb"): _mongodb,
    (MessageBroker, "rabbitmq"): _rabbitmq,
    (HealthProbe, "rabbitmq"): _rabbitmq,
    (Cache, "redis"): _redis(RedisCache),
    (ClusterTopology, "redis"): _redis(RedisClusterTopology),
    (HealthProbe, "redis"): _redis(RedisClusterTopology),
    (SecretStore, "memory"): _memory(memory.InMemorySecretStore),
    (SqlDatabase, "memory:postgres"): _memory(lambda: memory.InMemorySqlDatabase("PostgreSQL")),
    (SqlDatabase, "memory:mysql"): _memory(lambda: memory.InMemorySqlDatabase("MySQL")),
    (DocumentDatabase, "memory"): _memory(memory.InMemoryDocumentDatabase),
    (Cache, "memory"): _memory(memory.InMemoryCache),
    (ClusterTopology, "memory"): _memory(memory.InMemoryClusterTopology),
    (MessageBroker, "memory"): _memory(memory.InMemoryMessageBroker),
    **{(HealthProbe, f"memory:{name}"): _memory_probe(name) for name in SERVICE_NAMES},
}


async def remove_queue(backend: str, name: str) -> None:
    """Delete the queue ``name`` a test made on ``backend``; the MessageBroker port cannot, so on
    RabbitMQ ``rabbitmqctl`` does it, in the vhost of secret/rabbitmq. A memory broker dies with
    its test."""
    if service_of(backend) != "rabbitmq":
        return
    async with _vault_secret_store() as store:
        vhost = (await store.read("rabbitmq")).data["vhost"]
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        "delete_queue",
        "-p",
        vhost,
        name,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    # A test that only asked about the queue never made it.
    gone = process.returncode == 0 or b"not found" in stderr
    assert gone, f"rabbitmqctl delete_queue {name}: {stderr.decode(errors='replace')}"


def open_adapter(role: type[Any], backend: str) -> AbstractAsyncContextManager[Any]:
    """Open the adapter playing ``role`` (a port Protocol) on ``backend``; closes it on exit.

    Raises LookupError when no opener is registered for the pair.
    """
    try:
        opener = OPENERS[role, backend]
    except KeyError:
        raise LookupError(f"no opener for {role.__name__} on {backend!r} in OPENERS") from None
    return opener()


def service_of(backend: str) -> str:
    """The service a backend id stands for: ``memory:mysql`` and ``mysql`` both give ``mysql``."""
    return backend.rpartition(":")[2]


def unreachable(service: str, detail: str, env: Mapping[str, str] = os.environ) -> NoReturn:
    """Skip the test because ``service`` cannot be reached, or fail it when CI=true.

    ``detail`` must be safe to print: no credential, no connection URL.
    """
    skip_or_fail(f"{service} is unreachable ({detail}); {DEVSTACK_HINT}", env)


async def require_reachable(
    service: str,
    probe: HealthProbe,
    env: Mapping[str, str] = os.environ,
) -> None:
    """Return once ``probe`` reports healthy in time; otherwise call ``unreachable``."""
    try:
        async with asyncio.timeout(REACHABLE_WITHIN):
            health = await probe.check()
    except (ServiceUnavailableError, OperationTimeoutError) as exc:
        # Our errors' messages are written to be shown; a driver's might carry a URL.
        unreachable(service, f"{exc.error}: {exc.message}", env)
    except (TimeoutError, OSError) as exc:
        unreachable(service, type(exc).__name__, env)
    if not health.healthy:
        unreachable(service, health.error or "reported unhealthy", env)


ACCOUNTS: dict[str, Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[Account]]] = {
    "postgres": lambda request: request.getfixturevalue("private_postgres_server").account(),
    "mysql": lambda _request: mysql_account(),
    "mongodb": lambda request: mongo_account(request.getfixturevalue("secantus_server")),
    "redis": lambda request: redis_account(request.getfixturevalue("redis_private_cluster")),
    "rabbitmq": lambda request: nullcontext(request.getfixturevalue("rabbitmq_test_account")),
}


@pytest.fixture
async def account(adapter: LiveAdapter, request: pytest.FixtureRequest) -> AsyncIterator[Account]:
    """An account of the test's own on a server of ``adapter``'s service that checks passwords."""
    async with ACCOUNTS[adapter.service](request) as opened:
        yield opened


@attrs.frozen
class WritableStore:
    """A SecretStore and how the test changes what it holds."""

    store: SecretStore
    put: Callable[[str, Mapping[str, str]], None]


@asynccontextmanager
async def _memory_store() -> AsyncIterator[WritableStore]:
    store = memory.InMemorySecretStore(secrets={})
    yield WritableStore(store, store.put)


@asynccontextmanager
async def _vault_folder() -> AsyncIterator[WritableStore]:
    """The devstack's Vault, reading from a folder of the test's own (deleted afterwards)."""
    addr = os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200")
    token = os.environ.get("VAULT_TOKEN", "root")
    admin = hvac.Client(url=addr, token=token, timeout=5)
    folder = VaultFolder(admin)
    try:
        async with VaultSecretStore.open(addr=addr, token=token, prefix=folder.prefix) as store:
            await require_reachable("vault", store)
            try:
                yield WritableStore(store, folder.write)
            finally:
                folder.delete()
    finally:
        admin.adapter.close()


@pytest.fixture(params=["memory", pytest.param("vault", marks=pytest.mark.vault)])
async def writable_store(request: pytest.FixtureRequest) -> AsyncIterator[WritableStore]:
    opened = _memory_store() if request.param == "memory" else _vault_folder()
    async with opened as store:
        yield store
