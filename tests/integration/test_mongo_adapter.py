"""MongoDocumentDatabase against private SecantusDB servers: what it answers, how it reports what
the server fails, and recovery. Logins, timeouts and shutdown are in the contract suite
(tests/contract/test_logins.py, test_outages.py).

Each server here is started on a free loopback port with test commands enabled
(``configureFailPoint`` makes the server fail on cue), so nothing touches the devstack's 27017.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from live_support import credentials_for
from servers.mongo import COLLECTIONS, Account, Secantus, mongo_account

from colima_ref.adapters.mongo import MongoDocumentDatabase
from colima_ref.domain.errors import DatabaseConnectionError, OperationTimeoutError

pytestmark = [pytest.mark.mongodb, pytest.mark.integration]


@pytest.fixture
async def account(secantus_server: Secantus) -> AsyncIterator[Account]:
    async with mongo_account(secantus_server) as created:
        yield created


def mongo_on(
    account: Account, **options: Any
) -> AbstractAsyncContextManager[MongoDocumentDatabase]:
    return MongoDocumentDatabase.open(
        host="127.0.0.1",
        port=account.server.port,
        credentials=credentials_for("mongodb", account.secret()),
        **options,
    )


async def test_collection_names_are_the_secret_databases_collections_sorted(
    account: Account,
) -> None:
    async with mongo_on(account) as mongo:
        names = await mongo.collection_names()

    assert names == sorted(COLLECTIONS)


async def test_health_reports_the_version_the_server_builds_as(account: Account) -> None:
    with account.server.admin() as client:
        expected = client.admin.command("buildInfo")["version"]

    async with mongo_on(account) as mongo:
        health = await mongo.check()

    assert (health.healthy, health.info) == (True, {"version": expected})


async def test_opening_succeeds_with_the_server_down_and_calls_recover_once_it_is_up() -> None:
    late = Account(Secantus())

    async with mongo_on(late, connect_timeout=0.5) as mongo:
        with pytest.raises(DatabaseConnectionError):
            await mongo.check()
        late.server.start()
        try:
            late.create()
            started = time.monotonic()
            names = await _first_answer(mongo, within=10.0)
        finally:
            late.server.stop()

    assert names == sorted(COLLECTIONS)
    assert time.monotonic() - started < 10


async def _first_answer(mongo: MongoDocumentDatabase, *, within: float) -> list[str]:
    # pymongo's monitor re-checks a server it failed to reach every 0.5 s at the soonest, so with
    # a 0.5 s selection timeout the first call can still miss the server that just came back.
    deadline = time.monotonic() + within
    while True:
        try:
            return await mongo.collection_names()
        except DatabaseConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (2, "MongoDB failed the command"),
        (13, "MongoDB does not let our user run the command"),
    ],
)
async def test_a_command_the_server_fails_is_a_connection_error_naming_the_code(
    account: Account, code: int, message: str
) -> None:
    account.server.fail_next(["listCollections"], errorCode=code)

    async with mongo_on(account) as mongo:
        with pytest.raises(DatabaseConnectionError) as caught:
            await mongo.collection_names()

    assert caught.value.message == message
    assert caught.value.details == {"service": "mongodb", "cause": "OperationFailure", "code": code}


async def test_a_connection_dropped_on_every_try_is_a_connection_error(account: Account) -> None:
    account.server.fail_next(["listCollections"], times=2, closeConnection=True)

    async with mongo_on(account) as mongo:
        with pytest.raises(DatabaseConnectionError) as caught:
            await mongo.collection_names()
        names = await mongo.collection_names()

    assert caught.value.message == "MongoDB dropped the connection"
    assert names == sorted(COLLECTIONS)


async def test_a_command_slower_than_the_operation_timeout_is_a_gateway_timeout(
    account: Account,
) -> None:
    account.server.fail_next(["listCollections"], times=2, blockConnection=True, blockTimeMS=3000)
    started = time.monotonic()

    async with mongo_on(account, operation_timeout=0.5) as mongo:
        with pytest.raises(OperationTimeoutError) as caught:
            await mongo.collection_names()

    assert caught.value.details["service"] == "mongodb"
    assert time.monotonic() - started < 2.0


async def test_a_closed_database_connects_again_on_the_next_call(account: Account) -> None:
    async with mongo_on(account) as mongo:
        await mongo.check()
        await mongo.aclose()

        names = await mongo.collection_names()

    assert names == sorted(COLLECTIONS)
