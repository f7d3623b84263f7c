"""What every live adapter does when its service is not there or stops answering, and that closing
it ends its sessions. Opening never connects, so each opens while its service is down."""

from __future__ import annotations

import asyncio
import gc
import secrets
import time
import warnings
from collections.abc import AsyncIterator

import pytest
from live_support import credentials_for, every_text_of, free_port

from colima_ref.domain.errors import OperationTimeoutError, VaultUnavailableError

from .live_adapters import EVERY, LOGGING_IN, UNUSED_VAULT_TOKEN, Account, LiveAdapter, marked

CONNECT_TIMEOUT = 0.5
OPERATION_TIMEOUT = 0.5

CLOSED_PORT = {
    "postgres": ("PostgreSQL is unreachable", {"service": "postgres", "cause": "OperationalError"}),
    "mysql": (
        "MySQL is unreachable or failed the query",
        {"service": "mysql", "cause": "OperationalError"},
    ),
    "mongodb": (
        "MongoDB is unreachable",
        {"service": "mongodb", "cause": "ServerSelectionTimeoutError"},
    ),
    "redis": ("Redis is unreachable", {"service": "redis", "cause": "RedisClusterException"}),
    "rabbitmq": (
        "RabbitMQ is unreachable or dropped the connection",
        {"service": "rabbitmq", "cause": "AMQPConnectionError"},
    ),
    "vault": (
        "Vault is unavailable: unreachable",
        {"service": "vault", "reason": "unreachable", "cause": "ConnectionError"},
    ),
}
# A silent Vault is an unavailable one; every other service's silence is a 504.
SILENT = {
    "vault": (
        VaultUnavailableError,
        {"service": "vault", "reason": "timeout", "cause": "TimeoutError"},
    ),
}
# Open options that make an adapter hold more than one session at once.
SEVERAL_SESSIONS = {service: {"min_size": 3} for service in ("postgres", "mysql", "mongodb")}
# How long a server takes to forget a connection closed on its client's side.
FORGETS_WITHIN = {"rabbitmq": 0.2}


@pytest.mark.parametrize("adapter", EVERY)
async def test_a_closed_port_is_the_services_error_within_the_connect_timeout(
    adapter: LiveAdapter,
) -> None:
    password = secrets.token_urlsafe(18)
    secret = {"user": "nobody", "password": password, "database": "nowhere", "vhost": "nowhere"}
    # Three: a Redis given several seeds must fail as fast as with one.
    closed = [free_port() for _ in range(3)]
    started = time.monotonic()
    async with adapter.open(
        credentials_for(adapter.secret_path, secret), closed, connect_timeout=CONNECT_TIMEOUT
    ) as opened:
        with pytest.raises(adapter.error) as on_call:
            await adapter.call(opened)
        elapsed = time.monotonic() - started
        with pytest.raises(adapter.error) as on_check:
            await adapter.check(opened)

    assert elapsed < CONNECT_TIMEOUT + 1.5
    for caught in (on_call, on_check):
        assert (caught.value.message, caught.value.details) == CLOSED_PORT[adapter.service]
        assert password not in every_text_of(caught.value)
        assert UNUSED_VAULT_TOKEN not in every_text_of(caught.value)


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never sends a byte."""
    held: list[asyncio.StreamWriter] = []

    async def hold_silently(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold_silently, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
            await writer.wait_closed()
        await server.wait_closed()


@pytest.mark.parametrize("adapter", EVERY)
async def test_a_server_that_never_answers_fails_at_the_operation_timeout(
    adapter: LiveAdapter, silent_port: int
) -> None:
    secret = {"user": "nobody", "password": "unused", "database": "nowhere", "vhost": "nowhere"}
    error, details = SILENT.get(
        adapter.service, (OperationTimeoutError, {"service": adapter.service})
    )
    async with adapter.open(
        credentials_for(adapter.secret_path, secret),
        [silent_port],
        connect_timeout=2.0,
        operation_timeout=OPERATION_TIMEOUT,
    ) as opened:
        for call in (adapter.call, adapter.check):
            started = time.monotonic()
            with pytest.raises(error) as caught:
                await call(opened)
            elapsed = time.monotonic() - started

            assert OPERATION_TIMEOUT <= elapsed < OPERATION_TIMEOUT + 1.0
            assert caught.value.details == details


@pytest.mark.parametrize("adapter", marked(LOGGING_IN))
async def test_closing_ends_every_session_and_leaves_nothing_to_warn_about(
    adapter: LiveAdapter, account: Account
) -> None:
    credentials = credentials_for(adapter.secret_path, account.secret())
    gc.collect()  # what earlier tests left is theirs to answer for
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with adapter.open(
            credentials, account.ports, **SEVERAL_SESSIONS.get(adapter.service, {})
        ) as opened:
            answers = await asyncio.gather(*(adapter.call(opened) for _ in range(5)))
            await adapter.check(opened)
            open_sessions = await account.sessions()
        del opened
        gc.collect()
        await asyncio.sleep(FORGETS_WITHIN.get(adapter.service, 0.0))

    assert all(adapter.answered(answer) for answer in answers)
    assert open_sessions >= 1
    assert await account.sessions() == 0
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
