"""The devstack's Vault secrets open their services: each one logs in through the real driver.

Runs against what `scripts/devstack.sh up` leaves on 127.0.0.1. A service that is not listening
skips the test with the reason, or fails it when CI=true. A listening service that refuses the
credential always fails: that is the drift between Vault and the service this file exists to catch.
PostgreSQL has no wrong-password test: the machine's pg_hba.conf trusts 127.0.0.1. What a test
needs inside a service (a key, a collection) it creates under a name of its own and removes.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import aiormq
import asyncmy
import hvac
import psycopg
import pytest
import requests
from asyncmy.errors import OperationalError as MySqlOperationalError
from live_support import DEVSTACK_HINT, skip_or_fail
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AuthenticationError, RedisClusterException

pytestmark = pytest.mark.integration

VAULT_ADDR = os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200")
VAULT_TOKEN = os.environ.get("VAULT_TOKEN", "root")
SERVICE_FIELDS = {
    "postgres": {"user", "password", "database", "host", "port"},
    "mysql": {"user", "password", "database", "host", "port"},
    "mongodb": {"user", "password", "database", "host", "port"},
    "redis-1": {"password", "host", "port"},
    "rabbitmq": {"user", "password", "host", "port", "vhost"},
}
CLUSTER_NODES = 6
MYSQL_ACCESS_DENIED = 1045
MONGO_AUTH_FAILED = 18

Secret = dict[str, str]


def require_listening(secret: Secret, service: str) -> None:
    address = (secret["host"], int(secret["port"]))
    try:
        with socket.create_connection(address, timeout=2):
            pass
    except OSError:
        skip_or_fail(f"{service} is not listening on {address[0]}:{address[1]}; {DEVSTACK_HINT}")


def wrong(password: str) -> str:
    return f"not-{password}"


@pytest.fixture(scope="module")
def vault() -> Iterator[hvac.Client]:
    client = hvac.Client(url=VAULT_ADDR, token=VAULT_TOKEN, timeout=2)
    try:
        authenticated = client.is_authenticated()
    except requests.RequestException:
        client.adapter.close()
        skip_or_fail(f"no Vault answers at {VAULT_ADDR}; {DEVSTACK_HINT}")
    if not authenticated:
        client.adapter.close()
        pytest.fail(f"Vault at {VAULT_ADDR} rejects the token from VAULT_TOKEN")
    yield client
    client.adapter.close()


def read_secret(vault: hvac.Client, path: str) -> Secret:
    try:
        response = vault.secrets.kv.v2.read_secret_version(
            path=path, mount_point="secret", raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        skip_or_fail(f"secret/{path} is not in Vault; {DEVSTACK_HINT}")
    data: Secret = response["data"]["data"]
    return data


@pytest.mark.parametrize("path", sorted(SERVICE_FIELDS))
def test_each_service_secret_carries_the_fields_the_adapters_read(
    vault: hvac.Client, path: str
) -> None:
    secret = read_secret(vault, path)

    assert SERVICE_FIELDS[path] <= secret.keys()
    assert all(secret[field] for field in SERVICE_FIELDS[path])
    assert secret["port"].isdigit()


async def test_postgres_secret_logs_in_as_its_user_on_its_database(vault: hvac.Client) -> None:
    secret = read_secret(vault, "postgres")
    require_listening(secret, "PostgreSQL")

    async with await psycopg.AsyncConnection.connect(
        host=secret["host"],
        port=int(secret["port"]),
        user=secret["user"],
        password=secret["password"],
        dbname=secret["database"],
        connect_timeout=3,
    ) as conn:
        cursor = await conn.execute("SELECT current_user, current_database()")
        row = await cursor.fetchone()

    assert row == (secret["user"], secret["database"])


async def test_mysql_secret_logs_in_as_its_user_on_its_database(vault: hvac.Client) -> None:
    secret = read_secret(vault, "mysql")
    require_listening(secret, "MariaDB")

    conn = await asyncmy.connect(
        host=secret["host"],
        port=int(secret["port"]),
        user=secret["user"],
        password=secret["password"],
        database=secret["database"],
        connect_timeout=3,
    )
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1), DATABASE()")
            row = await cursor.fetchone()
    finally:
        await conn.ensure_closed()

    assert row == (secret["user"], secret["database"])


async def test_mysql_refuses_a_password_other_than_the_secret(vault: hvac.Client) -> None:
    secret = read_secret(vault, "mysql")
    require_listening(secret, "MariaDB")

    with pytest.raises(MySqlOperationalError) as refused:
        await asyncmy.connect(
            host=secret["host"],
            port=int(secret["port"]),
            user=secret["user"],
            password=wrong(secret["password"]),
            connect_timeout=3,
        )

    assert refused.value.args[0] == MYSQL_ACCESS_DENIED


def mongo_client(secret: Secret, password: str) -> AsyncMongoClient[dict[str, object]]:
    return AsyncMongoClient(
        secret["host"],
        int(secret["port"]),
        username=secret["user"],
        password=password,
        authSource=secret["database"],
        serverSelectionTimeoutMS=3000,
    )


async def test_mongodb_secret_logs_in_and_lists_a_collection_it_created(
    vault: hvac.Client,
) -> None:
    secret = read_secret(vault, "mongodb")
    require_listening(secret, "MongoDB")
    name = f"devstack-test-{uuid.uuid4().hex[:12]}"

    client = mongo_client(secret, secret["password"])
    database = client[secret["database"]]
    try:
        try:
            await database.create_collection(name)
        except OperationFailure as exc:
            if exc.code != MONGO_AUTH_FAILED:
                raise
            pytest.fail(
                f"the MongoDB-wire server on {secret['host']}:{secret['port']} refuses "
                f"{secret['user']} with the password in secret/mongodb: not the devstack's server?"
            )
        try:
            names = await database.list_collection_names()
        finally:
            await database.drop_collection(name)
        after = await database.list_collection_names()
    finally:
        await client.close()

    assert name in names
    assert name not in after


async def test_mongodb_enforces_authentication_so_a_wrong_password_is_refused(
    vault: hvac.Client,
) -> None:
    secret = read_secret(vault, "mongodb")
    require_listening(secret, "MongoDB")

    client = mongo_client(secret, wrong(secret["password"]))
    try:
        with pytest.raises(OperationFailure) as refused:
            await client[secret["database"]].list_collection_names()
    finally:
        await client.close()

    assert refused.value.code == MONGO_AUTH_FAILED


@pytest.mark.parametrize("as_acl_user", [True, False], ids=["user-and-password", "password-only"])
async def test_redis_secret_logs_in_to_a_healthy_six_node_cluster(
    vault: hvac.Client, as_acl_user: bool
) -> None:
    secret = read_secret(vault, "redis-1")
    require_listening(secret, "Redis Cluster")
    key = f"devstack-test:{uuid.uuid4()}"

    cluster = RedisCluster(
        host=secret["host"],
        port=int(secret["port"]),
        username=secret.get("user", "dev_admin") if as_acl_user else None,
        password=secret["password"],
        decode_responses=True,
    )
    try:
        await cluster.initialize()
        info = await cluster.cluster_info()
        await cluster.set(key, "v", ex=30)
        value = await cluster.get(key)
        await cluster.delete(key)
        node_count = len(cluster.get_nodes())
    finally:
        await cluster.aclose()

    assert info["cluster_state"] == "ok"
    assert node_count == CLUSTER_NODES
    assert value == "v"


async def test_redis_cluster_refuses_a_password_other_than_the_secret(vault: hvac.Client) -> None:
    secret = read_secret(vault, "redis-1")
    require_listening(secret, "Redis Cluster")

    cluster = RedisCluster(
        host=secret["host"],
        port=int(secret["port"]),
        username=secret.get("user", "dev_admin"),
        password=wrong(secret["password"]),
    )
    try:
        # redis-py wraps the seed's AuthenticationError in RedisClusterException during discovery.
        with pytest.raises((RedisClusterException, AuthenticationError)):
            await cluster.initialize()
    finally:
        await cluster.aclose()


def amqp_url(secret: Secret, password: str) -> str:
    return f"amqp://{secret['user']}:{password}@{secret['host']}:{secret['port']}/{secret['vhost']}"


async def test_rabbitmq_secret_logs_in_to_its_vhost_and_may_declare_queues(
    vault: hvac.Client,
) -> None:
    secret = read_secret(vault, "rabbitmq")
    require_listening(secret, "RabbitMQ")

    connection = await aiormq.connect(amqp_url(secret, secret["password"]))
    try:
        channel = await connection.channel()
        declared = await channel.queue_declare(exclusive=True, auto_delete=True)
    finally:
        await connection.close()

    assert declared.message_count == 0


async def test_rabbitmq_refuses_a_password_other_than_the_secret(vault: hvac.Client) -> None:
    secret = read_secret(vault, "rabbitmq")
    require_listening(secret, "RabbitMQ")

    with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
        await aiormq.connect(amqp_url(secret, wrong(secret["password"])))
