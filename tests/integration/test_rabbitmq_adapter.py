"""RabbitMqBroker against the machine's RabbitMQ: confirms, concurrency, queues, vhosts and a
dropped connection. Logins, timeouts and shutdown are in the contract suite
(tests/contract/test_logins.py, test_outages.py).

The tests share the run's private vhost and user (tests/conftest.py, servers/rabbitmq.py), so
the shared broker and its dev_vhost are never disturbed. Outages are staged with a TCP relay in
front of the broker, which the tests cut and restore; the broker itself is never stopped.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiormq
import pytest
from live_support import Relay
from servers.rabbitmq import HOST, PORT, Account, rabbitmqctl

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.adapters.rabbitmq import RabbitMqBroker
from colima_ref.domain.errors import MessageQueueError, ValidationError

pytestmark = [pytest.mark.rabbitmq, pytest.mark.integration]


@pytest.fixture
def account(rabbitmq_test_account: Account) -> Account:
    return rabbitmq_test_account


@pytest.fixture
def queue() -> str:
    return f"q-{uuid.uuid4().hex}"


@asynccontextmanager
async def broker_on(
    store: InMemorySecretStore, port: int = PORT, **options: Any
) -> AsyncIterator[RabbitMqBroker]:
    async with RabbitMqBroker.open(
        host=HOST, port=port, credentials=CredentialSource(store), **options
    ) as broker:
        yield broker


@pytest.fixture
def relay() -> Iterator[Relay]:
    """A relay to the broker, not yet listening."""
    opened = Relay((HOST, PORT))
    try:
        yield opened
    finally:
        opened.close()


async def test_a_published_message_is_persistent_json_on_a_durable_queue(
    account: Account, queue: str
) -> None:
    async with broker_on(InMemorySecretStore({"rabbitmq": account.secret()})) as broker:
        await broker.publish(queue, b'{"type": "email"}')

    connection = await aiormq.connect(account.amqp_url())
    try:
        channel = await connection.channel()
        message = await channel.basic_get(queue, no_ack=True)
    finally:
        await connection.close()
    properties = message.header.properties
    assert (message.body, properties.delivery_mode, properties.content_type) == (
        b'{"type": "email"}',
        2,
        "application/json",
    )
    assert account.durable_queues()[queue] is True


async def test_five_hundred_concurrent_publishes_are_all_confirmed_and_counted(
    account: Account, queue: str
) -> None:
    async with broker_on(InMemorySecretStore({"rabbitmq": account.secret()})) as broker:
        await broker.publish(queue, b"{}")
        before = (await broker.queue_info(queue)).message_count

        outcomes = await asyncio.gather(
            *(broker.publish(queue, b'{"n": %d}' % n) for n in range(500)),
            return_exceptions=True,
        )
        after = (await broker.queue_info(queue)).message_count

    assert [o for o in outcomes if o is not None] == []
    assert after - before == 500


async def test_asking_about_an_unknown_queue_leaves_it_uncreated_on_the_broker(
    account: Account, queue: str
) -> None:
    async with broker_on(InMemorySecretStore({"rabbitmq": account.secret()})) as broker:
        info = await broker.queue_info(queue)
        # The probe's channel was closed by the broker; publishing must not depend on it.
        await broker.publish(f"{queue}-other", b"{}")

    assert info.exists is False
    assert queue not in account.durable_queues()


async def test_health_reports_the_brokers_version(account: Account) -> None:
    async with broker_on(InMemorySecretStore({"rabbitmq": account.secret()})) as broker:
        health = await broker.check()

    assert health.healthy is True
    assert health.info == {"version": rabbitmqctl("version").strip()}


async def test_an_unknown_vhost_is_a_queue_error(account: Account) -> None:
    secret = {**account.secret(), "vhost": f"missing-{uuid.uuid4().hex}"}

    async with broker_on(InMemorySecretStore({"rabbitmq": secret})) as broker:
        with pytest.raises(MessageQueueError) as caught:
            await broker.check()

    assert caught.value.message == "RabbitMQ refused to open the virtual host"


async def test_a_listener_that_never_speaks_amqp_is_a_queue_error_after_the_connect_timeout() -> (
    None
):
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen()  # the kernel completes the handshake; nobody ever answers
        started = time.monotonic()

        async with broker_on(
            InMemorySecretStore(), port=silent.getsockname()[1], connect_timeout=0.5
        ) as broker:
            with pytest.raises(MessageQueueError) as caught:
                await broker.publish("q", b"{}")

    assert 0.5 <= time.monotonic() - started < 1.5
    assert caught.value.details["cause"] == "TimeoutError"


async def test_opening_succeeds_while_the_broker_is_down_and_a_dropped_connection_recovers(
    account: Account, queue: str, relay: Relay
) -> None:
    store = InMemorySecretStore({"rabbitmq": account.secret()})
    async with broker_on(store, relay.port) as broker:
        with pytest.raises(MessageQueueError):
            await broker.publish(queue, b"{}")
        relay.restore()
        await broker.publish(queue, b"{}")
        relay.cut()
        await asyncio.sleep(0.2)  # lets the reader notice the lost connection
        with pytest.raises(MessageQueueError):
            await broker.publish(queue, b"{}")
        relay.restore()
        await broker.publish(queue, b"{}")
        info = await broker.queue_info(queue)

    assert info.message_count == 2


async def test_a_queue_declared_otherwise_refuses_the_publish_and_the_next_publish_still_works(
    account: Account, queue: str
) -> None:
    connection = await aiormq.connect(account.amqp_url())
    try:
        channel = await connection.channel()
        await channel.queue_declare(queue, durable=False)
    finally:
        await connection.close()

    async with broker_on(InMemorySecretStore({"rabbitmq": account.secret()})) as broker:
        with pytest.raises(ValidationError) as caught:
            await broker.publish(queue, b"{}")
        await broker.publish(f"{queue}-durable", b"{}")

        assert (await broker.queue_info(f"{queue}-durable")).message_count == 1
    assert caught.value.details == {"field": "queue_name", "cause": "ChannelPreconditionFailed"}


async def test_concurrent_calls_share_one_connection(account: Account, queue: str) -> None:
    async with broker_on(InMemorySecretStore({"rabbitmq": account.secret()})) as broker:
        await asyncio.gather(*(broker.publish(queue, b"{}") for _ in range(5)), broker.check())
        opened = await account.sessions()

    assert opened == 1
