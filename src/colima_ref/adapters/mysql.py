"""MySQL or MariaDB through an asyncmy pool, logging in with credentials from the secret store."""

from __future__ import annotations

import math
from typing import Any, NoReturn

import asyncmy
import attrs
from asyncmy.errors import MySQLError
from asyncmy.pool import Pool

from colima_ref.adapters.login import LoginRefusedError, Service
from colima_ref.adapters.sql_pool import SqlPoolAdapter
from colima_ref.domain import errors
from colima_ref.domain.models import QueryResult, Secret, ServiceHealth
from colima_ref.settings import Endpoint, Settings

SERVICE = "mysql"
MYSQL = Service(SERVICE, "MySQL", errors.DatabaseConnectionError, SERVICE)
TIMESTAMP_QUERY = "SELECT NOW()"
_VERSION_QUERY = "SELECT VERSION()"
_ACCESS_DENIED = 1045  # ER_ACCESS_DENIED_ERROR: wrong user or password


@attrs.define
class MySqlDatabase(SqlPoolAdapter[Pool]):
    """SqlDatabase and HealthProbe on an asyncmy pool (MySQL or MariaDB).

    asyncmy's ``create_pool`` connects at once and raises when the server is down, so the pool is
    created on first use, with the user, password and database read from ``credentials`` at
    ``secret_path`` (`LoginOptions`), and created again after a failure. When the server refuses
    that login, the credential is invalidated, read again, the pool rebuilt and the call tried
    once more, so a rotated password is picked up without a restart.

    Every call raises DatabaseConnectionError when the server is unreachable or refuses the login,
    and OperationTimeoutError (504) when it takes longer than ``operation_timeout``. Errors of the
    secret store (VaultUnavailableError...) pass through, except a missing secret, which is a
    DatabaseConnectionError.

    With a ``breaker``, every call but ``check`` passes through it and raises CircuitBreakerError
    while it is open; a health probe always reaches the server, so recovery shows.
    """

    service = MYSQL

    @staticmethod
    def endpoint_in(settings: Settings) -> Endpoint:
        return settings.mysql

    async def current_timestamp(self) -> QueryResult:
        """The server's ``NOW()`` in UTC, written as MySQL writes it."""
        moment = await self._login.run(
            lambda pool: _first_value(pool, TIMESTAMP_QUERY), operation="current_timestamp"
        )
        return QueryResult(query=TIMESTAMP_QUERY, result=moment.isoformat(sep=" "))

    async def check(self) -> ServiceHealth:
        """Healthy with ``version`` ("10.11.19-MariaDB-0+deb12u1") when a query round-trips."""
        version = await self._login.run(
            lambda pool: _first_value(pool, _VERSION_QUERY), operation="check", probe=True
        )
        return ServiceHealth(healthy=True, info={"version": str(version)})

    async def _build(self, secret: Secret) -> Pool:
        try:
            pool: Pool = await asyncmy.create_pool(
                host=self._host,
                port=self._port,
                user=secret.data.get("user", ""),
                password=secret.data.get("password", ""),
                db=secret.data.get("database") or None,
                minsize=self._min_size,
                maxsize=self._max_size,
                connect_timeout=max(1, math.ceil(self._login.connect_timeout)),
                autocommit=True,
                init_command="SET time_zone = '+00:00'",
            )
        except MySQLError as exc:
            _raise_translated(exc)
        return pool

    @staticmethod
    async def _close(pool: Pool) -> None:
        pool.close()
        await pool.wait_closed()


async def _first_value(pool: Pool, sql: str) -> Any:
    try:
        try:
            conn = await pool.acquire()
        except RuntimeError as exc:
            # asyncmy's answer to a caller still waiting when a refused login closed the pool.
            raise errors.DatabaseConnectionError(
                "The MySQL pool was replaced while the call waited for a connection",
                {"cause": type(exc).__name__},
                service=SERVICE,
            ) from exc
        try:
            # asyncmy closes a connection whose read was cancelled, so a query cut short by
            # the operation timeout never hands its late answer to the next call.
            async with conn.cursor() as cursor:
                await cursor.execute(sql)
                [(value,)] = await cursor.fetchall()
            return value
        finally:
            pool.release(conn)
    except MySQLError as exc:
        _raise_translated(exc)


def _raise_translated(exc: MySQLError) -> NoReturn:
    """Raise our error for asyncmy's ``exc``. Our messages only: the driver's may quote the
    server."""
    if exc.args and exc.args[0] == _ACCESS_DENIED:
        raise LoginRefusedError from exc
    raise errors.DatabaseConnectionError(
        "MySQL is unreachable or failed the query",
        {"cause": type(exc).__name__},
        service=SERVICE,
    ) from exc
