"""The live adapters as the failure-behaviour tests drive them: opened through their ``open(...)``
on loopback ports, with credentials the test controls, each making one round trip of its port
whose answer shows it went through.

Only ``open(...)`` and the ports are used, so how an adapter logs in and times out inside is free
to change under these tests.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import attrs
import pytest
from servers.mongo import COLLECTIONS

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.mongo import MongoDocumentDatabase
from colima_ref.adapters.mysql import MySqlDatabase
from colima_ref.adapters.postgres import PostgresDatabase
from colima_ref.adapters.rabbitmq import RabbitMqBroker
from colima_ref.adapters.redis import RedisCache, RedisClusterTopology, RedisConnection
from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.domain.errors import (
    CacheConnectionError,
    DatabaseConnectionError,
    MessageQueueError,
    ServiceUnavailableError,
    VaultUnavailableError,
)
from colima_ref.domain.models import CacheEntry, QueueInfo, ServiceHealth

LOOPBACK = "127.0.0.1"
TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
# The token the Vault adapter is opened with where no Vault answers: it must never be shown.
UNUSED_VAULT_TOKEN = "hvs.contract-token-never-shown"


class Opener(Protocol):
    def __call__(
        self, credentials: CredentialSource, ports: Sequence[int], **options: Any
    ) -> AbstractAsyncContextManager[Any]: ...


class Account(Protocol):
    """A login of one test's own on a server that checks passwords (see ``servers``)."""

    @property
    def ports(self) -> list[int]: ...
    @property
    def password(self) -> str: ...
    def secret(self, password: str | None = None) -> dict[str, str]: ...
    def new_password(self) -> str: ...
    async def rotate(self, password: str) -> None:
        """Set ``password`` on the server and end the account's sessions."""

    async def refuses(self, password: str) -> bool: ...
    async def sessions(self) -> int: ...


@attrs.frozen
class LiveAdapter:
    """One adapter: how to open it, its one call and the answer that call expects, its health
    check, and the error it reports an unreachable service or a refused login with."""

    service: str
    secret_path: str
    error: type[ServiceUnavailableError]
    open: Opener
    call: Callable[[Any], Awaitable[Any]]
    # Whether what ``call`` returned is the answer of a call that went through.
    answered: Callable[[Any], object]
    check: Callable[[Any], Awaitable[ServiceHealth]]


def _postgres(credentials: CredentialSource, ports: Sequence[int], **options: Any) -> Any:
    return PostgresDatabase.open(host=LOOPBACK, port=ports[0], credentials=credentials, **options)


def _mysql(credentials: CredentialSource, ports: Sequence[int], **options: Any) -> Any:
    return MySqlDatabase.open(host=LOOPBACK, port=ports[0], credentials=credentials, **options)


def _mongodb(credentials: CredentialSource, ports: Sequence[int], **options: Any) -> Any:
    return MongoDocumentDatabase.open(
        host=LOOPBACK, port=ports[0], credentials=credentials, **options
    )


def _redis(credentials: CredentialSource, ports: Sequence[int], **options: Any) -> Any:
    nodes = [(LOOPBACK, port) for port in ports]
    return RedisConnection.open(nodes=nodes, credentials=credentials, **options)


def _rabbitmq(credentials: CredentialSource, ports: Sequence[int], **options: Any) -> Any:
    return RabbitMqBroker.open(host=LOOPBACK, port=ports[0], credentials=credentials, **options)


def _vault(_credentials: CredentialSource, ports: Sequence[int], **options: Any) -> Any:
    """Vault is the secret store itself: it logs in with a token, and its ``request_timeout``
    bounds the connect as the others' ``connect_timeout`` does."""
    return VaultSecretStore.open(
        addr=f"http://{LOOPBACK}:{ports[0]}",
        token=UNUSED_VAULT_TOKEN,
        request_timeout=options.pop("connect_timeout", 2.0),
        **options,
    )


async def _set_and_get(connection: RedisConnection) -> CacheEntry | None:
    # One key, so one master: a rotation that kills sessions on several masters makes redis-py
    # drop cluster nodes it never closes (redis/redis-py#3572), whose warnings would land in
    # whichever test the collector runs in.
    cache = RedisCache(connection)
    await cache.set("colima-test:contract", "kept", ttl=60)
    return await cache.get("colima-test:contract")


async def _publish_and_count(broker: RabbitMqBroker) -> QueueInfo:
    queue = f"colima-test-{uuid.uuid4().hex}"
    await broker.publish(queue, b"{}")
    return await broker.queue_info(queue)


POSTGRES = LiveAdapter(
    "postgres",
    "postgres",
    DatabaseConnectionError,
    _postgres,
    call=lambda database: database.current_timestamp(),
    answered=lambda result: re.fullmatch(rf"{TIMESTAMP}(\.\d{{1,6}})?\+00", result.result),
    check=lambda database: database.check(),
)
MYSQL = LiveAdapter(
    "mysql",
    "mysql",
    DatabaseConnectionError,
    _mysql,
    call=lambda database: database.current_timestamp(),
    answered=lambda result: re.fullmatch(TIMESTAMP, result.result),
    check=lambda database: database.check(),
)
MONGODB = LiveAdapter(
    "mongodb",
    "mongodb",
    DatabaseConnectionError,
    _mongodb,
    call=lambda database: database.collection_names(),
    answered=lambda names: names == sorted(COLLECTIONS),
    check=lambda database: database.check(),
)
REDIS = LiveAdapter(
    "redis",
    "redis-1",
    CacheConnectionError,
    _redis,
    call=_set_and_get,
    answered=lambda entry: entry is not None and entry.value == "kept",
    check=lambda connection: RedisClusterTopology(connection).check(),
)
RABBITMQ = LiveAdapter(
    "rabbitmq",
    "rabbitmq",
    MessageQueueError,
    _rabbitmq,
    call=_publish_and_count,
    answered=lambda info: info.message_count == 1,
    check=lambda broker: broker.check(),
)
VAULT = LiveAdapter(
    "vault",
    "postgres",
    VaultUnavailableError,
    _vault,
    call=lambda store: store.read("postgres"),
    answered=lambda secret: secret.path == "postgres",
    check=lambda store: store.check(),
)

# The adapters that log in with credentials read from a secret store.
LOGGING_IN = [
    pytest.param(POSTGRES, id="postgres"),
    pytest.param(MYSQL, id="mysql"),
    pytest.param(MONGODB, id="mongodb"),
    pytest.param(REDIS, id="redis"),
    pytest.param(RABBITMQ, id="rabbitmq"),
]
EVERY = [*LOGGING_IN, pytest.param(VAULT, id="vault")]


def marked(params: list[Any]) -> list[Any]:
    """``params`` marked with their service, for tests that need it running."""
    return [
        pytest.param(*param.values, id=param.id, marks=getattr(pytest.mark, param.id))
        for param in params
    ]
