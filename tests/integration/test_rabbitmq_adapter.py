"""RabbitMqBroker against the machine's RabbitMQ: confirms, concurrency, rotation, outages, errors.

Each test module gets a private vhost and user with a random password (made with rabbitmqctl and
deleted afterwards), so the shared broker and its dev_vhost are never disturbed. Outages are
staged with a TCP relay in front of the broker, which the tests start and stop; the broker itself
is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiormq
import attrs
import hvac
import pytest
import requests
from live_support import free_port

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.adapters.rabbitmq import RabbitMqBroker
from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.domain.errors import MessageQueueError, ValidationError

pytestmark = [pytest.mark.rabbitmq, pytest.mark.integration]

HOST = "127.0.0.1"
PORT = int(os.environ.get("RABBITMQ_PORT", "5672"))


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}. CI=true requires every service", pytrace=False)
    pytest.skip(reason)


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "--quiet", *args], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


async def rabbitmqctl_async(*args: str) -> None:
    """rabbitmqctl without blocking the loop, so the broker's frames are read meanwhile."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "--quiet", *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert await process.wait() == 0


def cli_safe_password() -> str:
    """A random password rabbitmqctl takes as an argument: one led by '-' reads as an option."""
    return "p" + secrets.token_urlsafe(16)


@attrs.define
class Account:
    """A private vhost and user on the shared broker."""

    user: str
    vhost: str
    password: str = attrs.field(repr=False)

    def secret(self, password: str | None = None) -> dict[str, str]:
        return {"user": self.user, "password": password or self.password, "vhost": self.vhost}

    def rotate(self) -> str:
        self.password = cli_safe_password()
        rabbitmqctl("change_password", self.user, self.password)
        return self.password

    def durable_queues(self) -> dict[str, bool]:
        lines = rabbitmqctl(
            "list_queues", "-p", self.vhost, "--no-table-headers", "name", "durable"
        )
        return {
            name: flag == "true" for name, flag in (line.split() for line in lines.splitlines())
        }

    def connection_count(self) -> int:
        lines = rabbitmqctl("list_connections", "--no-table-headers", "user")
        return sum(line.strip() == self.user for line in lines.splitlines())

    def amqp_url(self) -> str:
        return f"amqp://{self.user}:{self.password}@{HOST}:{PORT}/{self.vhost}"


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    if shutil.which("rabbitmqctl") is None:
        skip_or_fail("rabbitmqctl is not installed; it provisions the test vhost")
    name = f"colima_test_{uuid.uuid4().hex[:12]}"
    account = Account(user=name, vhost=name, password=cli_safe_password())
    try:
        rabbitmqctl("add_vhost", account.vhost)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        skip_or_fail(f"rabbitmqctl could not add a vhost ({type(exc).__name__}): broker down?")
    try:
        rabbitmqctl("add_user", account.user, account.password)
        rabbitmqctl("set_permissions", "-p", account.vhost, account.user, ".*", ".*", ".*")
        yield account
    finally:
        subprocess.run(["rabbitmqctl", "--quiet", "delete_user", name], capture_output=True)
        subprocess.run(["rabbitmqctl", "--quiet", "delete_vhost", name], capture_output=True)


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


@attrs.define
class Relay:
    """A TCP relay to the broker that can be taken down, dropping every connection through it."""

    port: int = attrs.field(factory=free_port)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = attrs.field(factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, HOST, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection(HOST, PORT)
        self._writers |= {client_w, broker_w}
        await asyncio.gather(_pipe(client_r, broker_w), _pipe(broker_r, client_w))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # A side that went away ends the relay of this connection; closing is all there is to do.
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


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


async def test_a_password_rotated_in_the_broker_and_in_vault_is_used_on_reconnect(
    account: Account, queue: str
) -> None:
    addr = os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200")
    token = os.environ.get("VAULT_TOKEN", "root")
    vault = hvac.Client(url=addr, token=token, timeout=2)
    path = f"colima-test/rabbitmq-{uuid.uuid4().hex}"
    try:
        vault.secrets.kv.v2.create_or_update_secret(
            path=path, secret=account.secret(), mount_point="secret"
        )
    except (requests.RequestException, hvac.exceptions.VaultError) as exc:
        vault.adapter.close()
        skip_or_fail(f"Vault at {addr} is unavailable ({type(exc).__name__}); make devstack-up")
    try:
        async with (
            VaultSecretStore.open(addr=addr, token=token) as store,
            RabbitMqBroker.open(
                host=HOST, port=PORT, credentials=CredentialSource(store), secret_path=path
            ) as broker,
        ):
            await broker.publish(queue, b"{}")
            vault.secrets.kv.v2.create_or_update_secret(
                path=path, secret=account.secret(account.rotate()), mount_point="secret"
            )
            await rabbitmqctl_async("close_all_user_connections", account.user, "rotation test")
            await asyncio.sleep(0.2)  # lets the reader take in the broker's Connection.Close

            await broker.publish(queue, b"{}")
            info = await broker.queue_info(queue)
    finally:
        vault.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point="secret")
        vault.adapter.close()

    assert info.message_count == 2


async def test_a_stale_cached_password_is_replaced_by_the_rotated_one(
    account: Account, queue: str
) -> None:
    store = InMemorySecretStore({"rabbitmq": account.secret()})
    credentials = CredentialSource(store)
    await credentials.get("rabbitmq")  # cached before the rotation, as a running app would have it
    store.put("rabbitmq", account.secret(account.rotate()))

    async with RabbitMqBroker.open(host=HOST, port=PORT, credentials=credentials) as broker:
        await broker.publish(queue, b"{}")

        assert (await broker.queue_info(queue)).message_count == 1


async def test_a_login_refused_twice_is_a_queue_error_without_the_password(
    account: Account,
) -> None:
    wrong = secrets.token_urlsafe(16)

    async with broker_on(InMemorySecretStore({"rabbitmq": account.secret(wrong)})) as broker:
        with pytest.raises(MessageQueueError) as caught:
            await broker.publish("q", b"{}")

    assert caught.value.message == "RabbitMQ refused the credentials from the secret store"
    assert caught.value.details == {"service": "rabbitmq", "cause": "ProbableAuthenticationError"}
    assert wrong not in f"{caught.value!s} {caught.value!r}"


async def test_an_unknown_vhost_is_a_queue_error(account: Account) -> None:
    secret = {**account.secret(), "vhost": f"missing-{uuid.uuid4().hex}"}

    async with broker_on(InMemorySecretStore({"rabbitmq": secret})) as broker:
        with pytest.raises(MessageQueueError) as caught:
            await broker.check()

    assert caught.value.message == "RabbitMQ refused to open the virtual host"


async def test_a_closed_port_is_a_queue_error_at_once() -> None:
    started = time.monotonic()

    async with broker_on(InMemorySecretStore(), port=free_port()) as broker:
        with pytest.raises(MessageQueueError) as caught:
            await broker.publish("q", b"{}")

    assert time.monotonic() - started < 2.0
    assert caught.value.details == {"service": "rabbitmq", "cause": "AMQPConnectionError"}


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
    account: Account, queue: str
) -> None:
    relay = Relay()
    async with broker_on(InMemorySecretStore({"rabbitmq": account.secret()}), relay.port) as broker:
        with pytest.raises(MessageQueueError):
            await broker.publish(queue, b"{}")
        await relay.start()
        await broker.publish(queue, b"{}")
        await relay.stop()
        await asyncio.sleep(0.2)  # lets the reader notice the lost connection
        with pytest.raises(MessageQueueError):
            await broker.publish(queue, b"{}")
        await relay.start()
        try:
            await broker.publish(queue, b"{}")
            info = await broker.queue_info(queue)
        finally:
            await relay.stop()

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


async def test_a_missing_secret_is_a_queue_error_naming_the_path() -> None:
    async with broker_on(InMemorySecretStore({})) as broker:
        with pytest.raises(MessageQueueError) as caught:
            await broker.check()

    assert caught.value.details == {"service": "rabbitmq", "secret_path": "rabbitmq"}


async def test_closing_the_broker_closes_its_connection_on_the_server(account: Account) -> None:
    async with broker_on(InMemorySecretStore({"rabbitmq": account.secret()})) as broker:
        await broker.check()
        opened = account.connection_count()

    await asyncio.sleep(0.2)  # the broker drops its record of the connection asynchronously
    assert (opened, account.connection_count()) == (1, 0)
