"""Behaviour every SqlDatabase shares: the contract's test query and a timestamp it answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from colima_ref.ports.databases import SqlDatabase

from .conftest import open_adapter, service_of

TEST_QUERY = {"postgres": "SELECT current_timestamp", "mysql": "SELECT NOW()"}


@pytest.fixture(
    params=[
        "memory:postgres",
        "memory:mysql",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def sql_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
async def sql_database(sql_backend: str) -> AsyncIterator[SqlDatabase]:
    async with open_adapter(SqlDatabase, sql_backend) as database:
        yield database


async def test_the_test_query_is_the_engines_own(
    sql_database: SqlDatabase, sql_backend: str
) -> None:
    result = await sql_database.current_timestamp()

    assert result.query == TEST_QUERY[service_of(sql_backend)]


async def test_the_result_is_a_timestamp_near_now(sql_database: SqlDatabase) -> None:
    result = await sql_database.current_timestamp()

    answered = datetime.fromisoformat(result.result)
    if answered.tzinfo is None:
        # NOW() answers in the session's time zone, which may be any of UTC-12..UTC+14.
        slack = timedelta(hours=14, minutes=5)
        answered = answered.replace(tzinfo=UTC)
    else:
        slack = timedelta(minutes=5)
    assert abs(answered - datetime.now(UTC)) < slack
