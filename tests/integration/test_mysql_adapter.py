"""MySqlDatabase against the shared MariaDB: its test query, its health, and what a server that
goes away or holds its answers does to calls and to the pool. Logins, timeouts and shutdown are in
the contract suite (tests/contract/test_logins.py, test_outages.py).

Every test logs in as a user and database of its own, dropped afterwards. An outage is a TCP relay
we cut, restore or silence: the shared server is never stopped.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import pytest
from live_support import Relay, credentials_for
from servers.mysql import PORT, Account, as_root, mysql_account

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.mysql import MySqlDatabase
from colima_ref.domain.errors import DatabaseConnectionError, OperationTimeoutError

pytestmark = [pytest.mark.mysql, pytest.mark.integration]

CONNECT_TIMEOUT = 1.0
TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


@pytest.fixture
async def account() -> AsyncIterator[Account]:
    async with mysql_account() as created:
        yield created


@pytest.fixture
def relay() -> Iterator[Relay]:
    """A relay to the shared server, not yet listening."""
    opened = Relay(("127.0.0.1", PORT))
    try:
        yield opened
    finally:
        opened.close()


def open_database(
    port: int,
    credentials: CredentialSource,
    *,
    operation_timeout: float = 5.0,
    min_size: int = 1,
    max_size: int = 10,
) -> AbstractAsyncContextManager[MySqlDatabase]:
    return MySqlDatabase.open(
        host="127.0.0.1",
        port=port,
        credentials=credentials,
        connect_timeout=CONNECT_TIMEOUT,
        operation_timeout=operation_timeout,
        min_size=min_size,
        max_size=max_size,
    )


async def test_the_test_query_answers_the_servers_utc_time_as_mysql_writes_it(
    account: Account,
) -> None:
    async with open_database(PORT, credentials_for("mysql", account.secret())) as database:
        result = await database.current_timestamp()

    assert result.query == "SELECT NOW()"
    assert re.fullmatch(TIMESTAMP, result.result)
    answered = datetime.fromisoformat(result.result).replace(tzinfo=UTC)
    assert abs(answered - datetime.now(UTC)) < timedelta(seconds=30)


async def test_health_reports_the_servers_version(account: Account) -> None:
    [(version,)] = await as_root("SELECT VERSION()")

    async with open_database(PORT, credentials_for("mysql", account.secret())) as database:
        health = await database.check()

    assert health.healthy
    assert health.info == {"version": version}


async def test_a_server_down_at_start_is_used_once_it_comes_up(
    account: Account, relay: Relay
) -> None:
    async with open_database(relay.port, credentials_for("mysql", account.secret())) as database:
        with pytest.raises(DatabaseConnectionError):
            await database.current_timestamp()
        relay.restore()
        result = await database.current_timestamp()

    assert re.fullmatch(TIMESTAMP, result.result)


async def test_the_first_call_after_the_server_returns_succeeds(
    account: Account, relay: Relay
) -> None:
    credentials = credentials_for("mysql", account.secret())
    async with open_database(relay.port, credentials, min_size=2) as database:
        relay.restore()
        await database.current_timestamp()
        relay.cut()
        with pytest.raises(DatabaseConnectionError):
            await database.current_timestamp()
        relay.restore()
        back = time.monotonic()
        await database.current_timestamp()
        recovered_after = time.monotonic() - back

    assert recovered_after < CONNECT_TIMEOUT + 1.0


async def test_a_query_cut_short_by_the_timeout_leaves_no_answer_for_the_next_call(
    account: Account, relay: Relay
) -> None:
    credentials = credentials_for("mysql", account.secret())
    async with open_database(relay.port, credentials, operation_timeout=0.5) as database:
        relay.restore()
        await database.current_timestamp()
        relay.inject("silent")
        with pytest.raises(OperationTimeoutError):
            await database.check()
        relay.heal()
        result = await database.current_timestamp()

    assert re.fullmatch(TIMESTAMP, result.result)


async def test_a_call_still_waiting_for_a_connection_when_the_pool_closes_is_refused(
    account: Account, relay: Relay
) -> None:
    credentials = credentials_for("mysql", account.secret())
    async with open_database(
        relay.port, credentials, operation_timeout=1.0, max_size=1
    ) as database:
        relay.restore()
        await database.current_timestamp()
        relay.inject("silent")
        holder = asyncio.create_task(database.current_timestamp())
        await asyncio.sleep(0.3)
        waiter = asyncio.create_task(database.current_timestamp())
        await asyncio.sleep(0.1)
        closing = asyncio.create_task(database.aclose())
        held, waited = await asyncio.gather(holder, waiter, return_exceptions=True)
        await closing
        relay.heal()

    assert isinstance(held, OperationTimeoutError)
    assert isinstance(waited, DatabaseConnectionError)
    assert waited.details == {"service": "mysql", "cause": "RuntimeError"}
