"""NodeBreakers: one Redis Cluster node failing opens its own breaker only, and the redis
service's state in health and metrics is derived from the nodes' breakers."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from colima_ref.adapters.breaker import ServiceBreaker, State
from colima_ref.adapters.redis import NodeBreakers
from colima_ref.adapters.redis.breakers import service_state
from colima_ref.domain import errors
from colima_ref.observability.metrics import Metrics

RESET = 0.2
NODES = ("127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003")


async def answer() -> str:
    return "answer"


async def down() -> str:
    raise errors.CacheConnectionError("Redis is unreachable", service="redis")


async def trip(breaker: ServiceBreaker) -> None:
    for _ in range(breaker.fail_max):
        with pytest.raises(errors.ServiceUnavailableError):
            await breaker.call(down, operation="get")


def redis_breaker_samples(metrics: Metrics) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        if family.name.startswith("circuit_breaker")
        for sample in family.samples
        if sample.labels.get("service") == "redis"
    }


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(name="test", version="0")


@pytest.fixture
def breakers(metrics: Metrics) -> NodeBreakers:
    group = NodeBreakers("redis", reset_timeout=RESET, recorder=metrics)
    for node in NODES:
        group.for_node(node, lambda: set(NODES))
    return group


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ((), "closed"),
        (("closed", "closed", "closed"), "closed"),
        (("open", "closed", "closed"), "half-open"),
        (("open", "half-open", "closed"), "half-open"),
        (("half-open", "half-open"), "half-open"),
        (("open", "half-open"), "half-open"),
        (("open", "open", "open"), "open"),
    ],
)
def test_the_service_state_is_closed_or_open_only_when_every_node_agrees(
    states: tuple[State, ...], expected: State
) -> None:
    assert service_state(states) == expected


async def test_one_open_node_refuses_its_keys_only_and_the_service_shows_half_open(
    breakers: NodeBreakers, metrics: Metrics
) -> None:
    failed, *healthy = (breakers.for_node(node, lambda: set(NODES)) for node in NODES)
    await trip(failed)

    with pytest.raises(errors.CircuitBreakerError) as refused:
        await failed.call(answer, operation="get")
    answers = [await breaker.call(answer, operation="get") for breaker in healthy]

    assert answers == ["answer", "answer"]
    assert refused.value.details["node"] == NODES[0]
    assert refused.value.details["service"] == "redis"
    snapshot = breakers.snapshot()
    assert (snapshot["state"], snapshot["failures"]) == ("half-open", 5)
    assert "retry_after" not in snapshot
    nodes = snapshot["nodes"]
    assert isinstance(nodes, dict)
    assert {name: node["state"] for name, node in nodes.items()} == {
        NODES[0]: "open",
        NODES[1]: "closed",
        NODES[2]: "closed",
    }
    samples = redis_breaker_samples(metrics)
    assert samples["circuit_breaker_state"] == 1
    assert samples["circuit_breaker_half_open_total"] == 1
    assert samples["circuit_breaker_opened_total"] == 0
    assert samples["circuit_breaker_failures_total"] == 5


async def test_the_service_opens_only_when_every_node_has(
    breakers: NodeBreakers, metrics: Metrics
) -> None:
    for node in NODES:
        await trip(breakers.for_node(node, lambda: set(NODES)))

    snapshot = breakers.snapshot()
    assert snapshot["state"] == "open"
    assert snapshot["retry_after"] == 1
    samples = redis_breaker_samples(metrics)
    assert samples["circuit_breaker_state"] == 2
    assert samples["circuit_breaker_opened_total"] == 1
    assert samples["circuit_breaker_failures_total"] == 15


async def test_a_node_that_recovers_closes_the_service_again(
    breakers: NodeBreakers, metrics: Metrics
) -> None:
    failed = breakers.for_node(NODES[0], lambda: set(NODES))
    await trip(failed)
    await asyncio.sleep(RESET + 0.05)
    assert breakers.state == "half-open"

    assert await failed.call(answer, operation="get") == "answer"

    assert breakers.snapshot()["state"] == "closed"
    samples = redis_breaker_samples(metrics)
    assert samples["circuit_breaker_state"] == 0
    assert samples["circuit_breaker_closed_total"] == 1


async def test_a_new_node_drops_the_breakers_of_nodes_the_cluster_no_longer_lists(
    breakers: NodeBreakers, metrics: Metrics
) -> None:
    """A replica took over the failed master's slots: the old master's open breaker goes."""
    await trip(breakers.for_node(NODES[0], lambda: set(NODES)))
    promoted = "127.0.0.1:7004"
    after_failover = {promoted, *NODES[1:]}

    breaker = breakers.for_node(promoted, lambda: after_failover)

    assert await breaker.call(answer, operation="get") == "answer"
    snapshot = breakers.snapshot()
    assert snapshot["state"] == "closed"
    nodes = snapshot["nodes"]
    assert isinstance(nodes, dict)
    assert set(nodes) == after_failover
    assert redis_breaker_samples(metrics)["circuit_breaker_state"] == 0


async def test_a_known_node_keeps_its_breaker_whatever_the_cluster_lists(
    breakers: NodeBreakers,
) -> None:
    failed = breakers.for_node(NODES[0], lambda: set(NODES))
    await trip(failed)

    assert breakers.for_node(NODES[0], set) is failed
    assert breakers.state == "half-open"


async def test_without_node_breakers_the_whole_cluster_breaker_is_the_service(
    metrics: Metrics,
) -> None:
    """A standalone server, or a cluster before the client knows its slots."""
    breakers = NodeBreakers("redis", reset_timeout=RESET, recorder=metrics)
    await trip(breakers.whole)

    with pytest.raises(errors.CircuitBreakerError) as refused:
        await breakers.whole.call(answer, operation="get")

    assert "node" not in refused.value.details
    assert breakers.snapshot() == {
        "state": "open",
        "failures": 5,
        "fail_max": 5,
        "retry_after": 1,
    }
    assert redis_breaker_samples(metrics)["circuit_breaker_state"] == 2


async def test_an_open_whole_cluster_breaker_degrades_a_service_whose_nodes_answer(
    breakers: NodeBreakers, metrics: Metrics
) -> None:
    await trip(breakers.whole)

    assert breakers.snapshot()["state"] == "half-open"
    assert redis_breaker_samples(metrics)["circuit_breaker_state"] == 1
