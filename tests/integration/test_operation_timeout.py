"""Every adapter's calls end within the operation timeout, whatever its backend does.

Each adapter reaches its devstack backend through a `live_support.Relay`, which makes the backend
slow (every chunk held 3 s), silent (bytes held until healed) or down (connections reset and
refused) while it stays up for everyone else. The operation timeout is 1 s and the connect
timeout the contract's default, 2 s, so connecting and logging in must be bounded by the
operation timeout too. A call ends with our TimeoutError (504) or a ServiceUnavailableError (503)
within the operation timeout and a 200 ms margin, for a call on a connected adapter and for the
first call of a fresh one (connect and login through the relay).

The databases' credentials come from an in-memory store holding the devstack's secrets, so only
the backend under test is faulted. Redis is the devstack's standalone server (6379): a cluster
node announces its real address, so a relay in front of one would be bypassed after the first
command. That covers the connection, pool and command paths redis-py shares between Redis and
RedisCluster, not the cluster's own topology discovery.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import hvac
import pytest
from live_support import WHOLE_STACK, Fault, Relay, addresses, read_secret

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.adapters.mongo import MongoDocumentDatabase
from colima_ref.adapters.mysql import MySqlDatabase
from colima_ref.adapters.postgres import PostgresDatabase
from colima_ref.adapters.rabbitmq import RabbitMqBroker
from colima_ref.adapters.redis import RedisCache, RedisConnection
from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.domain.errors import OperationTimeoutError, ServiceUnavailableError

pytestmark = WHOLE_STACK

OPERATION_TIMEOUT = 1.0
CONNECT_TIMEOUT = 2.0
MARGIN = 0.2
SLOW = 3.0  # seconds the relay holds each chunk when slow
# A refused connection is an answer: it should not wait for a pool or a timeout.
REFUSED_WITHIN = 0.5
STANDALONE_REDIS = ("127.0.0.1", 6379)
SERVICES = ("vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq")
FAULTS: tuple[Fault, ...] = ("slow", "silent")
SECRET_PATHS = ("postgres", "mysql", "mongodb", "rabbitmq")

Call = Callable[[], Awaitable[object]]
Adapter = Callable[[str, Relay], AbstractAsyncContextManager[Call]]


@pytest.fixture
def relay_to(devstack: dict[str, str]) -> Iterator[Callable[[str], Relay]]:
    """Relays to a service's backend, listening, closed after the test."""
    targets = {service: where[0] for service, where in addresses(devstack).items()}
    targets["redis"] = STANDALONE_REDIS
    opened: list[Relay] = []

    def relay_to(service: str) -> Relay:
        relay = Relay(targets[service])
        relay.restore()
        opened.append(relay)
        return relay

    yield relay_to
    for relay in opened:
        relay.close()


@pytest.fixture
def adapter(devstack: dict[str, str], vault_admin: hvac.Client) -> Adapter:
    """``adapter(service, relay)``: an async context manager yielding one call of the service's
    adapter, built on first use through ``relay``."""
    secrets = {path: read_secret(vault_admin, path) for path in SECRET_PATHS}
    # The standalone server takes no password.
    secrets["redis-1"] = {}
    credentials = CredentialSource(InMemorySecretStore(secrets=secrets))

    @asynccontextmanager
    async def adapter(service: str, relay: Relay) -> AsyncIterator[Call]:
        host, port = "127.0.0.1", relay.port
        if service == "vault":
            async with VaultSecretStore.open(
                addr=f"http://{host}:{port}",
                token=devstack["VAULT_TOKEN"],
                request_timeout=CONNECT_TIMEOUT,
                operation_timeout=OPERATION_TIMEOUT,
            ) as store:
                yield lambda: store.read("postgres")
        elif service == "postgres":
            async with PostgresDatabase.open(
                host=host,
                port=port,
                credentials=credentials,
                connect_timeout=CONNECT_TIMEOUT,
                operation_timeout=OPERATION_TIMEOUT,
            ) as postgres:
                yield postgres.current_timestamp
        elif service == "mysql":
            async with MySqlDatabase.open(
                host=host,
                port=port,
                credentials=credentials,
                connect_timeout=CONNECT_TIMEOUT,
                operation_timeout=OPERATION_TIMEOUT,
            ) as mysql:
                yield mysql.current_timestamp
        elif service == "mongodb":
            async with MongoDocumentDatabase.open(
                host=host,
                port=port,
                credentials=credentials,
                connect_timeout=CONNECT_TIMEOUT,
                operation_timeout=OPERATION_TIMEOUT,
            ) as mongodb:
                yield mongodb.collection_names
        elif service == "redis":
            async with RedisConnection.open(
                nodes=[(host, port)],
                credentials=credentials,
                cluster=False,
                connect_timeout=CONNECT_TIMEOUT,
                operation_timeout=OPERATION_TIMEOUT,
            ) as redis:
                yield lambda: RedisCache(redis).get("colima-timeout-probe")
        else:
            async with RabbitMqBroker.open(
                host=host,
                port=port,
                credentials=credentials,
                connect_timeout=CONNECT_TIMEOUT,
                operation_timeout=OPERATION_TIMEOUT,
            ) as broker:
                yield lambda: broker.queue_info("colima-timeout-probe")

    return adapter


async def failure_of(call: Call) -> tuple[BaseException, float]:
    """The error ``call`` raised and how long it took to raise it."""
    started = time.monotonic()
    with pytest.raises((OperationTimeoutError, ServiceUnavailableError)) as caught:
        await call()
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("service", SERVICES)
async def test_a_call_to_a_slow_or_silent_backend_ends_within_the_operation_timeout(
    service: str, fault: Fault, relay_to: Callable[[str], Relay], adapter: Adapter
) -> None:
    relay = relay_to(service)
    async with adapter(service, relay) as call:
        await call()
        relay.inject(fault, delay=SLOW)
        error, elapsed = await failure_of(call)
        print(f"\n{service} {fault}: {type(error).__name__} after {elapsed:.3f} s")
        relay.cut()

    assert elapsed < OPERATION_TIMEOUT + MARGIN


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("service", SERVICES)
async def test_the_first_call_through_a_slow_or_silent_backend_ends_within_the_operation_timeout(
    service: str, fault: Fault, relay_to: Callable[[str], Relay], adapter: Adapter
) -> None:
    """Connecting and logging in are bounded like the call itself."""
    relay = relay_to(service)
    relay.inject(fault, delay=SLOW)
    async with adapter(service, relay) as call:
        error, elapsed = await failure_of(call)
        print(f"\n{service} {fault}, first call: {type(error).__name__} after {elapsed:.3f} s")
        relay.cut()

    assert elapsed < OPERATION_TIMEOUT + MARGIN


@pytest.mark.parametrize("service", SERVICES)
async def test_a_backend_that_refuses_connections_fails_each_call_at_once(
    service: str, relay_to: Callable[[str], Relay], adapter: Adapter
) -> None:
    """Down, on a connected adapter and on a fresh one: the first calls (those a circuit
    breaker counts before it opens) are each a 503 at once, without waiting for a pool.

    Except MongoDB's: pymongo waits out server selection for a server that refuses connections,
    so each of its calls ends at the connect timeout, bounded by the operation timeout.
    """
    connected_relay, fresh_relay = relay_to(service), relay_to(service)
    fresh_relay.cut()
    async with (
        adapter(service, connected_relay) as connected,
        adapter(service, fresh_relay) as fresh,
    ):
        await connected()
        connected_relay.cut()
        connected_failures = [await failure_of(connected) for _ in range(5)]
        fresh_failures = [await failure_of(fresh) for _ in range(5)]
    print(
        f"\n{service} down:",
        *(
            f"{name} {[round(elapsed, 3) for _, elapsed in failures]}"
            for name, failures in (("connected", connected_failures), ("fresh", fresh_failures))
        ),
    )

    failures = connected_failures + fresh_failures
    slowest = max(elapsed for _, elapsed in failures)
    if service == "mongodb":
        assert slowest < min(CONNECT_TIMEOUT, OPERATION_TIMEOUT) + MARGIN
    else:
        assert all(isinstance(error, ServiceUnavailableError) for error, _ in failures)
        assert slowest < REFUSED_WITHIN


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("service", SERVICES)
async def test_after_a_timed_out_call_the_healed_backend_answers_the_next_call(
    service: str, fault: Fault, relay_to: Callable[[str], Relay], adapter: Adapter
) -> None:
    """A connection left mid-call is closed or cleaned up, not handed to the next call with a
    late answer, and the adapter does not stay stuck."""
    relay = relay_to(service)
    async with adapter(service, relay) as call:
        first = await call()
        relay.inject(fault, delay=SLOW)
        await failure_of(call)
        relay.heal()
        # Chunks the relay held when it healed arrive late, as after a partition.
        await asyncio.sleep(SLOW)
        started = time.monotonic()
        second = await call()
        elapsed = time.monotonic() - started

    assert type(second) is type(first)
    assert elapsed < OPERATION_TIMEOUT + MARGIN


async def test_reads_from_a_silent_vault_hold_a_bounded_number_of_threads(
    devstack: dict[str, str], relay_to: Callable[[str], Relay]
) -> None:
    """hvac cannot be interrupted: its requests wait in threads, which must not pile up."""
    relay = relay_to("vault")
    async with VaultSecretStore.open(
        addr=f"http://127.0.0.1:{relay.port}",
        token=devstack["VAULT_TOKEN"],
        request_timeout=CONNECT_TIMEOUT,
        operation_timeout=OPERATION_TIMEOUT,
        max_threads=4,
    ) as store:
        await store.read("postgres")
        threads_before = threading.active_count()
        relay.inject("silent")
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(store.read("postgres") for _ in range(50)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        threads_during = threading.active_count()
        relay.cut()

    assert all(isinstance(outcome, ServiceUnavailableError) for outcome in outcomes)
    assert elapsed < OPERATION_TIMEOUT + MARGIN
    assert threads_during - threads_before <= 4
