"""Two live servers sharing the devstack's Redis Cluster as their cache, as two replicas of a
deployment do: each reports the services as it reaches them, and an outage shows in its
/health/all within 5 s.

Server A reaches PostgreSQL through a TCP relay the tests cut (`live_support.Relay`); server B
reaches it directly, so only A's PostgreSQL goes down. The response cache is on, as in
production; the rate limiter is off so that polling is never refused. The probes bypass the
breakers, so a breaker left open does not keep /health/all from seeing PostgreSQL back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from live_support import WHOLE_STACK, LiveServer, Relay, addresses
from prometheus_client.parser import text_string_to_metric_families

pytestmark = WHOLE_STACK

SHOWN_WITHIN = 5.0  # seconds from an outage to /health/all showing it
POLL = 0.05


@attrs.frozen
class Pair:
    a: LiveServer
    b: LiveServer
    relay: Relay


@pytest.fixture(scope="module")
def pair(devstack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    relay = Relay(addresses(devstack)["postgres"][0])
    relay.restore()
    # A breaker that stays open for the test's length, so that the report can be seen showing it.
    env = {**devstack, "RATE_LIMIT_ENABLED": "false", "CIRCUIT_BREAKER_RESET_TIMEOUT": "30"}
    a = LiveServer({**env, "POSTGRES_PORT": str(relay.port)}, tmp_path_factory.mktemp("a"))
    b = LiveServer(env, tmp_path_factory.mktemp("b"))
    try:
        a.start()
        b.start()
        yield Pair(a, b, relay)
    finally:
        for server in (a, b):
            server.stop_if_running()
        relay.close()


def postgres_in_report(server: LiveServer) -> dict[str, Any]:
    response = server.get("/health/all")
    assert response.status_code == 200, response.text
    entry: dict[str, Any] = response.json()["services"]["postgres"]
    return entry


def redis_calls(server: LiveServer) -> float:
    """How many calls the server has made to Redis, which only its response cache asks."""
    text = server.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "dependency_requests_total" and sample.labels.get("service") == "redis"
    )


def wait_until(condition: Any, what: str, within: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, f"{what} not within {within} s"
        time.sleep(POLL)
    return time.monotonic() - started


@pytest.fixture
def postgres_back(pair: Pair) -> Iterator[None]:
    yield
    pair.relay.restore()
    wait_until(
        lambda: postgres_in_report(pair.a)["status"] == "healthy", "A's PostgreSQL back", 15.0
    )


def test_each_server_reports_its_own_postgres_though_they_share_one_cache(
    pair: Pair, postgres_back: None
) -> None:
    assert [postgres_in_report(server)["status"] for server in (pair.a, pair.b)] == ["healthy"] * 2
    before = (redis_calls(pair.a), redis_calls(pair.b))

    pair.relay.cut()
    wait_until(lambda: postgres_in_report(pair.a)["status"] == "unhealthy", "A down", SHOWN_WITHIN)
    answers = [
        (name, postgres_in_report(server)["status"])
        for name, server in [("a", pair.a), ("b", pair.b)] * 5
    ]
    after = (redis_calls(pair.a), redis_calls(pair.b))

    assert answers == [("a", "unhealthy"), ("b", "healthy")] * 5
    assert after == before, "a health report went through the shared cache"


def test_an_outage_shows_within_5_s_though_a_healthy_report_was_just_served(
    pair: Pair, postgres_back: None
) -> None:
    assert postgres_in_report(pair.a)["status"] == "healthy"

    pair.relay.cut()
    shown_after = wait_until(
        lambda: postgres_in_report(pair.a)["status"] == "unhealthy", "the outage", SHOWN_WITHIN
    )
    print(f"\nPostgreSQL outage shown in /health/all after {shown_after:.3f} s")

    def breaker_open() -> bool:
        started = time.monotonic()
        answer = pair.a.get("/examples/database/postgres/query").json()
        print(f"query: {answer.get('error')} in {time.monotonic() - started:.3f} s")
        return answer.get("error") == "CircuitBreakerError"

    wait_until(breaker_open, "the breaker opening", 30)
    opened_at = time.monotonic()
    breaker = postgres_in_report(pair.a)["circuit_breaker"]["state"]
    print(f"breaker state in /health/all {time.monotonic() - opened_at:.3f} s after it opened")

    assert shown_after < SHOWN_WITHIN
    assert breaker == "open"
