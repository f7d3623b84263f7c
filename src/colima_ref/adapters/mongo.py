"""MongoDB through pymongo's AsyncMongoClient, logging in with credentials from the secret store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import attrs
from pymongo import AsyncMongoClient
from pymongo.errors import (
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from colima_ref.adapters.breaker import ServiceBreaker, through
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.domain import errors
from colima_ref.domain.models import ServiceHealth

SERVICE = "mongodb"
_AUTHENTICATION_FAILED = 18
_UNAUTHORIZED = 13

T = TypeVar("T")
Document = dict[str, Any]
Client = AsyncMongoClient[Document]


class _LoginRejectedError(Exception):
    """MongoDB refused the credentials: worth one more try with freshly read ones."""


@attrs.frozen
class _Session:
    """A client and the database its credentials were issued for."""

    client: Client = attrs.field(repr=False)
    database: str


@attrs.define
class MongoDocumentDatabase:
    """DocumentDatabase and HealthProbe on one pymongo ``AsyncMongoClient``.

    The client is built on first use with the user, password and database read from
    ``credentials`` at ``secret_path``; the user is looked up in ``auth_source``, by default that
    database, as in a ``mongodb://.../database`` URI (pass ``"admin"`` for users made there).
    When MongoDB refuses that login (code 18), the credential is invalidated, read again, the
    client rebuilt and the call tried once more, so a rotated password is picked up without a
    restart.

    ``direct_connection`` talks to the one configured server even when it advertises a replica set
    (SecantusDB advertises a single-node set whose member name need not resolve from here).

    Every call raises DatabaseConnectionError when MongoDB is unreachable within
    ``connect_timeout`` (at most half the ``operation_timeout``), refuses the login or fails the
    command, and TimeoutError (504) when it takes longer than ``operation_timeout``. Errors of the
    secret store (VaultUnavailableError...) pass through, except a missing secret, which is a
    DatabaseConnectionError. A refused login
    or command (code 18 or 13) and a missing secret are answers, not outages (``outage`` False).

    With a ``breaker``, every call but ``check`` passes through it and raises CircuitBreakerError
    while it is open; a health probe always reaches the server, so recovery shows.
    """

    _host: str
    _port: int
    _credentials: CredentialSource
    _secret_path: str = SERVICE
    _auth_source: str | None = None
    _direct_connection: bool = True
    _connect_timeout: float = 2.0
    _operation_timeout: float = 5.0
    _min_size: int = 1
    _max_size: int = 10
    _breaker: ServiceBreaker | None = attrs.field(default=None, repr=False)
    _current: _Session | None = attrs.field(default=None, init=False)
    _lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False, repr=False)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        *,
        host: str,
        port: int,
        credentials: CredentialSource,
        secret_path: str = SERVICE,
        auth_source: str | None = None,
        direct_connection: bool = True,
        connect_timeout: float = 2.0,
        operation_timeout: float = 5.0,
        min_size: int = 1,
        max_size: int = 10,
        breaker: ServiceBreaker | None = None,
    ) -> AsyncIterator[MongoDocumentDatabase]:
        """Yield a database that connects on first use and closes its client on exit.

        Nothing is read or connected before the first call, so this succeeds while MongoDB or
        the secret store is down.
        """
        database = cls(
            host,
            port,
            credentials,
            secret_path=secret_path,
            auth_source=auth_source,
            direct_connection=direct_connection,
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

    async def collection_names(self) -> list[str]:
        """The names of the collections in the secret's database, sorted."""
        names = await self._run(
            lambda session: session.client[session.database].list_collection_names(),
            operation="collection_names",
        )
        return sorted(names)

    async def check(self) -> ServiceHealth:
        """Healthy with the ``version`` from ``buildInfo`` once a logged-in command round-trips."""
        info = await self._run(
            lambda session: session.client[session.database].command("buildInfo"),
            operation="check",
            probe=True,
        )
        return ServiceHealth(healthy=True, info={"version": str(info.get("version", "unknown"))})

    async def close(self) -> None:
        """Close the client and its pool. The next call would build a new one."""
        async with self._lock:
            if self._current is not None:
                await self._current.client.close()
                self._current = None

    async def _run(
        self, command: Callable[[_Session], Awaitable[T]], *, operation: str, probe: bool = False
    ) -> T:
        """Every call to MongoDB, through the circuit breaker, which records it as
        ``operation``; a health probe bypasses both."""
        return await through(
            None if probe else self._breaker, self._call, command, operation=operation
        )

    async def _call(self, command: Callable[[_Session], Awaitable[T]]) -> T:
        """Run ``command`` on the current client: every call to MongoDB passes here."""
        try:
            async with asyncio.timeout(self._operation_timeout):
                session = await self._session()
                try:
                    return await _attempt(session, command)
                except _LoginRejectedError:
                    session = await self._session(rejected=session)
                try:
                    return await _attempt(session, command)
                except _LoginRejectedError as exc:
                    # pymongo answers a client whose login failed with 2 s of server selection
                    # afterwards; a fresh client and secret next time fail fast instead.
                    await self._discard(session)
                    raise errors.DatabaseConnectionError(
                        "MongoDB refused the credentials from the secret store",
                        _cause(exc.__cause__),
                        service=SERVICE,
                        outage=False,
                    ) from exc.__cause__
        except TimeoutError as exc:
            raise errors.OperationTimeoutError(
                f"MongoDB did not answer within {self._operation_timeout:g} s",
                {"service": SERVICE},
            ) from exc

    async def _session(self, rejected: _Session | None = None) -> _Session:
        """The current client, built if need be; a new one if ``rejected`` is still current."""
        async with self._lock:
            if rejected is not None:
                await self._drop(rejected)
            if self._current is None:
                self._current = await self._build()
            return self._current

    async def _discard(self, rejected: _Session) -> None:
        async with self._lock:
            await self._drop(rejected)

    async def _drop(self, rejected: _Session) -> None:
        """Forget ``rejected`` and its credential unless another caller already did (lock held)."""
        if self._current is rejected:
            self._current = None
            self._credentials.invalidate(self._secret_path)
            await rejected.client.close()

    async def _build(self) -> _Session:
        try:
            secret = await self._credentials.get(self._secret_path)
        except errors.ResourceNotFoundError as exc:
            raise errors.DatabaseConnectionError(
                "The secret store holds no MongoDB credentials",
                {"secret_path": self._secret_path},
                service=SERVICE,
                outage=False,
            ) from exc
        database = secret.data.get("database", "")
        if not database:
            raise errors.DatabaseConnectionError(
                "The MongoDB secret names no database",
                {"secret_path": self._secret_path},
                service=SERVICE,
                outage=False,
            )
        client = Client(
            host=self._host,
            port=self._port,
            username=secret.data.get("user") or None,
            password=secret.data.get("password") or None,
            authSource=self._auth_source or database,
            directConnection=self._direct_connection,
            # pymongo mishandles a cancellation while it selects a server: its topology lock
            # breaks (RuntimeError "Lock is not acquired") and every later call fails. Server
            # selection gives up by itself, with a 503, well before the operation timeout.
            serverSelectionTimeoutMS=_ms(min(self._connect_timeout, self._operation_timeout / 2)),
            connectTimeoutMS=_ms(self._connect_timeout),
            socketTimeoutMS=_ms(self._operation_timeout),
            minPoolSize=self._min_size,
            maxPoolSize=self._max_size,
            appname="colima-ref",
        )
        return _Session(client, database)


async def _attempt(session: _Session, command: Callable[[_Session], Awaitable[T]]) -> T:
    with _translated():
        return await command(session)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _cause(exc: BaseException | None) -> dict[str, str]:
    return {"cause": type(exc).__name__} if exc is not None else {}


@contextmanager
def _translated() -> Iterator[None]:
    """Turn pymongo's errors into ours. Our messages only: the driver's quote the server."""
    try:
        yield
    except ServerSelectionTimeoutError as exc:
        raise errors.DatabaseConnectionError(
            "MongoDB is unreachable", _cause(exc), service=SERVICE
        ) from exc
    except OperationFailure as exc:
        if exc.code == _AUTHENTICATION_FAILED:
            raise _LoginRejectedError from exc
        if exc.timeout:
            raise errors.OperationTimeoutError(
                "MongoDB gave up on the command in time", {"service": SERVICE, **_cause(exc)}
            ) from exc
        if exc.code == _UNAUTHORIZED:
            # Our user's roles, not the server's health: no breaker counts it.
            raise errors.DatabaseConnectionError(
                "MongoDB does not let our user run the command",
                {**_cause(exc), "code": exc.code},
                service=SERVICE,
                outage=False,
            ) from exc
        raise errors.DatabaseConnectionError(
            "MongoDB failed the command", {**_cause(exc), "code": exc.code}, service=SERVICE
        ) from exc
    except PyMongoError as exc:
        if exc.timeout:
            raise errors.OperationTimeoutError(
                "MongoDB did not answer in time", {"service": SERVICE, **_cause(exc)}
            ) from exc
        if isinstance(exc, ConnectionFailure):
            raise errors.DatabaseConnectionError(
                "MongoDB dropped the connection", _cause(exc), service=SERVICE
            ) from exc
        raise errors.DatabaseConnectionError(
            "MongoDB failed the command", _cause(exc), service=SERVICE
        ) from exc
