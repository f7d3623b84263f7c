"""RabbitMQ through one long-lived aiormq connection, logging in with credentials from the secret
store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

import aiormq
import attrs
from aiormq.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import (
    AMQPChannelError,
    AMQPError,
    ChannelAccessRefused,
    ChannelInvalidStateError,
    ChannelLockedResource,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    DeliveryError,
    InvalidFrameError,
    ProbableAuthenticationError,
    PublishError,
)
from pamqp.commands import Basic
from yarl import URL

from colima_ref.adapters.breaker import ServiceBreaker, through
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.deadline import ADAPTER_DEADLINE, Deadline
from colima_ref.domain import errors
from colima_ref.domain.models import QueueInfo, ServiceHealth

SERVICE = "rabbitmq"
DEFAULT_VHOST = "dev_vhost"
_PERSISTENT = 2

T = TypeVar("T")


class _LoginRejectedError(Exception):
    """RabbitMQ refused the credentials: worth one more try with freshly read ones."""


@attrs.define
class _ConfirmChannel:
    """The channel publishes go through, and the queues already declared on it."""

    connection: AbstractConnection = attrs.field(repr=False)
    channel: AbstractChannel = attrs.field(repr=False)
    declared: set[str] = attrs.field(factory=set)
    # Concurrent first publishes to a queue would each declare it: one round trip is enough.
    declaring: asyncio.Lock = attrs.field(factory=asyncio.Lock)

    def usable_on(self, connection: AbstractConnection) -> bool:
        return self.connection is connection and not self.channel.is_closed


@attrs.frozen
class _ProbeChannel:
    """The channel health checks round-trip on, kept between checks."""

    connection: AbstractConnection = attrs.field(repr=False)
    channel: AbstractChannel = attrs.field(repr=False)

    def usable_on(self, connection: AbstractConnection) -> bool:
        return self.connection is connection and not self.channel.is_closed


@attrs.define
class RabbitMqBroker:
    """MessageBroker and HealthProbe on one long-lived aiormq connection.

    The connection is opened on first use, and again on the first use after it broke, with the
    user, password and vhost (default ``dev_vhost``) read from ``credentials`` at ``secret_path``.
    When RabbitMQ refuses that login, the credential is invalidated, read again and the connection
    tried once more, so a rotated password is picked up without a restart.

    Publishes share one channel in publisher-confirm mode: ``publish`` declares the queue durable
    (once per channel), sends a persistent JSON message with ``mandatory`` set and returns when the
    broker acks it. ``queue_info`` asks with a passive declare on a channel of its own, because a
    missing queue makes RabbitMQ close the channel that asked.

    Every call raises MessageQueueError when RabbitMQ is unreachable (no connection within
    ``connect_timeout``), refuses the login or the vhost, closes the connection or channel, or
    does not take a message (nack, or returned as unroutable), and TimeoutError (504) when it takes
    longer than ``operation_timeout``. Errors of the secret store (VaultUnavailableError...) pass
    through, except a missing secret, which is a MessageQueueError. A refused login or vhost and
    a missing secret are answers, not outages (``outage`` False). When RabbitMQ refuses the queue
    itself (our user may not use the name, or the queue exists not durable or exclusive to
    another connection), the call raises ValidationError for ``queue_name``.

    With a ``breaker``, every call but ``check`` passes through it and raises CircuitBreakerError
    while it is open; a health probe always reaches the server, so recovery shows.
    """

    _host: str
    _port: int
    _credentials: CredentialSource
    _secret_path: str = SERVICE
    _default_vhost: str = DEFAULT_VHOST
    _connect_timeout: float = 2.0
    _operation_timeout: float = 5.0
    _heartbeat: int = 60
    _breaker: ServiceBreaker | None = attrs.field(default=None, repr=False)
    _connection: AbstractConnection | None = attrs.field(default=None, init=False, repr=False)
    _confirms: _ConfirmChannel | None = attrs.field(default=None, init=False, repr=False)
    _probe: _ProbeChannel | None = attrs.field(default=None, init=False, repr=False)
    _connection_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False, repr=False)
    _channel_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False, repr=False)
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
        default_vhost: str = DEFAULT_VHOST,
        connect_timeout: float = 2.0,
        operation_timeout: float = 5.0,
        heartbeat: int = 60,
        breaker: ServiceBreaker | None = None,
    ) -> AsyncIterator[RabbitMqBroker]:
        """Yield a broker that connects on first use and closes its connection on exit.

        Nothing is read or connected before the first call, so this succeeds while RabbitMQ or
        the secret store is down. ``heartbeat`` (seconds) is how soon a silent broker is noticed.
        """
        broker = cls(
            host,
            port,
            credentials,
            secret_path=secret_path,
            default_vhost=default_vhost,
            connect_timeout=connect_timeout,
            operation_timeout=operation_timeout,
            heartbeat=heartbeat,
            breaker=breaker,
        )
        try:
            yield broker
        finally:
            await broker.close()

    async def publish(self, queue: str, body: bytes) -> None:
        """Put ``body`` on the durable ``queue`` as a persistent message the broker confirmed."""
        await self._run(
            lambda connection: self._publish(connection, queue, body), operation="publish"
        )

    async def queue_info(self, queue: str) -> QueueInfo:
        """Message and consumer counts of ``queue``; ``exists=False`` (not created) if unknown."""
        return await self._run(
            lambda connection: _queue_info(connection, queue), operation="queue_info"
        )

    async def check(self) -> ServiceHealth:
        """Healthy with the broker's ``version`` once a command round-trips on a channel."""
        version = await self._run(self._round_trip, operation="check", probe=True)
        return ServiceHealth(healthy=True, info={"version": version})

    async def close(self) -> None:
        """Close the connection and its channels. The next call would open a new one."""
        async with self._connection_lock:
            self._confirms = self._probe = None
            connection, self._connection = self._connection, None
            if connection is not None:
                await connection.close()

    async def _run(
        self,
        call: Callable[[AbstractConnection], Awaitable[T]],
        *,
        operation: str,
        probe: bool = False,
    ) -> T:
        """Every call to RabbitMQ, through the circuit breaker, which records it as
        ``operation``; a health probe bypasses both."""
        return await through(
            None if probe else self._breaker, self._call, call, operation=operation
        )

    async def _call(self, operation: Callable[[AbstractConnection], Awaitable[T]]) -> T:
        """Run ``operation`` on the live connection: every call to RabbitMQ passes here."""
        try:
            with self._deadline.bound():
                connection = await self._connected()
                with _translated():
                    return await operation(connection)
        except TimeoutError as exc:
            raise errors.OperationTimeoutError(
                f"RabbitMQ did not answer within {self._operation_timeout:g} s",
                {"service": SERVICE},
            ) from exc

    async def _connected(self) -> AbstractConnection:
        """The open connection, (re)opened under the lock if there is none or it broke."""
        current = self._connection
        if current is not None and not current.is_closed:
            return current
        async with self._connection_lock:
            current = self._connection
            if current is not None and not current.is_closed:
                return current
            self._connection = self._confirms = self._probe = None
            try:
                self._connection = await self._login()
            except _LoginRejectedError:
                self._credentials.invalidate(self._secret_path)
                try:
                    self._connection = await self._login()
                except _LoginRejectedError as exc:
                    # Read again next time too: the store may be updated after the broker.
                    self._credentials.invalidate(self._secret_path)
                    raise errors.MessageQueueError(
                        "RabbitMQ refused the credentials from the secret store",
                        _cause(exc.__cause__),
                        service=SERVICE,
                        outage=False,
                    ) from exc.__cause__
            return self._connection

    async def _login(self) -> AbstractConnection:
        connection = aiormq.Connection(await self._url())
        try:
            # aiormq's connect has no timeout of its own: a silent host would hang it.
            async with asyncio.timeout(self._connect_timeout):
                with _translated():
                    await connection.connect()
        except TimeoutError as exc:
            await connection.close()
            raise errors.MessageQueueError(
                f"RabbitMQ accepted no connection within {self._connect_timeout:g} s",
                _cause(exc),
                service=SERVICE,
            ) from exc
        except BaseException:
            # A refused transport leaves the connection object open; closing twice is harmless.
            await connection.close()
            raise
        return connection

    async def _url(self) -> URL:
        try:
            secret = await self._credentials.get(self._secret_path)
        except errors.ResourceNotFoundError as exc:
            raise errors.MessageQueueError(
                "The secret store holds no RabbitMQ credentials",
                {"secret_path": self._secret_path},
                service=SERVICE,
                outage=False,
            ) from exc
        vhost = secret.data.get("vhost") or self._default_vhost
        return URL.build(
            scheme="amqp",
            user=secret.data.get("user", ""),
            password=secret.data.get("password", ""),
            host=self._host,
            port=self._port,
            path=f"/{vhost}",
            query={"heartbeat": str(self._heartbeat), "name": "colima-ref"},
        )

    async def _publish(self, connection: AbstractConnection, queue: str, body: bytes) -> None:
        confirms = await self._confirm_channel(connection)
        if queue not in confirms.declared:
            async with confirms.declaring:
                if queue not in confirms.declared:
                    await confirms.channel.queue_declare(queue, durable=True)
                    confirms.declared.add(queue)
        await confirms.channel.basic_publish(
            body,
            routing_key=queue,
            mandatory=True,
            # Fresh per message: aiormq writes its message id into the properties it is given.
            properties=Basic.Properties(delivery_mode=_PERSISTENT, content_type="application/json"),
        )

    async def _round_trip(self, connection: AbstractConnection) -> str:
        # Opening and closing a channel per check cost two round trips (the slowest check under
        # load); a kept channel answers a no-op Basic.Qos in one. Concurrent first checks may
        # each open one: the spares close with their connection.
        probe = self._probe
        if probe is None or not probe.usable_on(connection):
            channel = await _channel(connection, publisher_confirms=False)
            probe = self._probe = _ProbeChannel(connection, channel)
        await probe.channel.basic_qos(prefetch_count=0)
        return str(connection.server_properties.get("version", "unknown"))

    async def _confirm_channel(self, connection: AbstractConnection) -> _ConfirmChannel:
        """The publishing channel of ``connection``, reopened if RabbitMQ closed it."""
        confirms = self._confirms
        if confirms is not None and confirms.usable_on(connection):
            return confirms
        async with self._channel_lock:
            confirms = self._confirms
            if confirms is None or not confirms.usable_on(connection):
                channel = await _channel(connection, publisher_confirms=True)
                confirms = self._confirms = _ConfirmChannel(connection, channel)
            return confirms


async def _channel(connection: AbstractConnection, *, publisher_confirms: bool) -> AbstractChannel:
    if connection.is_closed:
        # aiormq raises a bare RuntimeError for a channel on a closed connection.
        raise errors.MessageQueueError("The connection to RabbitMQ was lost", service=SERVICE)
    return await connection.channel(publisher_confirms=publisher_confirms)


async def _queue_info(connection: AbstractConnection, queue: str) -> QueueInfo:
    channel = await _channel(connection, publisher_confirms=False)
    try:
        declared = await channel.queue_declare(queue, passive=True)
    except ChannelNotFoundEntity:
        return QueueInfo(queue=queue, exists=False)
    finally:
        if not channel.is_closed:
            await channel.close()
    return QueueInfo(
        queue=queue,
        exists=True,
        message_count=declared.message_count or 0,
        consumer_count=declared.consumer_count or 0,
    )


def _cause(exc: BaseException | None) -> dict[str, str]:
    return {"cause": type(exc).__name__} if exc is not None else {}


def _refused_queue(message: str, exc: AMQPChannelError) -> errors.ValidationError:
    return errors.ValidationError.for_field("queue_name", message, **_cause(exc))


@contextmanager
def _translated() -> Iterator[None]:
    """Turn aiormq's errors into ours. Our messages only: the driver's may quote the URL."""
    try:
        yield
    except ProbableAuthenticationError as exc:
        raise _LoginRejectedError from exc
    except PublishError as exc:
        raise errors.MessageQueueError(
            "RabbitMQ returned the message: no queue took it", _cause(exc), service=SERVICE
        ) from exc
    except DeliveryError as exc:
        raise errors.MessageQueueError(
            "RabbitMQ did not take the message", _cause(exc), service=SERVICE
        ) from exc
    # The channel-level refusals of a queue the client named: answers about that name, which
    # another name avoids, so client errors that no circuit breaker counts.
    except ChannelAccessRefused as exc:
        raise _refused_queue(
            "RabbitMQ does not let our user use a queue of this name", exc
        ) from exc
    except ChannelPreconditionFailed as exc:
        raise _refused_queue(
            "RabbitMQ holds a queue of this name that is not durable", exc
        ) from exc
    except ChannelLockedResource as exc:
        raise _refused_queue(
            "A queue of this name is exclusive to another connection", exc
        ) from exc
    except AMQPChannelError as exc:
        raise errors.MessageQueueError(
            "RabbitMQ closed the channel", _cause(exc), service=SERVICE
        ) from exc
    except InvalidFrameError as exc:
        # What aiormq raises when the broker closes the handshake, e.g. for an unknown vhost.
        raise errors.MessageQueueError(
            "RabbitMQ refused to open the virtual host", _cause(exc), service=SERVICE, outage=False
        ) from exc
    except (AMQPError, ChannelInvalidStateError, ConnectionError, OSError) as exc:
        raise errors.MessageQueueError(
            "RabbitMQ is unreachable or dropped the connection", _cause(exc), service=SERVICE
        ) from exc
