"""PostgreSQL through a psycopg pool, logging in with credentials from the secret store."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, LiteralString, NoReturn, TypeVar

import attrs
import psycopg
from psycopg.rows import TupleRow
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from colima_ref.adapters.breaker import ServiceBreaker, through
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.deadline import ADAPTER_DEADLINE, Deadline
from colima_ref.domain import errors
from colima_ref.domain.models import QueryResult, ServiceHealth
from colima_ref.domain.shared_runs import SharedRuns

SERVICE = "postgres"
TIMESTAMP_QUERY: LiteralString = "SELECT current_timestamp"
_VERSION_QUERY: LiteralString = "SELECT version()"

# libpq gives a failed login no SQLSTATE (28P01 / 28000), so the server's words are all there is.
# They assume the server's lc_messages is English, the Debian default.
_LOGIN_REJECTED = re.compile(
    r"password authentication failed|role \".*\" does not exist|no pg_hba\.conf entry"
    r"|is not permitted to log in"
)

_RECONNECT_WINDOW = 5.0  # seconds

T = TypeVar("T")
Connection = psycopg.AsyncConnection[TupleRow]


class _LoginRejectedError(Exception):
    """PostgreSQL refused the credentials: worth one more try with freshly read ones."""


class _StaleConnectionError(Exception):
    """A pooled connection was found dead: worth one more try on another connection."""


@attrs.frozen
class _Pool:
    """A connection pool and the login it was built with, for a connection past the pool."""

    pool: AsyncConnectionPool[Connection]
    login: dict[str, Any] = attrs.field(repr=False)


@attrs.define
class PostgresDatabase:
    """SqlDatabase and HealthProbe on a psycopg ``AsyncConnectionPool``.

    The pool is built on first use with the user, password and database read from ``credentials``
    at ``secret_path``; host and port are ours. When PostgreSQL refuses that login, the credential
    is invalidated, read again, the pool rebuilt and the call tried once more, so a rotated
    password is picked up without a restart.

    A call waits for a pooled connection up to ``operation_timeout``. Until PostgreSQL is seen to
    take a connection (at first, after a pooled connection was found dead, and when the pool
    gave up reconnecting), calls first open one of their own (one at a time, shared) and close
    it: a server that refuses connections fails them at once rather than after the pool's wait,
    and one that takes them again is used at once.

    Every call raises DatabaseConnectionError when PostgreSQL is unreachable or refuses the
    login, and TimeoutError (504) when it takes
    longer than ``operation_timeout``. Errors of the secret store (VaultUnavailableError...) pass
    through, except a missing secret, which is a DatabaseConnectionError.

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
    _current: _Pool | None = attrs.field(default=None, init=False)
    _reachable: bool = attrs.field(default=False, init=False)
    _probes: SharedRuns[str, None] = attrs.field(factory=SharedRuns, init=False, repr=False)
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
    ) -> AsyncIterator[PostgresDatabase]:
        """Yield a database that connects on first use and closes its pool on exit.

        Nothing is read or connected before the first call, so this succeeds while PostgreSQL
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
        """The server's ``current_timestamp`` as PostgreSQL writes it, in UTC."""
        result = await self._run(
            lambda conn: _first_value_as_text(conn, TIMESTAMP_QUERY), operation="current_timestamp"
        )
        return QueryResult(query=TIMESTAMP_QUERY, result=result)

    async def check(self) -> ServiceHealth:
        """Healthy with ``version`` ("PostgreSQL 15.20") when a query round-trips."""
        version = await self._run(
            lambda conn: _first_value_as_text(conn, _VERSION_QUERY), operation="check", probe=True
        )
        return ServiceHealth(healthy=True, info={"version": " ".join(version.split()[:2])})

    async def close(self) -> None:
        """Close the pool and every connection in it. The next call would build a new one."""
        async with self._lock:
            if self._current is not None:
                await self._current.pool.close()
                self._current = None

    async def _run(
        self, query: Callable[[Connection], Awaitable[T]], *, operation: str, probe: bool = False
    ) -> T:
        """Every call to PostgreSQL, through the circuit breaker, which records it as
        ``operation``; a health probe bypasses both."""
        return await through(
            None if probe else self._breaker, self._call, query, operation=operation
        )

    async def _call(self, query: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``query`` on a pooled connection: every call to PostgreSQL passes here."""
        try:
            return await self._deadline.run(self._logged_in(query))
        except TimeoutError as exc:
            raise errors.OperationTimeoutError(
                f"PostgreSQL did not answer within {self._operation_timeout:g} s",
                {"service": SERVICE},
            ) from exc

    async def _logged_in(self, query: Callable[[Connection], Awaitable[T]]) -> T:
        pool = await self._pool()
        try:
            return await self._attempt(pool, query)
        except _LoginRejectedError:
            pool = await self._pool(rejected=pool)
        try:
            return await self._attempt(pool, query)
        except _LoginRejectedError as exc:
            # Not kept: its pool would go on logging in with the refused password, and
            # the next call would wait out a checkout before reading the secret again.
            await self._discard(pool)
            raise errors.DatabaseConnectionError(
                "PostgreSQL refused the credentials from the secret store",
                _cause(exc.__cause__),
                service=SERVICE,
                outage=False,
            ) from exc.__cause__

    async def _attempt(self, pool: _Pool, query: Callable[[Connection], Awaitable[T]]) -> T:
        try:
            if not self._reachable:
                await self._probes.call(SERVICE, self._probe, pool)
            try:
                return await self._pooled(pool, query)
            except _StaleConnectionError:
                # Connections die idle when the server restarts or stops. Checking each one on
                # checkout would cost a round trip per call; instead the first call to meet a
                # dead one asks whether the server takes connections (failing at once if it
                # refuses them), has the pool drop its dead ones, then runs on a live one.
                self._reachable = False
                await self._probes.call(SERVICE, self._probe, pool)
                await pool.pool.check()
                return await self._pooled(pool, query)
        except psycopg.Error as exc:
            _raise_translated(exc)

    async def _probe(self, pool: _Pool) -> None:
        conn = await psycopg.AsyncConnection.connect(**pool.login)
        await conn.close()
        self._reachable = True

    def _reconnect_failed(self, _pool: object) -> None:
        self._reachable = False

    async def _pooled(self, pool: _Pool, query: Callable[[Connection], Awaitable[T]]) -> T:
        try:
            async with pool.pool.connection() as conn:
                try:
                    return await query(conn)
                except psycopg.OperationalError as exc:
                    if conn.broken:
                        raise _StaleConnectionError from exc
                    raise
        except (PoolTimeout, PoolClosed):
            # The pool never says why it has no connection (down? login refused? all busy?
            # replaced meanwhile?): one direct connection either serves the call or raises why.
            async with await psycopg.AsyncConnection.connect(**pool.login) as conn:
                _configure_sync(conn)
                return await query(conn)

    async def _pool(self, rejected: _Pool | None = None) -> _Pool:
        """The current pool, built if need be; a new one if ``rejected`` is still current."""
        if rejected is None and self._current is not None:
            return self._current
        async with self._lock:
            if rejected is not None:
                await self._drop(rejected)
            if self._current is None:
                self._current = await self._build()
            return self._current

    async def _discard(self, rejected: _Pool) -> None:
        async with self._lock:
            await self._drop(rejected)

    async def _drop(self, rejected: _Pool) -> None:
        """Forget ``rejected`` and its credential unless another caller already did (lock held)."""
        if self._current is rejected:
            self._current = None
            self._credentials.invalidate(self._secret_path)
            await rejected.pool.close()

    async def _build(self) -> _Pool:
        try:
            secret = await self._credentials.get(self._secret_path)
        except errors.ResourceNotFoundError as exc:
            raise errors.DatabaseConnectionError(
                "The secret store holds no PostgreSQL credentials",
                {"secret_path": self._secret_path},
                service=SERVICE,
                outage=False,
            ) from exc
        login: dict[str, Any] = {
            "host": self._host,
            "port": self._port,
            "user": secret.data.get("user", ""),
            "password": secret.data.get("password", ""),
            "dbname": secret.data.get("database", ""),
            # libpq counts whole seconds.
            "connect_timeout": max(1, math.ceil(self._connect_timeout)),
            "autocommit": True,
            "options": "-c TimeZone=UTC",
            # Two tiny fixed queries: the server parses them in no time, while psycopg's
            # bookkeeping of prepared statements was ~15 % of the busy samples per query.
            "prepare_threshold": None,
        }
        pool = AsyncConnectionPool[Connection](
            kwargs=login,
            min_size=self._min_size,
            max_size=self._max_size,
            # A busy pool is waited for as long as the call may take.
            timeout=self._operation_timeout,
            name=SERVICE,
            # The pool pauses longer after each failed reconnection, up to this window (5 min by
            # default); a short one keeps recovery within seconds of the server's return.
            reconnect_timeout=_RECONNECT_WINDOW,
            reconnect_failed=self._reconnect_failed,
            configure=_configure,
            open=False,
        )
        # Not waiting: the pool keeps connecting in the background while PostgreSQL is down.
        await pool.open(wait=False)
        return _Pool(pool, login)


def _configure_sync(conn: Connection) -> None:
    # Keep the server's own text for timestamps: the contract shows them as psql does. Set once
    # per connection; a loader registered per cursor copies the adapters map on every call.
    conn.adapters.register_loader("timestamptz", TextLoader)


async def _configure(conn: Connection) -> None:
    _configure_sync(conn)


async def _first_value_as_text(conn: Connection, sql: LiteralString) -> str:
    cursor = await conn.execute(sql)
    [(value,)] = await cursor.fetchall()
    return str(value)


def _cause(exc: BaseException | None) -> dict[str, str]:
    return {"cause": type(exc).__name__} if exc is not None else {}


def _raise_translated(exc: psycopg.Error) -> NoReturn:
    """Raise our error for psycopg's ``exc``. Our messages only: the driver's may quote the
    server. Called from an ``except``: a context manager would cost a generator per call."""
    if isinstance(exc, psycopg.OperationalError):
        if exc.sqlstate in {"28P01", "28000"} or _LOGIN_REJECTED.search(str(exc)):
            raise _LoginRejectedError from exc
        raise errors.DatabaseConnectionError(
            "PostgreSQL is unreachable", _cause(exc), service=SERVICE
        ) from exc
    raise errors.DatabaseConnectionError(
        "PostgreSQL failed the query", _cause(exc), service=SERVICE
    ) from exc
