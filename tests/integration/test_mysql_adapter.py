"""MySqlDatabase against the shared MariaDB: queries, login rotation, outages, shutdown.

Every test logs in as a user and database of its own, dropped afterwards. An outage is a closed
port, a silent listener or a TCP relay we stop and start: the shared server is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import secrets
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import asyncmy
import attrs
import hvac
import pytest
import requests
from asyncmy.errors import MySQLError
from live_support import every_text_of, free_port

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.adapters.mysql import MySqlDatabase
from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.domain.errors import (
    DatabaseConnectionError,
    OperationTimeoutError,
    VaultUnavailableError,
)
from colima_ref.domain.models import Secret

pytestmark = [pytest.mark.mysql, pytest.mark.integration]

PORT = int(os.environ.get("MYSQL_PORT", "3306"))
CONNECT_TIMEOUT = 1.0
VAULT_ADDR = os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200")
VAULT_TOKEN = os.environ.get("VAULT_TOKEN", "root")
ACCESS_DENIED = 1045


def unreachable(detail: str) -> NoReturn:
    reason = f"mysql is unreachable ({detail})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}. CI=true requires every service", pytrace=False)
    pytest.skip(reason)


@attrs.frozen
class Account:
    user: str
    password: str = attrs.field(repr=False)
    database: str

    def secret(self, password: str | None = None) -> dict[str, str]:
        return {
            "user": self.user,
            "password": password or self.password,
            "database": self.database,
        }


async def as_root(statement: str, *args: Any) -> list[Any]:
    """Run one statement on the shared server as root, which needs no password on loopback."""
    conn = await asyncmy.connect(host="127.0.0.1", port=PORT, user="root", connect_timeout=2)
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(statement, args or None)
            rows: list[Any] = await cursor.fetchall()
        await conn.commit()
        return rows
    finally:
        await conn.ensure_closed()


async def refuses(account: Account, password: str) -> bool:
    try:
        conn = await asyncmy.connect(
            host="127.0.0.1", port=PORT, user=account.user, password=password, connect_timeout=2
        )
    except MySQLError as exc:
        return exc.args[0] == ACCESS_DENIED
    await conn.ensure_closed()
    return False


async def sessions_of(account: Account) -> int:
    rows = await as_root(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", account.user
    )
    return int(rows[0][0])


async def rotate(account: Account, password: str) -> None:
    """Change the account's password and end its sessions, as a rotation job would."""
    await as_root("ALTER USER %s@'%%' IDENTIFIED BY %s", account.user, password)
    for (session,) in await as_root(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", account.user
    ):
        await as_root(f"KILL {int(session)}")


@pytest.fixture
async def account() -> AsyncIterator[Account]:
    try:
        await as_root("SELECT 1")
    except MySQLError as exc:
        unreachable(f"127.0.0.1:{PORT}: {type(exc).__name__} {exc.args[0]}")
    name = f"colima_my_{secrets.token_hex(4)}"
    created = Account(name, secrets.token_urlsafe(18), name)
    await as_root("CREATE USER %s@'%%' IDENTIFIED BY %s", name, created.password)
    await as_root(f"CREATE DATABASE `{name}`")
    await as_root(f"GRANT ALL ON `{name}`.* TO %s@'%%'", name)
    try:
        yield created
    finally:
        await as_root(f"DROP DATABASE `{name}`")
        await as_root("DROP USER %s@'%%'", name)


@attrs.define
class Relay:
    """A TCP relay to the shared server, stopped and started to play an outage, or held."""

    port: int = attrs.field(factory=free_port)
    flowing: asyncio.Event = attrs.field(factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = attrs.field(factory=list)
    _relays: set[asyncio.Task[Any]] = attrs.field(factory=set)

    async def start(self) -> None:
        self.flowing.set()
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self.flowing.set()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._relays, return_exceptions=True)
        await asyncio.gather(*(w.wait_closed() for w in self._writers), return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._relays.add(task)
            task.add_done_callback(self._relays.discard)
        self._writers.append(writer)
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", PORT)
        self._writers.append(upstream_writer)
        await asyncio.gather(
            _pipe(reader, upstream_writer, self.flowing),
            _pipe(upstream_reader, writer, self.flowing),
        )


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    writer.close()


@asynccontextmanager
async def relay() -> AsyncIterator[Relay]:
    opened = Relay()
    try:
        yield opened
    finally:
        await opened.stop()


@pytest.fixture
def vault_path() -> Iterator[tuple[hvac.Client, str]]:
    """A fresh KV v2 path in the devstack's Vault, deleted with all its versions afterwards."""
    client = hvac.Client(url=VAULT_ADDR, token=VAULT_TOKEN, timeout=2)
    try:
        client.sys.read_health_status(method="GET")
    except requests.RequestException as exc:
        reason = f"vault is unreachable ({type(exc).__name__})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}. CI=true requires every service", pytrace=False)
        pytest.skip(reason)
    path = f"colima-test-mysql-{secrets.token_hex(4)}"
    try:
        yield client, path
    finally:
        client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point="secret")
        client.adapter.close()


def credentials_for(secret: dict[str, str]) -> CredentialSource:
    return CredentialSource(InMemorySecretStore(secrets={"mysql": secret}))


def open_database(
    port: int,
    credentials: CredentialSource,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    operation_timeout: float = 5.0,
    min_size: int = 1,
    max_size: int = 10,
) -> AbstractAsyncContextManager[MySqlDatabase]:
    return MySqlDatabase.open(
        host="127.0.0.1",
        port=port,
        credentials=credentials,
        connect_timeout=connect_timeout,
        operation_timeout=operation_timeout,
        min_size=min_size,
        max_size=max_size,
    )


class CountingStore:
    """A SecretStore that counts its reads, to see the adapter ask again after a refusal."""

    def __init__(self, secret: dict[str, str]) -> None:
        self.store = InMemorySecretStore(secrets={"mysql": secret})
        self.reads = 0

    async def read(self, path: str) -> Secret:
        self.reads += 1
        return await self.store.read(path)


async def test_the_test_query_answers_the_servers_utc_time_as_mysql_writes_it(
    account: Account,
) -> None:
    async with open_database(PORT, credentials_for(account.secret())) as database:
        result = await database.current_timestamp()

    assert result.query == "SELECT NOW()"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", result.result)
    answered = datetime.fromisoformat(result.result).replace(tzinfo=UTC)
    assert abs(answered - datetime.now(UTC)) < timedelta(seconds=30)


async def test_health_reports_the_servers_version(account: Account) -> None:
    [(version,)] = await as_root("SELECT VERSION()")

    async with open_database(PORT, credentials_for(account.secret())) as database:
        health = await database.check()

    assert health.healthy
    assert health.info == {"version": version}


async def test_a_password_rotated_in_the_server_and_the_store_is_used_by_the_next_call(
    account: Account,
) -> None:
    store = InMemorySecretStore(secrets={"mysql": account.secret()})
    credentials = CredentialSource(store)
    rotated = secrets.token_urlsafe(18)
    async with open_database(PORT, credentials) as database:
        await database.current_timestamp()
        await rotate(account, rotated)
        store.put("mysql", account.secret(rotated))
        still_cached = (await credentials.get("mysql")).data["password"]

        await database.current_timestamp()

    assert still_cached == account.password
    assert await refuses(account, account.password)
    assert (await credentials.get("mysql")).data["password"] == rotated


@pytest.mark.vault
async def test_a_password_rotated_in_the_server_and_in_vault_is_used_by_the_next_call(
    account: Account, vault_path: tuple[hvac.Client, str]
) -> None:
    client, path = vault_path
    kv = client.secrets.kv.v2
    kv.create_or_update_secret(path=path, secret=account.secret(), mount_point="secret")
    rotated = secrets.token_urlsafe(18)
    async with (
        VaultSecretStore.open(addr=VAULT_ADDR, token=VAULT_TOKEN) as store,
        MySqlDatabase.open(
            host="127.0.0.1",
            port=PORT,
            credentials=CredentialSource(store),
            secret_path=path,
            connect_timeout=CONNECT_TIMEOUT,
        ) as database,
    ):
        await database.current_timestamp()
        await rotate(account, rotated)
        kv.create_or_update_secret(path=path, secret=account.secret(rotated), mount_point="secret")

        result = await database.current_timestamp()

    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", result.result)
    assert await refuses(account, account.password)


async def test_a_refused_password_is_read_again_once_then_reported_without_the_password(
    account: Account,
) -> None:
    wrong = secrets.token_urlsafe(18)
    store = CountingStore(account.secret(wrong))
    async with open_database(PORT, CredentialSource(store)) as database:
        with pytest.raises(DatabaseConnectionError) as caught:
            await database.current_timestamp()

    assert caught.value.details == {"service": "mysql", "cause": "OperationalError"}
    assert store.reads == 2
    assert wrong not in every_text_of(caught.value)


async def test_a_closed_port_raises_database_connection_error_within_the_connect_timeout() -> None:
    secret = {"user": "nobody", "password": secrets.token_urlsafe(18), "database": "nowhere"}
    async with open_database(free_port(), credentials_for(secret)) as database:
        started = time.monotonic()
        with pytest.raises(DatabaseConnectionError) as caught:
            await database.current_timestamp()
        elapsed = time.monotonic() - started

    assert elapsed < CONNECT_TIMEOUT + 1.0
    assert caught.value.details == {"service": "mysql", "cause": "OperationalError"}
    assert secret["password"] not in every_text_of(caught.value)


async def test_a_server_that_never_answers_raises_timeout_error_at_the_operation_timeout() -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold_silently(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(hold_silently, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    secret = {"user": "nobody", "password": "unused", "database": "nowhere"}
    try:
        async with open_database(
            port, credentials_for(secret), connect_timeout=2.0, operation_timeout=0.5
        ) as database:
            started = time.monotonic()
            with pytest.raises(OperationTimeoutError) as caught:
                await database.check()
            elapsed = time.monotonic() - started
    finally:
        silent.close()
        for writer in held:
            writer.close()
            await writer.wait_closed()
        await silent.wait_closed()

    assert 0.5 <= elapsed < 1.5
    assert caught.value.details == {"service": "mysql"}


async def test_a_missing_secret_is_a_database_connection_error_naming_the_path() -> None:
    credentials = CredentialSource(InMemorySecretStore(secrets={}))
    async with open_database(free_port(), credentials) as database:
        with pytest.raises(DatabaseConnectionError) as caught:
            await database.current_timestamp()

    assert caught.value.details == {"service": "mysql", "secret_path": "mysql"}


async def test_an_unavailable_secret_store_is_reported_as_such() -> None:
    credentials = CredentialSource(InMemorySecretStore(failing=True))
    async with open_database(free_port(), credentials) as database:
        with pytest.raises(VaultUnavailableError):
            await database.check()


async def test_a_server_down_at_start_is_used_once_it_comes_up(account: Account) -> None:
    async with (
        relay() as server,
        open_database(server.port, credentials_for(account.secret())) as database,
    ):
        with pytest.raises(DatabaseConnectionError):
            await database.current_timestamp()
        await server.start()
        result = await database.current_timestamp()

    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", result.result)


async def test_the_first_call_after_the_server_returns_succeeds(account: Account) -> None:
    async with (
        relay() as server,
        open_database(server.port, credentials_for(account.secret()), min_size=2) as database,
    ):
        await server.start()
        await database.current_timestamp()
        await server.stop()
        with pytest.raises(DatabaseConnectionError):
            await database.current_timestamp()
        await server.start()
        back = time.monotonic()
        await database.current_timestamp()
        recovered_after = time.monotonic() - back

    assert recovered_after < CONNECT_TIMEOUT + 1.0


async def test_a_query_cut_short_by_the_timeout_leaves_no_answer_for_the_next_call(
    account: Account,
) -> None:
    async with (
        relay() as server,
        open_database(
            server.port, credentials_for(account.secret()), operation_timeout=0.5
        ) as database,
    ):
        await server.start()
        await database.current_timestamp()
        server.flowing.clear()
        with pytest.raises(OperationTimeoutError):
            await database.check()
        server.flowing.set()
        result = await database.current_timestamp()

    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", result.result)


async def test_a_call_still_waiting_for_a_connection_when_the_pool_closes_is_refused(
    account: Account,
) -> None:
    credentials = credentials_for(account.secret())
    async with (
        relay() as server,
        open_database(server.port, credentials, operation_timeout=1.0, max_size=1) as database,
    ):
        await server.start()
        await database.current_timestamp()
        server.flowing.clear()
        holder = asyncio.create_task(database.current_timestamp())
        await asyncio.sleep(0.3)
        waiter = asyncio.create_task(database.current_timestamp())
        await asyncio.sleep(0.1)
        closing = asyncio.create_task(database.close())
        held, waited = await asyncio.gather(holder, waiter, return_exceptions=True)
        await closing
        server.flowing.set()

    assert isinstance(held, OperationTimeoutError)
    assert isinstance(waited, DatabaseConnectionError)
    assert waited.details == {"service": "mysql", "cause": "RuntimeError"}


async def test_closing_ends_every_session_and_leaves_nothing_to_warn_about(
    account: Account,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with open_database(PORT, credentials_for(account.secret()), min_size=3) as database:
            await asyncio.gather(*(database.current_timestamp() for _ in range(5)))
            open_sessions = await sessions_of(account)
        del database
        gc.collect()

    assert open_sessions >= 1
    assert await sessions_of(account) == 0
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
