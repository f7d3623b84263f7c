"""Input a backend refuses is the client's error, answered with a 4xx, and never opens the
circuit breaker that every other client's requests go through.

One live server with ``CIRCUIT_BREAKER_FAIL_MAX=3`` and a 60 s reset: each test sends more
refused requests than that, then a normal one, which must still be served. The server reads its
secrets from a Vault folder of copies through a token whose policy denies one path in it, and
publishes to a private RabbitMQ vhost whose user may not configure queues named ``denied-*``;
the shared secrets, accounts and vhost are never changed.

The SQL and MongoDB routes take no input (their queries and database are fixed), so only a
refused login or permission can fail them there: test_refused_logins_do_not_trip.py covers it.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import aiormq
import attrs
import httpx2
import hvac
import pytest
import redis
from live_support import QUIET, LiveServer, VaultFolder, read_secret
from servers.rabbitmq import Account, rabbitmq_account

pytestmark = [pytest.mark.integration, pytest.mark.vault, pytest.mark.rabbitmq, pytest.mark.redis]

FAIL_MAX = 3
REFUSED_REQUESTS = FAIL_MAX + 2
ERROR_FIELDS = {"error", "message", "status_code", "details", "request_id"}


@attrs.frozen
class Stack:
    server: LiveServer
    rabbitmq: Account
    redis_admin: redis.RedisCluster


@pytest.fixture(scope="module")
def broker_account() -> Iterator[Account]:
    # Every queue but denied-*: the broker refuses those names on the channel (403).
    with rabbitmq_account(configure="^(?!denied-).*") as account:
        yield account


@pytest.fixture(scope="module")
def limited_token(vault_admin: hvac.Client) -> Iterator[tuple[VaultFolder, str]]:
    """A folder of copied secrets, and a token that reads all of it but ``denied``."""
    folder = VaultFolder(vault_admin)
    folder.copy_devstack()
    policy = f"colima-test-{secrets.token_hex(4)}"
    vault_admin.sys.create_or_update_policy(
        policy,
        f'path "secret/data/{folder.prefix}/*" {{ capabilities = ["read"] }}\n'
        f'path "secret/data/{folder.prefix}/denied" {{ capabilities = ["deny"] }}\n',
    )
    token = vault_admin.auth.token.create(policies=[policy], ttl="15m")["auth"]["client_token"]
    try:
        yield folder, token
    finally:
        vault_admin.auth.token.revoke(token)
        vault_admin.sys.delete_policy(policy)
        folder.delete()


@pytest.fixture(scope="module")
def stack(
    devstack: dict[str, str],
    vault_admin: hvac.Client,
    broker_account: Account,
    limited_token: tuple[VaultFolder, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    folder, token = limited_token
    folder.write(
        "rabbitmq",
        {**read_secret(vault_admin, "rabbitmq"), **broker_account.secret()},
    )
    login = read_secret(vault_admin, "redis-1")
    host, _, port = devstack["REDIS_NODES"].split(",")[0].rpartition(":")
    redis_admin = redis.RedisCluster(
        host=host, port=int(port), username=login["user"], password=login["password"]
    )
    env = {
        **devstack,
        **QUIET,
        "CIRCUIT_BREAKER_FAIL_MAX": str(FAIL_MAX),
        # Long enough that a breaker opened by the refused requests is still open afterwards.
        "CIRCUIT_BREAKER_RESET_TIMEOUT": "60",
        "VAULT_PATH_PREFIX": folder.prefix,
        "VAULT_TOKEN": token,
    }
    server = LiveServer(env, tmp_path_factory.mktemp("client-errors"))
    try:
        server.start()
        yield Stack(server, broker_account, redis_admin)
    finally:
        server.stop_if_running()
        redis_admin.close()


def assert_refused_without_tripping(
    stack: Stack,
    service: str,
    refused: Callable[[], httpx2.Response],
    normal: Callable[[], httpx2.Response],
    *,
    status: int,
) -> list[httpx2.Response]:
    """``refused`` answers ``status`` more times than the breaker allows outages, and then
    ``normal`` is still served, with ``service``'s breaker closed."""
    answers = [refused() for _ in range(REFUSED_REQUESTS)]
    assert [answer.status_code for answer in answers] == [status] * REFUSED_REQUESTS, [
        answer.text for answer in answers
    ]
    assert all(set(answer.json()) == ERROR_FIELDS for answer in answers)
    served = normal()
    assert served.status_code == 200, served.text
    breaker = stack.server.get(f"/health/{service}").json()["circuit_breaker"]
    assert (breaker["state"], breaker["failures"]) == ("closed", 0)
    return answers


def publish(stack: Stack, queue: str) -> Callable[[], httpx2.Response]:
    return lambda: stack.server.client.post(
        "/examples/messaging/publish", params={"queue_name": queue}, json={"type": "test"}
    )


def test_a_reserved_queue_name_is_refused_up_front_and_publishing_goes_on(stack: Stack) -> None:
    answers = assert_refused_without_tripping(
        stack,
        "rabbitmq",
        publish(stack, "amq.rt"),
        publish(stack, f"ok-{uuid.uuid4().hex}"),
        status=422,
    )
    assert answers[0].json()["details"] == {"field": "queue_name"}
    assert "amq." in answers[0].json()["message"]


def test_a_queue_name_the_broker_refuses_our_user_leaves_publishing_open(stack: Stack) -> None:
    answers = assert_refused_without_tripping(
        stack,
        "rabbitmq",
        publish(stack, f"denied-{uuid.uuid4().hex}"),
        publish(stack, f"ok-{uuid.uuid4().hex}"),
        status=422,
    )
    assert answers[0].json()["details"]["field"] == "queue_name"


async def test_a_queue_that_exists_not_durable_is_refused_and_publishing_goes_on(
    stack: Stack,
) -> None:
    queue = f"transient-{uuid.uuid4().hex}"
    connection = await aiormq.connect(stack.rabbitmq.amqp_url())
    try:
        channel = await connection.channel()
        await channel.queue_declare(queue, durable=False)
    finally:
        await connection.close()

    assert_refused_without_tripping(
        stack,
        "rabbitmq",
        publish(stack, queue),
        publish(stack, f"ok-{uuid.uuid4().hex}"),
        status=422,
    )


@pytest.fixture
async def exclusive_queue(stack: Stack) -> AsyncIterator[str]:
    """A queue held exclusively by a connection of the test's own while the test runs."""
    queue = f"exclusive-{uuid.uuid4().hex}"
    connection = await aiormq.connect(stack.rabbitmq.amqp_url())
    try:
        channel = await connection.channel()
        await channel.queue_declare(queue, exclusive=True)
        yield queue
    finally:
        await connection.close()


def test_asking_about_a_queue_exclusive_to_another_connection_leaves_the_broker_open(
    stack: Stack, exclusive_queue: str
) -> None:
    normal = f"ok-{uuid.uuid4().hex}"
    assert publish(stack, normal)().status_code == 200

    assert_refused_without_tripping(
        stack,
        "rabbitmq",
        lambda: stack.server.get(f"/examples/messaging/queue/{exclusive_queue}/info"),
        lambda: stack.server.get(f"/examples/messaging/queue/{normal}/info"),
        status=422,
    )


@pytest.fixture
def list_key(stack: Stack) -> Iterator[str]:
    """A key another program keeps a list under, in the shared Redis Cluster."""
    key = f"colima-test-list-{uuid.uuid4().hex}"
    stack.redis_admin.rpush(key, "item")
    try:
        yield key
    finally:
        stack.redis_admin.delete(key)


def test_reading_a_key_that_holds_a_list_is_refused_and_the_cache_goes_on(
    stack: Stack, list_key: str
) -> None:
    normal = f"colima-test-{uuid.uuid4().hex}"

    answers = assert_refused_without_tripping(
        stack,
        "redis",
        lambda: stack.server.get(f"/examples/cache/{list_key}"),
        lambda: stack.server.client.post(f"/examples/cache/{normal}", params={"value": "v"}),
        status=422,
    )
    assert answers[0].json()["details"]["field"] == "key"
    assert stack.server.get(f"/examples/cache/{normal}").json()["value"] == "v"
    stack.server.client.delete(f"/examples/cache/{normal}")


def test_a_secret_our_token_may_not_read_is_not_found_and_vault_stays_open(stack: Stack) -> None:
    answers = assert_refused_without_tripping(
        stack,
        "vault",
        lambda: stack.server.get("/examples/vault/secret/denied"),
        lambda: stack.server.get("/examples/vault/secret/postgres"),
        status=404,
    )
    assert answers[0].json()["details"]["reason"] == "permission denied"
    # The services reading their logins through Vault are served too.
    assert stack.server.get("/examples/database/mysql/query").status_code == 200
