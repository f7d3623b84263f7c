"""MongoDB through pymongo's AsyncMongoClient, logging in with credentials from the secret store."""

from __future__ import annotations

import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar, Unpack

import attrs
from pymongo import AsyncMongoClient
from pymongo.errors import (
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from colima_ref.adapters.breaker import ServiceBreaker
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.left_running import LeftRunning
from colima_ref.adapters.login import Login, LoginOptions, LoginRefusedError, Service, options_from
from colima_ref.domain import errors
from colima_ref.domain.models import Secret, ServiceHealth
from colima_ref.settings import Settings

SERVICE = "mongodb"
MONGODB = Service(SERVICE, "MongoDB", errors.DatabaseConnectionError, SERVICE)
_AUTHENTICATION_FAILED = 18
_UNAUTHORIZED = 13

T = TypeVar("T")
Document = dict[str, Any]
Client = AsyncMongoClient[Document]


@attrs.frozen
class _Session:
    """A client and the database its credentials were issued for."""

    client: Client = attrs.field(repr=False)
    database: str


@attrs.define
class MongoDocumentDatabase:
    """DocumentDatabase and HealthProbe on one pymongo ``AsyncMongoClient``.

    The client is built on first use with the user, password and database read from
    ``credentials`` at ``secret_path`` (`LoginOptions`); the user is looked up in
    ``auth_source``, by default that database, as in a ``mongodb://.../database`` URI (pass
    ``"admin"`` for users made there).
    When MongoDB refuses that login (code 18), the credential is invalidated, read again, the
    client rebuilt and the call tried once more, so a rotated password is picked up without a
    restart.

    ``direct_connection`` talks to the one configured server even when it advertises a replica set
    (SecantusDB advertises a single-node set whose member name need not resolve from here).

    Every call raises DatabaseConnectionError when MongoDB is unreachable within
    ``connect_timeout`` (at most half the ``operation_timeout``), refuses the login or fails the
    command, and OperationTimeoutError (504) when it takes longer than ``operation_timeout``.
    Errors of the secret store (VaultUnavailableError...) pass through, except a missing secret,
    which is a DatabaseConnectionError. A refused login or command (code 18 or 13) and a missing
    secret are answers, not outages (``outage`` False).

    With a ``breaker``, every call but ``check`` passes through it and raises CircuitBreakerError
    while it is open; a health probe always reaches the server, so recovery shows.

    A call the operation timeout gives up on is not cancelled inside pymongo, which does not
    survive every cancellation (a socket it was about to connect stays open; a server selection
    cut short breaks its topology lock, and every later call hangs). It runs in a task of its
    own, which pymongo's own timeouts end: socket, server selection and connect, each within
    the operation timeout (`LeftRunning`). `aclose` waits for those.
    """

    _host: str
    _port: int
    _options: LoginOptions = attrs.field(repr=False)
    _auth_source: str | None = None
    _direct_connection: bool = True
    _min_size: int = 1
    _max_size: int = 10
    _login: Login[_Session] = attrs.field(init=False, repr=False)
    _calls: LeftRunning = attrs.field(factory=LeftRunning, init=False, repr=False)

    @_login.default
    def _client_login(self) -> Login[_Session]:
        return Login(service=MONGODB, build=self._build, close_client=_close, **self._options)

    @classmethod
    def open(
        cls,
        *,
        host: str,
        port: int,
        auth_source: str | None = None,
        direct_connection: bool = True,
        min_size: int = 1,
        max_size: int = 10,
        **options: Unpack[LoginOptions],
    ) -> contextlib.aclosing[MongoDocumentDatabase]:
        """A database that connects on first use and closes its client when the block exits.

        Nothing is read or connected before the first call, so this succeeds while MongoDB or
        the secret store is down.
        """
        return contextlib.aclosing(
            cls(host, port, options, auth_source, direct_connection, min_size, max_size)
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, credentials: CredentialSource, breaker: ServiceBreaker | None
    ) -> contextlib.AbstractAsyncContextManager[MongoDocumentDatabase]:
        """`open` on ``settings.mongodb``, with the pool size and timeouts of ``backends``."""
        return cls.open(
            host=settings.mongodb.host,
            port=settings.mongodb.port,
            max_size=settings.backends.pool_max,
            **options_from(settings, credentials, breaker),
        )

    async def collection_names(self) -> list[str]:
        """The names of the collections in the secret's database, sorted."""
        names = await self._login.run(
            lambda session: self._calls.run(
                _translated(session.client[session.database].list_collection_names())
            ),
            operation="collection_names",
        )
        return sorted(names)

    async def check(self) -> ServiceHealth:
        """Healthy with the ``version`` from ``buildInfo`` once a logged-in command round-trips."""
        info = await self._login.run(
            lambda session: self._calls.run(
                _translated(session.client[session.database].command("buildInfo"))
            ),
            operation="check",
            probe=True,
        )
        return ServiceHealth(healthy=True, info={"version": str(info.get("version", "unknown"))})

    async def aclose(self) -> None:
        """Close the client and its pool, and wait for the calls left to end by themselves.
        The next call would build a new one."""
        await self._login.aclose()
        await self._calls.wait()

    async def _build(self, secret: Secret) -> _Session:
        database = secret.data.get("database", "")
        if not database:
            raise errors.DatabaseConnectionError(
                "The MongoDB secret names no database",
                {"secret_path": self._login.secret_path},
                service=SERVICE,
                outage=False,
            )
        connect_timeout, operation_timeout = (
            self._login.connect_timeout,
            self._login.operation_timeout,
        )
        client = Client(
            host=self._host,
            port=self._port,
            username=secret.data.get("user") or None,
            password=secret.data.get("password") or None,
            authSource=self._auth_source or database,
            directConnection=self._direct_connection,
            # pymongo's own timeouts end a call its caller gave up on (`LeftRunning`). Server
            # selection gives up by itself, with a 503, well before the operation timeout.
            serverSelectionTimeoutMS=_ms(min(connect_timeout, operation_timeout / 2)),
            connectTimeoutMS=_ms(connect_timeout),
            socketTimeoutMS=_ms(operation_timeout),
            minPoolSize=self._min_size,
            maxPoolSize=self._max_size,
            appname="colima-ref",
        )
        return _Session(client, database)


async def _close(session: _Session) -> None:
    await session.client.close()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _cause(exc: BaseException | None) -> dict[str, str]:
    return {"cause": type(exc).__name__} if exc is not None else {}


async def _translated(command: Coroutine[Any, Any, T]) -> T:
    """Await ``command``, raising our errors for pymongo's. Our messages only: the driver's
    quote the server."""
    try:
        return await command
    except ServerSelectionTimeoutError as exc:
        raise errors.DatabaseConnectionError(
            "MongoDB is unreachable", _cause(exc), service=SERVICE
        ) from exc
    except OperationFailure as exc:
        if exc.code == _AUTHENTICATION_FAILED:
            raise LoginRefusedError from exc
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
