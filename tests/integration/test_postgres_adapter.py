"""PostgresDatabase against real PostgreSQL servers: queries, login rotation, outages, shutdown.

The shared server (127.0.0.1:5432) trusts every local login, so it cannot refuse a password.
Tests about logins and restarts use a private server these tests start on a free port with
scram-sha-256 and stop afterwards; the shared one is never stopped or reconfigured.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import attrs
import hvac
import psycopg
import pytest
import requests
from live_support import every_text_of, free_port
from psycopg import sql

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.adapters.postgres import PostgresDatabase
from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.domain.errors import (
    DatabaseConnectionError,
    OperationTimeoutError,
    VaultUnavailableError,
)
from colima_ref.domain.models import Secret

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

SHARED_PORT = int(os.environ.get("POSTGRES_PORT", "5432"))


def newest_server_binaries() -> Path:
    """Debian's layout, /usr/lib/postgresql/<major>/bin; PG_BIN names another place."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda bin_dir: int(bin_dir.parent.name)
    )
    return found[-1] if found else Path("/usr/lib/postgresql/bin")


PG_BIN = Path(os.environ.get("PG_BIN") or newest_server_binaries())
CONNECT_TIMEOUT = 1.0
VAULT_ADDR = os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200")
VAULT_TOKEN = os.environ.get("VAULT_TOKEN", "root")


def unreachable(detail: str) -> NoReturn:
    reason = f"postgres is unreachable ({detail})"
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


@attrs.define
class Server:
    """A PostgreSQL server we may create accounts on, as superuser ``postgres``."""

    port: int
    admin_password: str | None = attrs.field(default=None, repr=False)

    async def admin(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        return await psycopg.AsyncConnection.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.admin_password,
            dbname="postgres",
            autocommit=True,
            connect_timeout=2,
        )

    async def execute(self, statement: sql.Composable) -> list[tuple[object, ...]]:
        async with await self.admin() as conn:
            cursor = await conn.execute(statement)
            return await cursor.fetchall() if cursor.description else []

    @asynccontextmanager
    async def account(self) -> AsyncIterator[Account]:
        """A fresh login role owning a fresh database, both dropped on exit."""
        name = f"colima_pg_{secrets.token_hex(4)}"
        account = Account(name, secrets.token_urlsafe(18), name)
        user = sql.Identifier(name)
        await self.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(user, account.password)
        )
        await self.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(user, user))
        try:
            yield account
        finally:
            await self.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(user))
            await self.execute(sql.SQL("DROP ROLE {}").format(user))

    async def rotate(self, account: Account, password: str) -> None:
        """Change the account's password and end its sessions, as a rotation job would."""
        await self.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(account.user), password)
        )
        await self.execute(
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {}"
            ).format(account.user)
        )

    async def sessions_of(self, account: Account) -> int:
        rows = await self.execute(
            sql.SQL("SELECT count(*) FROM pg_stat_activity WHERE usename = {}").format(account.user)
        )
        return int(str(rows[0][0]))

    async def refuses(self, account: Account, password: str) -> bool:
        try:
            conn = await psycopg.AsyncConnection.connect(
                host="127.0.0.1",
                port=self.port,
                user=account.user,
                password=password,
                dbname=account.database,
                connect_timeout=2,
            )
        except psycopg.OperationalError as exc:
            return "password authentication failed" in str(exc)
        await conn.close()
        return False


@attrs.define
class PrivateServer(Server):
    """A throwaway cluster that checks passwords (scram-sha-256) and may be stopped at will."""

    workdir: Path = attrs.field(kw_only=True)

    def _run(self, *argv: str) -> None:
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        # initdb and postgres refuse to run as root.
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        password_file = self.workdir / "pw"
        password_file.write_text(f"{self.admin_password}\n")
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
            shutil.chown(password_file, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.workdir / "data"),
            "-U",
            "postgres",
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server unless it runs already."""
        if (self.workdir / "data" / "postmaster.pid").exists():
            return
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.workdir / "data"),
            "-o",
            options,
            "-l",
            str(self.workdir / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        """Stop the server if it runs."""
        if not (self.workdir / "data" / "postmaster.pid").exists():
            return
        self._run("pg_ctl", "-D", str(self.workdir / "data"), "-m", "fast", "-w", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivateServer]:
    """A PrivateServer on a free port for the length of the block, removed afterwards."""
    if not (PG_BIN / "initdb").exists():
        unreachable(f"no initdb in {PG_BIN} to start a private server; set PG_BIN")
    # Not under pytest's tmp_path: its parent is private to root, and the server runs as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="colima-pg-"))
    server = PrivateServer(free_port(), secrets.token_urlsafe(18), workdir=workdir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir)


@pytest.fixture(scope="module")
def private_server() -> Iterator[PrivateServer]:
    with private_postgres() as server:
        yield server


@pytest.fixture
async def shared_server() -> Server:
    server = Server(SHARED_PORT)
    try:
        await server.execute(sql.SQL("SELECT 1"))
    except psycopg.OperationalError as exc:
        unreachable(f"127.0.0.1:{SHARED_PORT}: {type(exc).__name__}")
    return server


@pytest.fixture
async def account(shared_server: Server) -> AsyncIterator[Account]:
    async with shared_server.account() as created:
        yield created


@pytest.fixture
async def private_account(private_server: PrivateServer) -> AsyncIterator[Account]:
    async with private_server.account() as created:
        yield created


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
    path = f"colima-test-postgres-{secrets.token_hex(4)}"
    try:
        yield client, path
    finally:
        client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point="secret")
        client.adapter.close()


def credentials_for(secret: dict[str, str]) -> CredentialSource:
    return CredentialSource(InMemorySecretStore(secrets={"postgres": secret}))


def open_database(
    port: int,
    credentials: CredentialSource,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    operation_timeout: float = 5.0,
    min_size: int = 1,
) -> AbstractAsyncContextManager[PostgresDatabase]:
    return PostgresDatabase.open(
        host="127.0.0.1",
        port=port,
        credentials=credentials,
        connect_timeout=connect_timeout,
        operation_timeout=operation_timeout,
        min_size=min_size,
    )


class CountingStore:
    """A SecretStore that counts its reads, to see the adapter ask again after a refusal."""

    def __init__(self, secret: dict[str, str]) -> None:
        self.store = InMemorySecretStore(secrets={"postgres": secret})
        self.reads = 0

    async def read(self, path: str) -> Secret:
        self.reads += 1
        return await self.store.read(path)


async def test_the_test_query_answers_the_servers_utc_timestamp_as_psql_writes_it(
    account: Account,
) -> None:
    async with open_database(SHARED_PORT, credentials_for(account.secret())) as database:
        result = await database.current_timestamp()

    assert result.query == "SELECT current_timestamp"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?\+00", result.result)
    answered = datetime.fromisoformat(result.result)
    assert abs(answered - datetime.now(UTC)) < timedelta(seconds=30)


async def test_health_reports_the_servers_version_in_short(
    shared_server: Server, account: Account
) -> None:
    [(server_version,)] = await shared_server.execute(sql.SQL("SHOW server_version"))

    async with open_database(SHARED_PORT, credentials_for(account.secret())) as database:
        health = await database.check()

    assert health.healthy
    assert health.info == {"version": f"PostgreSQL {str(server_version).split()[0]}"}


async def test_a_password_rotated_in_the_server_and_the_store_is_used_by_the_next_call(
    private_server: PrivateServer, private_account: Account
) -> None:
    store = InMemorySecretStore(secrets={"postgres": private_account.secret()})
    credentials = CredentialSource(store)
    rotated = secrets.token_urlsafe(18)
    async with open_database(private_server.port, credentials) as database:
        await database.current_timestamp()
        await private_server.rotate(private_account, rotated)
        store.put("postgres", private_account.secret(rotated))
        still_cached = (await credentials.get("postgres")).data["password"]

        await database.current_timestamp()

    assert still_cached == private_account.password
    assert await private_server.refuses(private_account, private_account.password)
    assert (await credentials.get("postgres")).data["password"] == rotated


@pytest.mark.vault
async def test_a_password_rotated_in_the_server_and_in_vault_is_used_by_the_next_call(
    private_server: PrivateServer,
    private_account: Account,
    vault_path: tuple[hvac.Client, str],
) -> None:
    client, path = vault_path
    kv = client.secrets.kv.v2
    kv.create_or_update_secret(path=path, secret=private_account.secret(), mount_point="secret")
    rotated = secrets.token_urlsafe(18)
    async with (
        VaultSecretStore.open(addr=VAULT_ADDR, token=VAULT_TOKEN) as store,
        PostgresDatabase.open(
            host="127.0.0.1",
            port=private_server.port,
            credentials=CredentialSource(store),
            secret_path=path,
            connect_timeout=CONNECT_TIMEOUT,
        ) as database,
    ):
        await database.current_timestamp()
        await private_server.rotate(private_account, rotated)
        kv.create_or_update_secret(
            path=path, secret=private_account.secret(rotated), mount_point="secret"
        )

        result = await database.current_timestamp()

    assert result.result.endswith("+00")
    assert await private_server.refuses(private_account, private_account.password)


async def test_a_refused_password_is_read_again_once_then_reported_without_the_password(
    private_server: PrivateServer, private_account: Account
) -> None:
    wrong = secrets.token_urlsafe(18)
    store = CountingStore(private_account.secret(wrong))
    async with open_database(private_server.port, CredentialSource(store)) as database:
        with pytest.raises(DatabaseConnectionError) as caught:
            await database.current_timestamp()

    assert caught.value.details == {"service": "postgres", "cause": "OperationalError"}
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
    assert caught.value.details == {"service": "postgres", "cause": "OperationalError"}
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
    assert caught.value.details == {"service": "postgres"}


async def test_a_missing_secret_is_a_database_connection_error_naming_the_path() -> None:
    credentials = CredentialSource(InMemorySecretStore(secrets={}))
    async with open_database(free_port(), credentials) as database:
        with pytest.raises(DatabaseConnectionError) as caught:
            await database.current_timestamp()

    assert caught.value.details == {"service": "postgres", "secret_path": "postgres"}


async def test_an_unavailable_secret_store_is_reported_as_such() -> None:
    credentials = CredentialSource(InMemorySecretStore(failing=True))
    async with open_database(free_port(), credentials) as database:
        with pytest.raises(VaultUnavailableError):
            await database.check()


async def test_a_server_down_at_start_is_used_once_it_comes_up(
    private_server: PrivateServer, private_account: Account
) -> None:
    credentials = credentials_for(private_account.secret())
    private_server.stop()
    try:
        async with open_database(private_server.port, credentials) as database:
            with pytest.raises(DatabaseConnectionError):
                await database.current_timestamp()
            private_server.start()
            result = await database.current_timestamp()
    finally:
        private_server.start()

    assert result.result.endswith("+00")


async def test_the_first_call_after_a_server_restart_succeeds(
    private_server: PrivateServer, private_account: Account
) -> None:
    """The pool waits ever longer between reconnections; the call must not wait for it."""
    credentials = credentials_for(private_account.secret())
    async with open_database(private_server.port, credentials) as database:
        await database.current_timestamp()
        private_server.stop()
        try:
            for _ in range(2):
                with pytest.raises(DatabaseConnectionError):
                    await database.current_timestamp()
                await asyncio.sleep(0.5)
        finally:
            private_server.start()
        back = time.monotonic()
        result = await database.current_timestamp()
        recovered_after = time.monotonic() - back

    assert result.result.endswith("+00")
    assert recovered_after < CONNECT_TIMEOUT + 1.0


async def test_closing_ends_every_session_and_leaves_nothing_to_warn_about(
    shared_server: Server, account: Account
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with open_database(
            SHARED_PORT, credentials_for(account.secret()), min_size=3
        ) as database:
            await asyncio.gather(*(database.current_timestamp() for _ in range(5)))
            open_sessions = await shared_server.sessions_of(account)
        del database
        gc.collect()

    assert open_sessions >= 1
    assert await shared_server.sessions_of(account) == 0
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
