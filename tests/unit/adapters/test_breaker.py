"""ServiceBreaker on the in-memory adapters: the full cycle, what never trips it, and how it shows.

The reset timeout is 0.2 s, so the cycle runs on the real clock in well under a second.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import aiobreaker
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from colima_ref.adapters import memory
from colima_ref.adapters.breaker import ServiceBreaker
from colima_ref.adapters.memory import (
    InMemoryCache,
    InMemoryClusterTopology,
    InMemorySecretStore,
    InMemorySqlDatabase,
)
from colima_ref.domain import errors
from colima_ref.http.app import create_app
from colima_ref.observability.metrics import Metrics
from colima_ref.ports.services import Services
from colima_ref.settings import Settings

RESET = 0.2
# Long enough for the ten requests the full-cycle test makes while the circuit must still be
# open, on a slow machine too (each of them renders /metrics).
CYCLE_RESET = 1.0
QUERY = "/examples/database/postgres/query"
# No response cache, so /health/all shows the breaker as it is now; no rate limit in the way.
ENV = {"RESPONSE_CACHE_ENABLED": "false", "RATE_LIMIT_ENABLED": "false"}


def outage(service: str = "postgres") -> errors.DatabaseConnectionError:
    return errors.DatabaseConnectionError("down", service=service)


class Backend:
    """An async backend call that fails with ``error`` (when set) and counts the calls it got."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return "answer"


async def trip(breaker: ServiceBreaker, backend: Backend) -> None:
    backend.error = outage(breaker.service)
    for _ in range(breaker.fail_max):
        with pytest.raises(errors.ServiceUnavailableError):
            await breaker.call(backend, operation="get")


async def test_five_outages_open_the_circuit_and_the_sixth_call_fails_at_once() -> None:
    breaker, backend = ServiceBreaker("postgres", reset_timeout=RESET), Backend()
    backend.error = outage()

    for _ in range(4):
        with pytest.raises(errors.DatabaseConnectionError):
            await breaker.call(backend, operation="get")
    with pytest.raises(errors.CircuitBreakerError) as tripped:
        await breaker.call(backend, operation="get")
    with pytest.raises(errors.CircuitBreakerError) as refused:
        await breaker.call(backend, operation="get")

    assert backend.calls == 5
    assert isinstance(tripped.value.__cause__, errors.DatabaseConnectionError)
    assert refused.value.status_code == 503
    assert refused.value.details["service"] == "postgres"
    assert refused.value.retry_after == 1
    assert breaker.state == "open"


async def test_retry_after_is_the_whole_seconds_left_on_the_monotonic_clock() -> None:
    now = [1000.0]
    breaker = ServiceBreaker("mysql", reset_timeout=60, clock=lambda: now[0])
    await trip(breaker, Backend())

    now[0] += 20.5
    with pytest.raises(errors.CircuitBreakerError) as refused:
        await breaker.call(Backend(), operation="get")

    assert refused.value.retry_after == 40
    assert breaker.snapshot() == {
        "state": "open",
        "failures": 5,
        "fail_max": 5,
        "retry_after": 40,
    }


async def test_after_the_timeout_one_trial_success_closes_the_circuit() -> None:
    secrets = InMemorySecretStore(breaker=ServiceBreaker("vault", reset_timeout=RESET))
    secrets.failing = True
    for _ in range(5):
        with pytest.raises(errors.ServiceUnavailableError):
            await secrets.read("postgres")
    secrets.failing = False
    with pytest.raises(errors.CircuitBreakerError):
        await secrets.read("postgres")

    await asyncio.sleep(RESET + 0.05)
    assert secrets.breaker is not None
    assert secrets.breaker.state == "half-open"
    secret = await secrets.read("postgres")

    assert secret.data["user"] == "dev_admin"
    assert secrets.breaker.snapshot() == {"state": "closed", "failures": 0, "fail_max": 5}


async def test_a_failed_trial_opens_the_circuit_for_another_full_timeout() -> None:
    database = InMemorySqlDatabase(
        "PostgreSQL", failing=True, breaker=ServiceBreaker("postgres", reset_timeout=RESET)
    )
    for _ in range(5):
        with pytest.raises(errors.ServiceUnavailableError):
            await database.current_timestamp()
    await asyncio.sleep(RESET + 0.05)

    with pytest.raises(errors.CircuitBreakerError) as trial:
        await database.current_timestamp()
    reopened_at = time.monotonic()
    database.failing = False
    with pytest.raises(errors.CircuitBreakerError):
        await database.current_timestamp()

    assert isinstance(trial.value.__cause__, errors.DatabaseConnectionError)
    await asyncio.sleep(RESET + 0.05 - (time.monotonic() - reopened_at))
    assert (await database.current_timestamp()).query == "SELECT current_timestamp"


async def test_while_half_open_every_call_goes_through_and_each_answer_moves_the_circuit() -> None:
    """No call waits for another's trial (aiobreaker has no such gate): an outage reopens the
    circuit, and a success that began while half-open closes it again when it ends."""
    breaker, backend = ServiceBreaker("rabbitmq", reset_timeout=RESET), Backend()
    await trip(breaker, backend)
    await asyncio.sleep(RESET + 0.05)
    release = asyncio.Event()

    async def slow_trial() -> str:
        await release.wait()
        return "recovered"

    trial = asyncio.create_task(breaker.call(slow_trial, operation="get"))
    await asyncio.sleep(0)
    with pytest.raises(errors.CircuitBreakerError) as reopened:
        await breaker.call(backend, operation="get")
    assert breaker.state == "open"
    release.set()

    assert await trial == "recovered"
    assert backend.calls == 6
    assert isinstance(reopened.value.__cause__, errors.DatabaseConnectionError)
    assert breaker.state == "closed"


async def test_concurrent_outages_open_the_circuit_once() -> None:
    """Calls that began while it was closed and fail after it opened count, but open nothing."""
    now = [0.0]
    opened: list[str] = []

    class Recorder:
        def breaker_failure(self, service: str) -> None:
            pass

        def breaker_changed(self, service: str, state: str) -> None:
            opened.append(state)

        def dependency_call(self, service: str, operation: str, outcome: str, s: float) -> None:
            pass

    breaker = ServiceBreaker("redis", reset_timeout=60, clock=lambda: now[0], recorder=Recorder())
    release = asyncio.Event()

    async def slow_outage() -> None:
        await release.wait()
        raise outage("redis")

    calls = [asyncio.create_task(breaker.call(slow_outage, operation="get")) for _ in range(8)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    now[0] = 30.0

    assert opened == ["open"]
    assert sum(isinstance(result, errors.CircuitBreakerError) for result in results) == 4
    assert breaker.snapshot()["retry_after"] == 30


async def test_a_missing_secret_never_trips_the_vault_breaker() -> None:
    secrets = InMemorySecretStore(breaker=ServiceBreaker("vault", reset_timeout=RESET))

    for _ in range(10):
        with pytest.raises(errors.ResourceNotFoundError):
            await secrets.read("no/such/path")

    assert secrets.breaker is not None
    assert secrets.breaker.snapshot()["failures"] == 0
    assert (await secrets.read("postgres")).path == "postgres"


async def test_an_unknown_cache_key_or_redis_node_never_trips_the_redis_breaker() -> None:
    breaker = ServiceBreaker("redis", reset_timeout=RESET)
    cache = InMemoryCache(breaker=breaker)
    cluster = InMemoryClusterTopology(breaker=breaker)

    for _ in range(10):
        assert await cache.get("never-set") is None
        assert await cache.delete("never-set") is False
        with pytest.raises(errors.ResourceNotFoundError):
            await cluster.node_info("redis-9")

    assert breaker.state == "closed"


@pytest.mark.parametrize(
    "answer",
    [
        errors.ValidationError.for_field("ttl", "too long"),
        errors.AuthenticationError(),
        errors.ResourceNotFoundError(),
        ValueError("a bug, not an outage"),
    ],
    ids=lambda exc: type(exc).__name__,
)
async def test_an_error_that_is_not_an_outage_passes_through_and_resets_the_count(
    answer: BaseException,
) -> None:
    breaker, backend = ServiceBreaker("postgres"), Backend()
    backend.error = outage()
    for _ in range(4):
        with pytest.raises(errors.DatabaseConnectionError):
            await breaker.call(backend, operation="get")

    backend.error = answer
    with pytest.raises(type(answer)):
        await breaker.call(backend, operation="get")

    assert breaker.snapshot()["failures"] == 0
    assert breaker.state == "closed"


async def test_a_success_resets_the_count_so_outages_must_be_consecutive_to_open_it() -> None:
    breaker, backend = ServiceBreaker("postgres"), Backend()
    backend.error = outage()
    for _ in range(4):
        with pytest.raises(errors.DatabaseConnectionError):
            await breaker.call(backend, operation="get")

    backend.error = None
    assert await breaker.call(backend, operation="get") == "answer"
    backend.error = outage()
    for _ in range(4):
        with pytest.raises(errors.DatabaseConnectionError):
            await breaker.call(backend, operation="get")

    assert breaker.snapshot() == {"state": "closed", "failures": 4, "fail_max": 5}


async def test_another_services_outage_does_not_trip_this_breaker() -> None:
    """PostgreSQL reading its password from a Vault that is down is Vault's outage."""
    breaker, backend = ServiceBreaker("postgres"), Backend()
    backend.error = errors.VaultUnavailableError("down", service="vault")

    for _ in range(10):
        with pytest.raises(errors.VaultUnavailableError):
            await breaker.call(backend, operation="get")

    assert breaker.state == "closed"


async def test_our_timeout_counts_as_an_outage() -> None:
    breaker, backend = ServiceBreaker("mongodb"), Backend()
    backend.error = errors.OperationTimeoutError("slow", {"service": "mongodb"})

    for _ in range(4):
        with pytest.raises(errors.OperationTimeoutError):
            await breaker.call(backend, operation="get")
    with pytest.raises(errors.CircuitBreakerError):
        await breaker.call(backend, operation="get")

    assert breaker.state == "open"


@pytest.fixture
def berlin_time() -> Iterator[None]:
    """The process in a zone east of UTC, where aiobreaker's own opens_at is an hour off."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.usefixtures("berlin_time")
async def test_retry_after_and_the_trial_are_right_outside_utc() -> None:
    breaker, backend = ServiceBreaker("postgres", reset_timeout=RESET), Backend()
    await trip(breaker, backend)
    with pytest.raises(errors.CircuitBreakerError) as refused:
        await breaker.call(backend, operation="get")

    await asyncio.sleep(RESET + 0.05)
    backend.error = None

    assert refused.value.retry_after == 1
    assert await breaker.call(backend, operation="get") == "answer"


# aiobreaker used plainly: what ServiceBreaker accepts (half-open) or works around (Retry-After).


async def tripped_aiobreaker(reset: float) -> aiobreaker.CircuitBreaker:
    breaker = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(seconds=reset))
    with pytest.raises(aiobreaker.CircuitBreakerError):
        await breaker.call_async(Backend(error=outage()))
    return breaker


async def test_while_half_open_aiobreaker_lets_every_call_through_not_one_trial() -> None:
    breaker = await tripped_aiobreaker(RESET)
    await asyncio.sleep(RESET + 0.05)
    release = asyncio.Event()
    reached = 0

    async def slow_answer() -> str:
        nonlocal reached
        reached += 1
        await release.wait()
        return "answer"

    calls = [asyncio.create_task(breaker.call_async(slow_answer)) for _ in range(3)]
    await asyncio.sleep(0.01)
    release.set()

    assert await asyncio.gather(*calls) == ["answer"] * 3
    assert reached == 3
    assert breaker.current_state is aiobreaker.CircuitBreakerState.CLOSED


@pytest.mark.usefixtures("berlin_time")
async def test_outside_utc_aiobreaker_says_nothing_of_when_it_reopens_but_still_refuses() -> None:
    """Its ``opens_at`` compares a utcnow() timestamp with now(); its refusal uses utcnow()."""
    breaker = await tripped_aiobreaker(60)

    with pytest.raises(aiobreaker.CircuitBreakerError) as refused:
        await breaker.call_async(Backend())

    assert breaker.opens_at is None
    assert refused.value.reopen_time is None


async def test_a_health_probe_neither_trips_nor_waits_for_the_breaker() -> None:
    database = InMemorySqlDatabase(
        "MySQL", failing=True, breaker=ServiceBreaker("mysql", reset_timeout=60)
    )
    for _ in range(10):
        with pytest.raises(errors.DatabaseConnectionError):
            await database.check()
    assert database.breaker is not None
    assert database.breaker.state == "closed"

    for _ in range(5):
        with pytest.raises(errors.ServiceUnavailableError):
            await database.current_timestamp()
    database.failing = False

    assert database.breaker.state == "open"
    assert (await database.check()).healthy


async def test_the_memory_services_share_one_redis_breaker_and_report_every_service() -> None:
    bundle = memory.services(fail_max=2, reset_timeout=RESET)
    assert isinstance(bundle.cache, InMemoryCache)
    assert isinstance(bundle.cluster, InMemoryClusterTopology)
    bundle.cache.failing = True

    for _ in range(2):
        with pytest.raises(errors.ServiceUnavailableError):
            await bundle.cache.get("k")

    assert set(bundle.breakers) == {"vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq"}
    assert bundle.breakers["redis"].snapshot()["state"] == "open"
    with pytest.raises(errors.CircuitBreakerError):
        await bundle.cluster.nodes()


# Through the HTTP app: status, body, headers, /health/all and /metrics.

Samples = dict[tuple[str, str], float]


def serving(services: Services) -> Callable[[], Any]:
    @asynccontextmanager
    async def open_services() -> AsyncIterator[Services]:
        yield services

    return open_services


@pytest.fixture
def recorder() -> Metrics:
    return Metrics(name="test", version="0")


@pytest.fixture
def reset_timeout() -> float:
    return RESET


@pytest.fixture
def bundle(recorder: Metrics, reset_timeout: float) -> Services:
    return memory.services(reset_timeout=reset_timeout, recorder=recorder)


@pytest.fixture
def client(bundle: Services, recorder: Metrics) -> Iterator[TestClient]:
    app = create_app(serving(bundle), Settings.from_env(ENV).http, metrics=recorder)
    with TestClient(app) as client:
        yield client


def breaker_samples(client: TestClient, service: str) -> Samples:
    response = client.get("/metrics")
    return {
        (family.name, sample.name): sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name.startswith("circuit_breaker")
        for sample in family.samples
        if sample.labels.get("service") == service
    }


def breaker_metric(client: TestClient, name: str, service: str = "postgres") -> float:
    return next(
        value for (_, sample), value in breaker_samples(client, service).items() if sample == name
    )


def test_an_open_breaker_answers_503_with_the_uniform_body_and_retry_after(
    client: TestClient, bundle: Services
) -> None:
    assert isinstance(bundle.postgres, InMemorySqlDatabase)
    bundle.postgres.failing = True

    first = [client.get(QUERY).json()["error"] for _ in range(5)]
    refused = client.get(QUERY)
    body = refused.json()

    assert first == ["DatabaseConnectionError"] * 4 + ["CircuitBreakerError"]
    assert refused.status_code == 503
    assert set(body) == {"error", "message", "status_code", "details", "request_id"}
    assert body["error"] == "CircuitBreakerError"
    assert body["details"]["service"] == "postgres"
    assert body["request_id"] == refused.headers["X-Request-ID"]
    assert int(refused.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("reset_timeout", [CYCLE_RESET])
def test_the_full_cycle_shows_in_health_all_and_moves_the_metrics(
    client: TestClient, bundle: Services, reset_timeout: float
) -> None:
    assert isinstance(bundle.postgres, InMemorySqlDatabase)
    bundle.postgres.failing = True
    for _ in range(6):
        client.get(QUERY)

    health = client.get("/health/all").json()["services"]
    assert health["postgres"]["status"] == "unhealthy"
    assert health["postgres"]["circuit_breaker"]["state"] == "open"
    assert health["postgres"]["circuit_breaker"]["retry_after"] >= 1
    assert health["mysql"]["circuit_breaker"] == {"state": "closed", "failures": 0, "fail_max": 5}
    assert breaker_metric(client, "circuit_breaker_state") == 2
    assert breaker_metric(client, "circuit_breaker_opened_total") == 1
    assert breaker_metric(client, "circuit_breaker_failures_total") == 5

    bundle.postgres.failing = False
    recovered = client.get("/health/postgres").json()
    assert recovered["status"] == "healthy"
    assert recovered["circuit_breaker"]["state"] == "open"
    time.sleep(reset_timeout + 0.05)
    assert client.get("/health/postgres").json()["circuit_breaker"]["state"] == "half-open"

    assert client.get(QUERY).status_code == 200
    assert client.get("/health/postgres").json()["circuit_breaker"]["state"] == "closed"
    assert breaker_metric(client, "circuit_breaker_half_open_total") == 1
    assert breaker_metric(client, "circuit_breaker_closed_total") == 1
    assert breaker_metric(client, "circuit_breaker_state") == 0
    assert breaker_metric(client, "circuit_breaker_opened_total", service="mysql") == 0


async def test_each_call_is_recorded_with_the_outcome_its_exception_means() -> None:
    recorded: list[tuple[str, str, str]] = []

    class Recorder:
        def breaker_failure(self, service: str) -> None:
            pass

        def breaker_changed(self, service: str, state: str) -> None:
            pass

        def dependency_call(self, service: str, operation: str, outcome: str, s: float) -> None:
            assert s >= 0
            recorded.append((service, operation, outcome))

    breaker = ServiceBreaker("postgres", fail_max=2, reset_timeout=60, recorder=Recorder())
    backend = Backend()
    await breaker.call(backend, operation="query")
    backend.error = errors.ResourceNotFoundError("no such row")
    with pytest.raises(errors.ResourceNotFoundError):
        await breaker.call(backend, operation="query")
    backend.error = errors.OperationTimeoutError("slow")
    with pytest.raises(errors.OperationTimeoutError):
        await breaker.call(backend, operation="query")
    backend.error = outage()
    with pytest.raises(errors.CircuitBreakerError):
        await breaker.call(backend, operation="query")
    with pytest.raises(errors.CircuitBreakerError):
        await breaker.call(backend, operation="query")

    assert [outcome for _, _, outcome in recorded] == [
        "success",
        "error",
        "timeout",
        "error",
        "rejected",
    ]
    assert {(service, operation) for service, operation, _ in recorded} == {("postgres", "query")}
    assert backend.calls == 4
