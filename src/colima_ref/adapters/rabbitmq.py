"""RabbitMQ through one long-lived aiormq connection, logging in with credentials from the secret
store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar, Unpack

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

from colima_ref.adapters.breaker import ServiceBreaker
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.login import Login, LoginOptions, LoginRefusedError, Service, options_from
from colima_ref.domain import errors
from colima_ref.domain.models import QueueInfo, Secret, ServiceHealth
from colima_ref.domain.shared_runs import SharedRuns
from colima_ref.settings import DEFAULT_VHOST, Settings

SERVICE = "rabbitmq"
RABBITMQ = Service(SERVICE, "RabbitMQ", errors.MessageQueueError, SERVICE)
_PERSISTENT = 2

T = TypeVar("T")


@attrs.define
class _ConfirmChannel:
    """The channel publishes go through, and the queues already declared on it."""

    connection: AbstractConnection = attrs.field(repr=False)
    channel: AbstractChannel = attrs.field(repr=False)
    declared: set[str] = attrs.field(factory=set)
    # Concurrent first publishes to a queue would each declare it: one round trip is enough.
    declaring: SharedRuns[str, None] = attrs.field(factory=SharedRuns)

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
    user, password and vhost (default ``dev_vhost``) read from ``credentials`` at ``secret_path``
    (`LoginOptions`).
    When RabbitMQ refuses that login, the credential is invalidated, read again and the connection
    tried once more, so a rotated password is picked up without a restart.

    Publishes share one channel in publisher-confirm mode: ``publish`` declares the queue durable
    (once per channel), sends a persistent JSON message with ``mandatory`` set and returns when the
    broker acks it. ``queue_info`` asks with a passive declare on a channel of its own, because a
    missing queue makes RabbitMQ close the channel that asked.

    Every call raises MessageQueueError when RabbitMQ is unreachable (no connection within
    ``connect_timeout``), refuses the login or the vhost, closes the connection or channel, or
    does not take a message (nack, or returned as unroutable), and OperationTimeoutError (504)
    when it takes longer than ``operation_timeout``. Errors of the secret store
    (VaultUnavailableError...) pass through, except a missing secret, which is a
    MessageQueueError. A refused login or vhost and
    a missing secret are answers, not outages (``outage`` False). When RabbitMQ refuses the queue
    itself (our user may not use the name, or the queue exists not durable or exclusive to
    another connection), the call raises ValidationError for ``queue_name``.

    With a ``breaker``, every call but ``check`` passes through it and raises CircuitBreakerError
    while it is open; a health probe always reaches the server, so recovery shows.
    """

    _host: str
    _port: int
    _options: LoginOptions = attrs.field(repr=False)
    _default_vhost: str = DEFAULT_VHOST
    _heartbeat: int = 60
    _confirms: _ConfirmChannel | None = attrs.field(default=None, init=False, repr=False)
    _probe: _ProbeChannel | None = attrs.field(default=None, init=False, repr=False)
    _openings: SharedRuns[AbstractConnection, _ConfirmChannel] = attrs.field(
        factory=SharedRuns, init=False, repr=False
    )
    _login: Login[AbstractConnection] = attrs.field(init=False, repr=False)

    @_login.default
    def _connection_login(self) -> Login[AbstractConnection]:
        return Login(
            service=RABBITMQ,
            build=self._connect,
            close_client=_close,
            broken=_closed,
            **self._options,
        )

    @classmethod
    def open(
        cls,
        *,
        host: str,
        port: int,
        default_vhost: str = DEFAULT_VHOST,
        heartbeat: int = 60,
        **options: Unpack[LoginOptions],
    ) -> contextlib.aclosing[RabbitMqBroker]:
        """A broker that connects on first use and closes its connection when the block exits.

        Nothing is read or connected before the first call, so this succeeds while RabbitMQ or
        the secret store is down. ``heartbeat`` (seconds) is how soon a silent broker is noticed.
        """
        return contextlib.aclosing(cls(host, port, options, default_vhost, heartbeat))

    @classmethod
    def from_settings(
        cls, settings: Settings, credentials: CredentialSource, breaker: ServiceBreaker | None
    ) -> contextlib.AbstractAsyncContextManager[RabbitMqBroker]:
        """`open` on ``settings.rabbitmq`` and its vhost, with the timeouts of ``backends``."""
        return cls.open(
            host=settings.rabbitmq.host,
            port=settings.rabbitmq.port,
            default_vhost=settings.rabbitmq_vhost,
            **options_from(settings, credentials, breaker),
        )

    async def publish(self, queue: str, body: bytes) -> None:
        """Put ``body`` on the durable ``queue`` as a persistent message the broker confirmed."""
        await self._login.run(
            lambda connection: _translated(self._publish(connection, queue, body)),
            operation="publish",
        )

    async def queue_info(self, queue: str) -> QueueInfo:
        """Message and consumer counts of ``queue``; ``exists=False`` (not created) if unknown."""
        return await self._login.run(
            lambda connection: _translated(_queue_info(connection, queue)), operation="queue_info"
        )

    async def check(self) -> ServiceHealth:
        """Healthy with the broker's ``version`` once a command round-trips on a channel."""
        version = await self._login.run(
            lambda connection: _translated(self._round_trip(connection)),
            operation="check",
            probe=True,
        )
        return ServiceHealth(healthy=True, info={"version": version})

    async def aclose(self) -> None:
        """Close the connection and its channels. The next call would open a new one."""
        await self._login.aclose()

    async def _connect(self, secret: Secret) -> AbstractConnection:
        vhost = secret.data.get("vhost") or self._default_vhost
        url = URL.build(
            scheme="amqp",
            user=secret.data.get("user", ""),
            password=secret.data.get("password", ""),
            host=self._host,
            port=self._port,
            path=f"/{vhost}",
            query={"heartbeat": str(self._heartbeat), "name": "colima-ref"},
        )
        connection = aiormq.Connection(url)
        try:
            # aiormq's connect has no timeout of its own: a silent host would hang it.
            async with asyncio.timeout(self._login.connect_timeout):
                await _translated(connection.connect())
        except TimeoutError as exc:
            await connection.close()
            raise errors.MessageQueueError(
                f"RabbitMQ accepted no connection within {self._login.connect_timeout:g} s",
                _cause(exc),
                service=SERVICE,
            ) from exc
        except BaseException:
            # A refused transport leaves the connection object open; closing twice is harmless.
            await connection.close()
            raise
        return connection

    async def _publish(self, connection: AbstractConnection, queue: str, body: bytes) -> None:
        confirms = await self._confirm_channel(connection)
        if queue not in confirms.declared:
            await confirms.declaring.call(queue, _declare, confirms, queue)
        await confirms.channel.basic_publish(
            body,
            routing_key=queue,
            mandatory=True,
            # Fresh per message: aiormq writes its message id into the properties it is given.
            properties=Basic.Properties(delivery_mode=_PERSISTENT, content_type="application/json"),
        )

    async def _round_trip(self, connection: AbstractConnection) -> str:
        # Opening and closing a channel per check would cost two round trips; a kept channel
        # answers a no-op Basic.Qos in one. Concurrent first checks may each open one: the
        # spares close with their connection.
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
        # Concurrent first publishes share one channel.
        return await self._openings.call(connection, self._open_confirms, connection)

    async def _open_confirms(self, connection: AbstractConnection) -> _ConfirmChannel:
        channel = await _channel(connection, publisher_confirms=True)
        self._confirms = _ConfirmChannel(connection, channel)
        return self._confirms


async def _declare(confirms: _ConfirmChannel, queue: str) -> None:
    await confirms.channel.queue_declare(queue, durable=True)
    confirms.declared.add(queue)


def _closed(connection: AbstractConnection) -> bool:
    return connection.is_closed


async def _close(connection: AbstractConnection) -> None:
    await connection.close()


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


async def _translated(call: Awaitable[T]) -> T:
    """Await ``call``, raising our errors for aiormq's. Our messages only: the driver's may
    quote the URL."""
    try:
        return await call
    except ProbableAuthenticationError as exc:
        raise LoginRefusedError from exc
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
