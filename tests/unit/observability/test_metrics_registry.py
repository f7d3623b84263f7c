"""The Metrics recorder on its own: families, labels and values as Prometheus parses them."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from colima_ref.observability.metrics import Metrics
from colima_ref.ports.services import SERVICE_NAMES

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
BREAKER_COUNTERS = (
    "circuit_breaker_opened_total",
    "circuit_breaker_half_open_total",
    "circuit_breaker_closed_total",
    "circuit_breaker_failures_total",
)


def samples(metrics: Metrics) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(name="test app", version="9.9.9")


def test_every_breaker_family_shows_zero_for_each_service_from_the_start(metrics: Metrics) -> None:
    found = samples(metrics)

    for service in SERVICE_NAMES:
        for name in (*BREAKER_COUNTERS, "circuit_breaker_state"):
            assert found[(name, labels(service=service))] == 0, (name, service)


def test_cache_invalidations_show_an_unlabelled_zero_from_the_start(metrics: Metrics) -> None:
    assert samples(metrics)[("cache_invalidations_total", labels())] == 0

    metrics.cache_invalidated("cache:/examples/vault/*")

    found = samples(metrics)
    assert found[("cache_invalidations_total", labels(pattern="cache:/examples/vault/*"))] == 1
    # The starting series stays 0, so a sum over the family counts each invalidation once. The
    # exporter may now write it as pattern="", which Prometheus takes as no label: the same series.
    unlabelled = [
        value
        for (name, found_labels), value in found.items()
        if name == "cache_invalidations_total" and dict(found_labels).get("pattern", "") == ""
    ]
    assert unlabelled == [0]


@pytest.mark.parametrize(
    ("state", "counter", "gauge"),
    [
        ("open", "circuit_breaker_opened_total", 2),
        ("half_open", "circuit_breaker_half_open_total", 1),
        ("closed", "circuit_breaker_closed_total", 0),
    ],
)
def test_a_breaker_transition_counts_once_and_sets_the_state_gauge(
    metrics: Metrics, state: str, counter: str, gauge: int
) -> None:
    metrics.breaker_changed("postgres", state)  # type: ignore[arg-type]

    found = samples(metrics)
    assert found[(counter, labels(service="postgres"))] == 1
    assert found[("circuit_breaker_state", labels(service="postgres"))] == gauge
    assert found[(counter, labels(service="vault"))] == 0


def test_breaker_failures_count_per_service(metrics: Metrics) -> None:
    for _ in range(3):
        metrics.breaker_failure("redis")

    found = samples(metrics)
    assert found[("circuit_breaker_failures_total", labels(service="redis"))] == 3
    assert found[("circuit_breaker_failures_total", labels(service="mysql"))] == 0


def test_cache_and_rate_limit_counters_move_by_one_per_call(metrics: Metrics) -> None:
    secret = "/examples/vault/secret/{service_name}"
    metrics.cache_hit(secret)
    metrics.cache_hit(secret)
    metrics.cache_miss(secret)
    metrics.cache_invalidated("cache:*")
    metrics.rate_limit_exceeded("/health/")

    found = samples(metrics)
    assert found[("cache_hits_total", labels(endpoint=secret))] == 2
    assert found[("cache_misses_total", labels(endpoint=secret))] == 1
    assert found[("cache_invalidations_total", labels(pattern="cache:*"))] == 1
    assert found[("rate_limit_exceeded_total", labels(endpoint="/health/"))] == 1


def test_app_info_is_one_with_version_and_name(metrics: Metrics) -> None:
    assert samples(metrics)[("app_info", labels(version="9.9.9", name="test app"))] == 1


def test_dependency_calls_count_by_outcome_and_time_by_operation(metrics: Metrics) -> None:
    for outcome, seconds in (
        ("success", 0.01),
        ("rejected", 0.0),
        ("timeout", 5.0),
        ("error", 0.2),
    ):
        metrics.dependency_call("postgres", "query", outcome, seconds)

    found = samples(metrics)
    for outcome in ("success", "rejected", "timeout", "error"):
        key = labels(service="postgres", operation="query", outcome=outcome)
        assert found[("dependency_requests_total", key)] == 1, outcome
    timing = labels(service="postgres", operation="query")
    assert found[("dependency_request_duration_seconds_count", timing)] == 4
    assert found[("dependency_request_duration_seconds_sum", timing)] == pytest.approx(5.21)


def test_request_durations_use_second_buckets_from_5_ms_to_10_s(metrics: Metrics) -> None:
    route = metrics.http_route("GET", "/health/")
    route.started()
    route.finished(200, 0.003)

    bounds = [
        dict(key)["le"]
        for (name, key) in samples(metrics)
        if name == "http_request_duration_seconds_bucket"
    ]
    assert bounds[0] == "0.005"
    assert bounds[-2:] == ["10.0", "+Inf"]


def test_a_duration_on_a_bound_counts_in_that_bucket_and_buckets_are_cumulative(
    metrics: Metrics,
) -> None:
    route = metrics.http_route("GET", "/health/")
    for seconds in (0.005, 0.007, 20.0):
        route.started()
        route.finished(200, seconds)

    found = samples(metrics)

    def bucket(le: str) -> float:
        return found[
            (
                "http_request_duration_seconds_bucket",
                labels(method="GET", endpoint="/health/", le=le),
            )
        ]

    assert [bucket("0.005"), bucket("0.01"), bucket("10.0"), bucket("+Inf")] == [1, 2, 2, 3]
    timing = labels(method="GET", endpoint="/health/")
    assert found[("http_request_duration_seconds_count", timing)] == 3
    assert found[("http_request_duration_seconds_sum", timing)] == pytest.approx(20.012)


def test_no_duration_family_is_exported_before_anything_was_timed(metrics: Metrics) -> None:
    text = metrics.render().decode()

    assert "http_request_duration_seconds" not in text
    assert "dependency_request_duration_seconds" not in text


def test_no_target_info_and_no_otel_scope_labels_are_exported(metrics: Metrics) -> None:
    metrics.http_route("GET", "/").started()
    text = metrics.render().decode()

    assert "target_info" not in text
    assert "otel_scope" not in text


def test_two_recorders_in_one_process_share_nothing(metrics: Metrics) -> None:
    """Like two uvicorn workers: each has its own counts, and the global registry has none."""
    other = Metrics(name="test app", version="9.9.9")
    metrics.cache_hit("/a")

    assert samples(metrics)[("cache_hits_total", labels(endpoint="/a"))] == 1
    assert ("cache_hits_total", labels(endpoint="/a")) not in samples(other)
    assert b"cache_hits" not in generate_latest(REGISTRY)


def test_dependency_durations_use_second_buckets_from_1_ms_to_10_s(metrics: Metrics) -> None:
    metrics.dependency_call("redis", "get", "success", 0.0004)

    found = samples(metrics)
    buckets = "dependency_request_duration_seconds_bucket"
    bounds = [dict(key)["le"] for (name, key) in found if name == buckets]
    assert bounds[:3] == ["0.001", "0.0025", "0.005"]
    assert bounds[-2:] == ["10.0", "+Inf"]
    first = labels(service="redis", operation="get", le="0.001")
    assert found[(buckets, first)] == 1
