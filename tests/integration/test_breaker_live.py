"""The circuit breaker of a real PostgreSQL that goes down and comes back.

The adapter reaches the devstack's server through a TCP relay (`live_support.Relay`): cutting it
resets every connection and refuses new ones, as a stopped server does, and the shared server
itself is never stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import hvac
import pytest
from live_support import Relay, addresses, read_secret

from colima_ref.adapters.breaker import ServiceBreaker
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.adapters.postgres import PostgresDatabase
from colima_ref.domain import errors
from colima_ref.observability.metrics import Metrics

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.vault]

# Long enough that the probe after the server returns (a pool reconnecting, on a loaded machine)
# ends while the breaker is still open.
RESET = 3.0  # seconds
CONNECT_TIMEOUT = 1.0


@pytest.fixture
def relay(devstack: dict[str, str]) -> Iterator[Relay]:
    relay = Relay(addresses(devstack)["postgres"][0])
    relay.restore()
    yield relay
    relay.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(name="test", version="0")


@pytest.fixture
async def database(
    relay: Relay, vault_admin: hvac.Client, metrics: Metrics
) -> AsyncIterator[PostgresDatabase]:
    store = InMemorySecretStore(secrets={"postgres": read_secret(vault_admin, "postgres")})
    async with PostgresDatabase.open(
        host="127.0.0.1",
        port=relay.port,
        credentials=CredentialSource(store),
        connect_timeout=CONNECT_TIMEOUT,
        operation_timeout=3.0,
        min_size=1,
        max_size=2,
        breaker=ServiceBreaker("postgres", reset_timeout=RESET, recorder=metrics),
    ) as database:
        yield database


def breaker_of(database: PostgresDatabase) -> ServiceBreaker:
    breaker = database._login.breaker
    assert breaker is not None
    return breaker


async def trip(database: PostgresDatabase) -> None:
    outcomes = []
    for _ in range(5):
        with pytest.raises(errors.ServiceUnavailableError) as failed:
            await database.current_timestamp()
        outcomes.append(type(failed.value).__name__)
    assert outcomes == ["DatabaseConnectionError"] * 4 + ["CircuitBreakerError"]


async def test_a_stopped_server_opens_the_breaker_and_its_return_closes_it_after_one_trial(
    relay: Relay, database: PostgresDatabase, metrics: Metrics
) -> None:
    assert (await database.current_timestamp()).query == "SELECT current_timestamp"

    relay.cut()
    await trip(database)
    started = time.monotonic()
    with pytest.raises(errors.CircuitBreakerError) as refused:
        await database.current_timestamp()
    refused_in = time.monotonic() - started

    assert refused_in < 0.05  # at once: no connection attempt, no connect timeout
    assert refused.value.details["service"] == "postgres"
    assert refused.value.retry_after == RESET

    relay.restore()
    # The probe reaches the server past the open breaker, so the recovery shows at once.
    assert (await database.check()).healthy
    assert breaker_of(database).state == "open"
    with pytest.raises(errors.CircuitBreakerError):
        await database.current_timestamp()

    await asyncio.sleep(RESET)
    assert breaker_of(database).state == "half-open"
    assert (await database.current_timestamp()).query == "SELECT current_timestamp"
    assert breaker_of(database).state == "closed"
    rendered = metrics.render().decode()
    for line in (
        'circuit_breaker_opened_total{service="postgres"} 1.0',
        'circuit_breaker_half_open_total{service="postgres"} 1.0',
        'circuit_breaker_closed_total{service="postgres"} 1.0',
        'circuit_breaker_failures_total{service="postgres"} 5.0',
        'circuit_breaker_state{service="postgres"} 0.0',
    ):
        assert line in rendered


async def test_a_trial_while_the_server_is_still_down_opens_the_breaker_again(
    relay: Relay, database: PostgresDatabase
) -> None:
    relay.cut()
    await trip(database)
    await asyncio.sleep(RESET)

    with pytest.raises(errors.CircuitBreakerError) as trial:
        await database.current_timestamp()

    assert isinstance(trial.value.__cause__, errors.DatabaseConnectionError)
    assert breaker_of(database).snapshot()["state"] == "open"
    relay.restore()
