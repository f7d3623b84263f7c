"""MySQL or MariaDB through an asyncmy pool, logging in with credentials from the secret store."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar

import asyncmy
import attrs
from asyncmy.connection import Connection
from asyncmy.errors import MySQLError
from asyncmy.pool import Pool

from colima_ref.adapters.breaker import ServiceBreaker, through
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.deadline import ADAPTER_DEADLINE, Deadline
from colima_ref.domain import errors
from colima_ref.domain.models import QueryResult, ServiceHealth

SERVICE = "mysql"
TIMESTAMP_QUERY = "SELECT NOW()"
_VERSION_QUERY = "SELECT VERSION()"
_ACCESS_DENIED = 1045  # ER_ACCESS_DENIED_ERROR: wrong user or password

T = TypeVar("T")


class _LoginRejectedError(Exception):
    """The server refused the credentials: worth one more try with freshly read ones."""


@attrs.define
class MySqlDatabase:
    """SqlDatabase and HealthProbe on an asyncmy pool (MySQL or MariaDB).

    asyncmy's ``create_pool`` connects at once and raises when the server is down, so the pool is
    created on first use, with the user, password and database read from ``credentials`` at
    ``secret_path``, and created again after a failure. When the server refuses that login, the
    credential is invalidated, read again, the pool rebuilt and the call tried once more, so a
    rotated password is picked up without a restart.

    Every call raises DatabaseConnectionError when the server is unreachable or refuses the login,
    and TimeoutError (504) when it takes longer than ``operation_timeout``. Errors of the secret
    store (VaultUnavailableError...) pass through, except a missing secret, which is a
    DatabaseConnectionError.

    With a ``breaker``, every call but ``check`` passes through it and raises CircuitBreakerError
    while it is open; a health probe always reaches the server, so recovery shows.
    """

    _host: str
    _port: int
    _credentials: CredentialSource
    _secret_path: str = SERVICE
    _connect_timeout: float = 2.0
    _operation_timeout: float = 5.0
    _min_size: int = 1
    _max_size: int = 10
    _breaker: ServiceBreaker | None = attrs.field(default=None, repr=False)
    _current: Pool | None = attrs.field(default=None, init=False)
    _created: int = attrs.field(default=0, init=False)
    _lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False, repr=False)
    _deadline: Deadline = attrs.field(default=ADAPTER_DEADLINE, init=False, repr=False)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        *,
        host: str,
        port: int,
        credentials: CredentialSource,
        secret_path: str = SERVICE,
        connect_timeout: float = 2.0,
        operation_timeout: float = 5.0,
        min_size: int = 1,
        max_size: int = 10,
        breaker: ServiceBreaker | None = None,
    ) -> AsyncIterator[MySqlDatabase]:
        """Yield a database that connects on first use and closes its pool on exit.

        Nothing is read or connected before the first call, so this succeeds while the server
        or the secret store is down.
        """
        database = cls(
            host,
            port,
            credentials,
            secret_path=secret_path,
            connect_timeout=connect_timeout,
            operation_timeout=operation_timeout,
            min_size=min_size,
            max_size=max_size,
            breaker=breaker,
        )
        try:
            yield database
        finally:
            await database.close()

    async def current_timestamp(self) -> QueryResult:
        """The server's ``NOW()`` in UTC, written as MySQL writes it."""
        moment = await self._run(
            lambda conn: _first_value(conn, TIMESTAMP_QUERY), operation="current_timestamp"
        )
        return QueryResult(query=TIMESTAMP_QUERY, result=moment.isoformat(sep=" "))

    async def check(self) -> ServiceHealth:
        """Healthy with ``version`` ("10.11.19-MariaDB-0+deb12u1") when a query round-trips."""
        version = await self._run(
            lambda conn: _first_value(conn, _VERSION_QUERY), operation="check", probe=True
        )
        return ServiceHealth(healthy=True, info={"version": str(version)})

    async def close(self) -> None:
        """Close the pool and every connection in it. The next call would create a new one."""
        async with self._lock:
            if self._current is not None:
                await _close(self._current)
                self._current = None

    async def _run(
        self, query: Callable[[Connection], Awaitable[T]], *, operation: str, probe: bool = False
    ) -> T:
        """Every call to MySQL, through the circuit breaker, which records it as
        ``operation``; a health probe bypasses both."""
        return await through(
            None if probe else self._breaker, self._call, query, operation=operation
        )

    async def _call(self, query: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``query`` on a pooled connection: every call to the server passes here."""
        try:
            with self._deadline.bound():
                created = self._created
                try:
                    return await self._attempt(query)
                except _LoginRejectedError:
                    await self._forget_login(unless_created_since=created)
                try:
                    return await self._attempt(query)
                except _LoginRejectedError as exc:
                    raise errors.DatabaseConnectionError(
                        "MySQL refused the credentials from the secret store",
                        {"cause": type(exc.__cause__).__name__},
                        service=SERVICE,
                        outage=False,
                    ) from exc.__cause__
        except TimeoutError as exc:
            raise errors.OperationTimeoutError(
                f"MySQL did not answer within {self._operation_timeout:g} s",
                {"service": SERVICE},
            ) from exc

    async def _attempt(self, query: Callable[[Connection], Awaitable[T]]) -> T:
        try:
            pool = await self._pool()
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
                return await query(conn)
            finally:
                pool.release(conn)
        except MySQLError as exc:
            _raise_translated(exc)

    async def _pool(self) -> Pool:
        if self._current is not None:
            return self._current
        async with self._lock:
            if self._current is None:
                self._current = await self._create()
                self._created += 1
            return self._current

    async def _forget_login(self, *, unless_created_since: int) -> None:
        """Drop the pool and the cached credential, unless a concurrent call already did."""
        async with self._lock:
            if self._created != unless_created_since:
                return
            self._credentials.invalidate(self._secret_path)
            if self._current is not None:
                await _close(self._current)
                self._current = None

    async def _create(self) -> Pool:
        try:
            secret = await self._credentials.get(self._secret_path)
        except errors.ResourceNotFoundError as exc:
            raise errors.DatabaseConnectionError(
                "The secret store holds no MySQL credentials",
                {"secret_path": self._secret_path},
                service=SERVICE,
                outage=False,
            ) from exc
        pool: Pool = await asyncmy.create_pool(
            host=self._host,
            port=self._port,
            user=secret.data.get("user", ""),
            password=secret.data.get("password", ""),
            db=secret.data.get("database") or None,
            minsize=self._min_size,
            maxsize=self._max_size,
            connect_timeout=max(1, math.ceil(self._connect_timeout)),
            autocommit=True,
            init_command="SET time_zone = '+00:00'",
        )
        return pool


async def _first_value(conn: Connection, sql: str) -> Any:
    async with conn.cursor() as cursor:
        await cursor.execute(sql)
        [(value,)] = await cursor.fetchall()
    return value


async def _close(pool: Pool) -> None:
    pool.close()
    await pool.wait_closed()


def _raise_translated(exc: MySQLError) -> NoReturn:
    """Raise our error for asyncmy's ``exc``. Our messages only: the driver's may quote the
    server. Called from an ``except``: a context manager would cost a generator per call."""
    if exc.args and exc.args[0] == _ACCESS_DENIED:
        raise _LoginRejectedError from exc
    raise errors.DatabaseConnectionError(
        "MySQL is unreachable or failed the query",
        {"cause": type(exc).__name__},
        service=SERVICE,
    ) from exc
