"""PostgreSQL through a psycopg pool, logging in with credentials from the secret store."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, LiteralString, NoReturn, TypeVar

import attrs
import psycopg
from psycopg.rows import TupleRow
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from colima_ref.adapters.login import LoginRefusedError, Service
from colima_ref.adapters.sql_pool import SqlPoolAdapter
from colima_ref.domain import errors
from colima_ref.domain.models import QueryResult, Secret, ServiceHealth
from colima_ref.domain.shared_runs import SharedRuns
from colima_ref.settings import Endpoint, Settings

SERVICE = "postgres"
POSTGRES = Service(SERVICE, "PostgreSQL", errors.DatabaseConnectionError, SERVICE)
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

# Calls given up on at the operation timeout that are still winding down: the event loop keeps
# only weak references to tasks.
_winding_down: set[asyncio.Task[Any]] = set()


class _StaleConnectionError(Exception):
    """A pooled connection was found dead: worth one more try on another connection."""


@attrs.frozen
class _Pool:
    """A connection pool and the login it was built with, for a connection past the pool."""

    pool: AsyncConnectionPool[Connection]
    login: dict[str, Any] = attrs.field(repr=False)


@attrs.define
class PostgresDatabase(SqlPoolAdapter[_Pool]):
    """SqlDatabase and HealthProbe on a psycopg ``AsyncConnectionPool``.

    The pool is built on first use with the user, password and database read from ``credentials``
    at ``secret_path`` (`LoginOptions`); host and port are ours. When PostgreSQL refuses that
    login, the credential is invalidated, read again, the pool rebuilt and the call tried once
    more, so a rotated password is picked up without a restart.

    A call waits for a pooled connection up to ``operation_timeout``. Until PostgreSQL is seen to
    take a connection (at first, after a pooled connection was found dead, and when the pool
    gave up reconnecting), calls first open one of their own (one at a time, shared) and close
    it: a server that refuses connections fails them at once rather than after the pool's wait,
    and one that takes them again is used at once.

    Every call raises DatabaseConnectionError when PostgreSQL is unreachable or refuses the
    login, and OperationTimeoutError (504) when it takes longer than ``operation_timeout``.
    Errors of the secret store (VaultUnavailableError...) pass through, except a missing secret,
    which is a DatabaseConnectionError.

    With a ``breaker``, every call but ``check`` passes through it and raises CircuitBreakerError
    while it is open; a health probe always reaches the server, so recovery shows.
    """

    _reachable: bool = attrs.field(default=False, init=False)
    _probes: SharedRuns[str, None] = attrs.field(factory=SharedRuns, init=False, repr=False)
    service = POSTGRES

    @staticmethod
    def endpoint_in(settings: Settings) -> Endpoint:
        return settings.postgres

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

    async def _run(
        self, query: Callable[[Connection], Awaitable[T]], *, operation: str, probe: bool = False
    ) -> T:
        return await self._login.run(
            lambda pool: _detached(self._attempt(pool, query)), operation=operation, probe=probe
        )

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

    async def _build(self, secret: Secret) -> _Pool:
        login: dict[str, Any] = {
            "host": self._host,
            "port": self._port,
            "user": secret.data.get("user", ""),
            "password": secret.data.get("password", ""),
            "dbname": secret.data.get("database", ""),
            # libpq counts whole seconds.
            "connect_timeout": max(1, math.ceil(self._login.connect_timeout)),
            "autocommit": True,
            "options": "-c TimeZone=UTC",
            # Two tiny fixed queries: the server parses them in no time, so psycopg's
            # bookkeeping of prepared statements would cost more than it saves.
            "prepare_threshold": None,
        }
        pool = AsyncConnectionPool[Connection](
            kwargs=login,
            min_size=self._min_size,
            max_size=self._max_size,
            # A busy pool is waited for as long as the call may take.
            timeout=self._login.operation_timeout,
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

    @staticmethod
    async def _close(pool: _Pool) -> None:
        await pool.pool.close()


async def _detached(call: Coroutine[Any, Any, T]) -> T:
    """Await ``call`` in a task of its own, so that a caller given up on is answered at once.

    Once cancelled, psycopg sends PostgreSQL a cancel request and waits up to 10 s for the query
    to end; awaited directly, the caller would wait for all of it. Here the call winds down in
    the background, and the driver closes the connection it leaves mid-call, or cleans it up.
    """
    task = asyncio.create_task(call)
    try:
        # Shielded: cancelling the caller must not make it wait for the call to end.
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        _winding_down.add(task)
        task.add_done_callback(_wound_down)
        raise


def _wound_down(task: asyncio.Task[Any]) -> None:
    _winding_down.discard(task)
    if not task.cancelled():
        # Retrieved so that asyncio does not log an error nobody was left to receive.
        task.exception()


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
    server."""
    if isinstance(exc, psycopg.OperationalError):
        if exc.sqlstate in {"28P01", "28000"} or _LOGIN_REJECTED.search(str(exc)):
            raise LoginRefusedError from exc
        raise errors.DatabaseConnectionError(
            "PostgreSQL is unreachable", _cause(exc), service=SERVICE
        ) from exc
    raise errors.DatabaseConnectionError(
        "PostgreSQL failed the query", _cause(exc), service=SERVICE
    ) from exc
