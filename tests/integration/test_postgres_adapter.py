"""PostgresDatabase against real PostgreSQL servers: its test query, its health, and recovery
from a server that stops. Logins, timeouts and shutdown are in the contract suite
(tests/contract/test_logins.py, test_outages.py).

The shared server (127.0.0.1:5432) trusts every local login; the restart tests use the private
server of tests/conftest.py, which may be stopped (servers/postgres.py).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import pytest
from live_support import credentials_for
from psycopg import sql
from servers.postgres import SHARED_PORT, Account, PrivateServer, Server, shared_server

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.postgres import PostgresDatabase
from colima_ref.domain.errors import DatabaseConnectionError

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

CONNECT_TIMEOUT = 1.0


@pytest.fixture
async def shared() -> Server:
    return await shared_server()


@pytest.fixture
async def account(shared: Server) -> AsyncIterator[Account]:
    async with shared.account() as created:
        yield created


@pytest.fixture
async def private_account(private_postgres_server: PrivateServer) -> AsyncIterator[Account]:
    async with private_postgres_server.account() as created:
        yield created


def open_database(
    port: int, credentials: CredentialSource
) -> AbstractAsyncContextManager[PostgresDatabase]:
    return PostgresDatabase.open(
        host="127.0.0.1", port=port, credentials=credentials, connect_timeout=CONNECT_TIMEOUT
    )


async def test_the_test_query_answers_the_servers_utc_timestamp_as_psql_writes_it(
    account: Account,
) -> None:
    async with open_database(
        SHARED_PORT, credentials_for("postgres", account.secret())
    ) as database:
        result = await database.current_timestamp()

    assert result.query == "SELECT current_timestamp"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?\+00", result.result)
    answered = datetime.fromisoformat(result.result)
    assert abs(answered - datetime.now(UTC)) < timedelta(seconds=30)


async def test_health_reports_the_servers_version_in_short(
    shared: Server, account: Account
) -> None:
    [(server_version,)] = await shared.execute(sql.SQL("SHOW server_version"))

    async with open_database(
        SHARED_PORT, credentials_for("postgres", account.secret())
    ) as database:
        health = await database.check()

    assert health.healthy
    assert health.info == {"version": f"PostgreSQL {str(server_version).split()[0]}"}


async def test_a_server_down_at_start_is_used_once_it_comes_up(
    private_postgres_server: PrivateServer, private_account: Account
) -> None:
    server = private_postgres_server
    credentials = credentials_for("postgres", private_account.secret())
    server.stop()
    try:
        async with open_database(server.port, credentials) as database:
            with pytest.raises(DatabaseConnectionError):
                await database.current_timestamp()
            server.start()
            result = await database.current_timestamp()
    finally:
        server.start()

    assert result.result.endswith("+00")


async def test_the_first_call_after_a_server_restart_succeeds(
    private_postgres_server: PrivateServer, private_account: Account
) -> None:
    """The pool waits ever longer between reconnections; the call must not wait for it."""
    server = private_postgres_server
    credentials = credentials_for("postgres", private_account.secret())
    async with open_database(server.port, credentials) as database:
        await database.current_timestamp()
        server.stop()
        try:
            for _ in range(2):
                with pytest.raises(DatabaseConnectionError):
                    await database.current_timestamp()
                await asyncio.sleep(0.5)
        finally:
            server.start()
        back = time.monotonic()
        result = await database.current_timestamp()
        recovered_after = time.monotonic() - back

    assert result.result.endswith("+00")
    assert recovered_after < CONNECT_TIMEOUT + 1.0
