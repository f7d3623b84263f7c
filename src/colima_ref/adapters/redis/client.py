"""One redis.asyncio client per process: built on first use, rebuilt when a login is refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, NoReturn, TypeVar, Unpack

import attrs
from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode as DriverNode
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from colima_ref.adapters.breaker import ServiceBreaker
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.login import Login, LoginOptions, LoginRefusedError, Service, options_from
from colima_ref.adapters.redis.breakers import NodeBreakers
from colima_ref.domain import errors
from colima_ref.domain.models import Secret
from colima_ref.settings import Settings

SERVICE = "redis"
REDIS = Service(SERVICE, "Redis", errors.CacheConnectionError, "redis-1")

# Replies that say the cluster or node cannot serve now (down, failing over, loading, full),
# not that it refuses this command: outages, unlike every other ResponseError.
_UNAVAILABLE_REPLIES = (
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.AskError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
)

T = TypeVar("T")
Client = Redis | RedisCluster
Address = tuple[str, int]


@attrs.frozen
class _Client:
    """A client and the login it was built with, for the short-lived clients of single nodes."""

    client: Client
    login: dict[str, Any] = attrs.field(repr=False)


def _addresses(nodes: Iterable[Address]) -> tuple[Address, ...]:
    return tuple(nodes)


def _retry(attempts: int) -> Retry:
    # redis-py's default (10 attempts with backoff) turns "down" into a ~4 s wait; the operation
    # timeout is the real bound, these retries only ride out a dropped connection or a failover.
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), attempts)


@attrs.define
class RedisConnection:
    """The redis.asyncio client every Redis adapter of the process shares.

    A ``RedisCluster`` when ``cluster`` is set, which it is by default when several ``nodes``
    are given; a plain ``Redis`` on the first node otherwise. The client is built on the first
    call, under a lock, with ``user`` and ``password`` read from ``credentials`` at
    ``secret_path`` (`LoginOptions`; no password: no AUTH). When Redis refuses that login the
    credential is invalidated, read again, the client rebuilt and the call tried once more.

    At most ``max_connections`` commands are in flight at once; more wait for one to finish, up
    to ``operation_timeout``. redis-py's pools raise at once instead of waiting when full
    (``MaxConnectionsError`` in a cluster), which under load turns a busy pool into 503s. A
    command needs at most one connection per node, so no node's pool can run out.

    ``run`` raises CacheConnectionError (service "redis") when Redis is unreachable, refuses the
    login or rejects the command, and OperationTimeoutError (504) past ``operation_timeout``.
    Errors of the secret store (VaultUnavailableError...) pass through, except a missing secret,
    which is a CacheConnectionError. A refused login or command and a missing secret are answers,
    not outages (``outage`` False); a command on a key holding another type than a string
    (WRONGTYPE) raises ValidationError for ``key``. With ``breakers``, every command but a health
    probe's passes through the breaker of the node it is for (see `run`) and raises
    CircuitBreakerError while that one is open, so a failing master does not stop the commands
    the others answer.
    """

    nodes: tuple[Address, ...] = attrs.field(converter=_addresses)
    _options: LoginOptions = attrs.field(alias="options", repr=False)
    cluster: bool = attrs.field(
        default=attrs.Factory(lambda self: len(self.nodes) > 1, takes_self=True)
    )
    _max_connections: int = attrs.field(default=10, alias="max_connections")
    _breakers: NodeBreakers | None = attrs.field(default=None, alias="breakers", repr=False)
    _in_flight: asyncio.Semaphore = attrs.field(init=False, repr=False)
    _login: Login[_Client] = attrs.field(init=False, repr=False)

    @_in_flight.default
    def _one_slot_per_connection(self) -> asyncio.Semaphore:
        return asyncio.Semaphore(self._max_connections)

    @_login.default
    def _client_login(self) -> Login[_Client]:
        return Login(service=REDIS, build=self._build, close_client=_close, **self._options)

    @nodes.validator
    def _at_least_one(self, _attribute: object, value: tuple[Address, ...]) -> None:
        if not value:
            raise ValueError("RedisConnection needs at least one node")

    @classmethod
    def open(
        cls,
        *,
        nodes: Sequence[Address],
        cluster: bool | None = None,
        max_connections: int = 10,
        breakers: NodeBreakers | None = None,
        **options: Unpack[LoginOptions],
    ) -> contextlib.aclosing[RedisConnection]:
        """A connection that builds its client on first use and closes it when the block exits.

        ``nodes`` are ``(host, port)`` pairs: the cluster's seeds, or the one server. Nothing
        is read or connected before the first call, so this succeeds while Redis or the secret
        store is down. ``max_connections`` bounds the pool of each node. A ``breaker`` in
        ``options`` guards the whole service where there are no ``breakers`` per node.
        """
        cluster = len(nodes) > 1 if cluster is None else cluster
        return contextlib.aclosing(cls(nodes, options, cluster, max_connections, breakers))

    @classmethod
    def from_settings(
        cls, settings: Settings, credentials: CredentialSource, breakers: NodeBreakers | None
    ) -> contextlib.AbstractAsyncContextManager[RedisConnection]:
        """`open` on the seeds of ``settings.redis`` (a cluster when REDIS_NODES names them),
        with the timeouts of ``backends`` and ``redis_pool_max`` connections."""
        return cls.open(
            nodes=settings.redis.seeds,
            cluster=bool(settings.redis.nodes),
            max_connections=settings.backends.redis_pool_max,
            breakers=breakers,
            **options_from(settings, credentials),
        )

    async def run(
        self,
        call: Callable[[Client], Awaitable[T]],
        *,
        operation: str,
        key: str | None = None,
        probe: bool = False,
    ) -> T:
        """Await ``call`` as ``operation`` (a port method) on the shared client; a health
        ``probe`` bypasses the breakers and is not recorded.

        A ``call`` on the one ``key`` goes through the breaker of the node the client routes
        that key to; any other (on several keys or every node) through the whole cluster's.
        """
        return await self._run(
            lambda current: call(current.client), operation=operation, key=key, probe=probe
        )

    async def run_on_node(
        self, address: Address, call: Callable[[Redis], Awaitable[T]], *, operation: str
    ) -> T:
        """Await ``call`` (recorded as ``operation``) on a plain client of the one node at
        ``address``, closed afterwards.

        For per-node commands (INFO): RedisCluster only routes to nodes listed in CLUSTER
        SLOTS, which leaves out replicas that have not replicated anything yet.
        """

        async def on_node(current: _Client) -> T:
            host, port = address
            async with Redis(host=host, port=port, retry=_retry(0), **current.login) as node:
                return await call(node)

        return await self._run(on_node, operation=operation, node=f"{address[0]}:{address[1]}")

    async def aclose(self) -> None:
        """Close the client and every connection of every node. The next call builds a new one."""
        await self._login.aclose()

    async def _run(
        self,
        call: Callable[[_Client], Awaitable[T]],
        *,
        operation: str,
        key: str | None = None,
        node: str | None = None,
        probe: bool = False,
    ) -> T:
        """Every command sent to Redis, through a circuit breaker unless it is a probe's."""
        if probe or self._breakers is None:
            return await self._login.run(self._attempt(call), operation=operation, probe=probe)
        breaker = self._breaker_for(self._breakers, key, node)
        return await breaker.call(self._login.call, self._attempt(call), operation=operation)

    def _breaker_for(
        self, breakers: NodeBreakers, key: str | None, node: str | None
    ) -> ServiceBreaker:
        current = self._login.current
        client = None if current is None else current.client
        if not isinstance(client, RedisCluster):
            return breakers.whole
        if node is None and key is not None:
            try:
                owner = client.get_node_from_key(key)
            except redis_errors.SlotNotCoveredError:
                # No slot map yet, or the slot is lost: the call itself finds out.
                owner = None
            node = None if owner is None else owner.name
        if node is None:
            return breakers.whole
        return breakers.for_node(node, lambda: {known.name for known in client.get_nodes()})

    def _attempt(
        self, call: Callable[[_Client], Awaitable[T]]
    ) -> Callable[[_Client], Awaitable[T]]:
        async def attempt(current: _Client) -> T:
            async with self._in_flight:
                try:
                    return await call(current)
                except (redis_errors.RedisError, redis_errors.RedisClusterException) as exc:
                    _raise_translated(exc)

        return attempt

    async def _build(self, secret: Secret) -> _Client:
        login: dict[str, Any] = {
            "username": secret.data.get("user") or None,
            "password": secret.data.get("password") or None,
            "decode_responses": True,
            "socket_connect_timeout": self._login.connect_timeout,
            # None, not RedisCluster's default (5 s): the operation timeout bounds every command
            # already, and with one redis-py wraps each write in asyncio.wait_for (a task) and
            # each read in a timer. Under uvloop, concurrent first commands with those tasks
            # also had redis-py write to connections it had just closed (RuntimeError).
            "socket_timeout": None,
            "max_connections": self._max_connections,
        }
        if not self.cluster:
            host, port = self.nodes[0]
            return _Client(Redis(host=host, port=port, retry=_retry(1), **login), login)
        cluster = RedisCluster(
            startup_nodes=[DriverNode(host, port) for host, port in self.nodes],
            # Introspection must still describe a cluster that lost slots.
            require_full_coverage=False,
            retry=_retry(2),
            **login,
        )
        return _Client(cluster, login)


async def _close(current: _Client) -> None:
    await current.client.aclose()


def _cause(exc: BaseException | None) -> dict[str, str]:
    return {"cause": type(exc).__name__} if exc is not None else {}


def _refused_login(exc: BaseException) -> BaseException | None:
    # RedisCluster reports a refused login at start-up as a RedisClusterException raised from it.
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, redis_errors.AuthenticationError):
            return candidate
    return None


def _reply_of(exc: Exception) -> str:
    # A pipeline's error quotes the failed command, client input included, before Redis's reply.
    return str(exc).rpartition("caused error: ")[2].lstrip("('\"")


def _raise_translated(exc: Exception) -> NoReturn:
    """Raise our error for redis-py's ``exc``. Our messages only: the driver's may name the
    server."""
    refused = _refused_login(exc)
    if refused is not None:
        raise LoginRefusedError from refused
    if isinstance(exc, redis_errors.TimeoutError):
        raise errors.OperationTimeoutError(
            "Redis did not answer in time", {"service": SERVICE, **_cause(exc)}
        ) from exc
    if isinstance(exc, _UNAVAILABLE_REPLIES):
        raise errors.CacheConnectionError(
            "Redis cannot serve the command now", _cause(exc), service=SERVICE
        ) from exc
    if isinstance(exc, redis_errors.ResponseError):
        # An answer about this command, so no breaker counts it. Of the input our commands
        # carry, Redis can refuse only a key that holds another type.
        if _reply_of(exc).startswith("WRONGTYPE "):
            raise errors.ValidationError.for_field(
                "key", "The key holds a value that is not a string", **_cause(exc)
            ) from exc
        raise errors.CacheConnectionError(
            "Redis rejected the command", _cause(exc), service=SERVICE, outage=False
        ) from exc
    raise errors.CacheConnectionError("Redis is unreachable", _cause(exc), service=SERVICE) from exc
