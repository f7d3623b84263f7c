"""GET /metrics on the running app: families, labels and how far they move after known requests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from colima_ref.adapters import memory
from colima_ref.domain.models import QueryResult
from colima_ref.http.app import create_app
from colima_ref.observability.metrics import Metrics
from colima_ref.ports.services import Services
from colima_ref.settings import Settings

MakeClient = Callable[..., TestClient]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
CACHE = "/examples/cache/{key}"


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def requests_to(found: Samples, endpoint: str, status: str, method: str = "GET") -> float:
    key = labels(method=method, endpoint=endpoint, status=status)
    return found.get(("http_requests_total", key), 0)


def serving(services: Services) -> Callable[[], Any]:
    @asynccontextmanager
    async def open_services() -> AsyncIterator[Services]:
        yield services

    return open_services


class BrokenDatabase:
    async def current_timestamp(self) -> QueryResult:
        raise RuntimeError("boom")


@attrs.define
class SpyingDatabase:
    """A SqlDatabase that scrapes the metrics while its request is in progress."""

    metrics: Metrics
    seen: list[str] = attrs.field(factory=list)

    async def current_timestamp(self) -> QueryResult:
        self.seen.append(self.metrics.render().decode())
        return QueryResult(query="SELECT 1", result="1")


def test_metrics_answer_prometheus_text_format(client: TestClient) -> None:
    response = client.get("/metrics")

    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert list(text_string_to_metric_families(response.text))


def test_a_fresh_app_shows_cache_invalidations_at_zero(client: TestClient) -> None:
    response = client.get("/metrics")

    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    invalidations = families["cache_invalidations"]
    assert invalidations.type == "counter"
    assert [(s.name, s.labels, s.value) for s in invalidations.samples] == [
        ("cache_invalidations_total", {}, 0)
    ]


def test_requests_are_counted_and_timed_per_method_route_template_and_status(
    client: TestClient,
) -> None:
    for _ in range(3):
        client.get("/health/")
    client.post("/examples/cache/k1?value=v")
    client.get("/examples/cache/k1")
    client.get("/examples/cache/k2")

    found = scrape(client)

    assert requests_to(found, "/health/", "200") == 3
    assert requests_to(found, CACHE, "200") == 2
    assert requests_to(found, CACHE, "200", method="POST") == 1
    timing = labels(method="GET", endpoint=CACHE)
    assert found[("http_request_duration_seconds_count", timing)] == 2
    assert found[("http_request_duration_seconds_bucket", timing | {("le", "+Inf")})] == 2
    assert found[("http_requests_in_progress", timing)] == 0


def test_errors_are_counted_by_error_type_and_status(make_client: MakeClient) -> None:
    services = memory.services()
    client = make_client(attrs.evolve(services, postgres=BrokenDatabase()))
    services.secrets.failing = True  # type: ignore[attr-defined]

    client.get("/no/such/route")
    client.get("/examples/vault/secret/postgres")
    client.get("/examples/vault/secret/postgres")
    client.get("/examples/database/postgres/query")
    client.put("/examples/cache/k1")

    found = scrape(client)
    errors = {
        dict(key)["error_type"]: (dict(key)["status_code"], value)
        for (name, key), value in found.items()
        if name == "http_errors_total"
    }
    assert errors == {
        "ResourceNotFoundError": ("404", 1),
        "VaultUnavailableError": ("503", 2),
        "RuntimeError": ("500", 1),
        "MethodNotAllowed": ("405", 1),
    }
    assert requests_to(found, "/examples/database/postgres/query", "500") == 1


def test_unknown_routes_share_one_endpoint_label(client: TestClient) -> None:
    client.get("/no/such/route/1")
    client.get("/another/unknown")

    found = scrape(client)

    assert requests_to(found, "<unmatched>", "404") == 2
    endpoints = {dict(key).get("endpoint") for name, key in found if name == "http_requests_total"}
    assert endpoints == {"<unmatched>"}


def test_a_thousand_distinct_cache_keys_add_no_series(
    make_client: MakeClient, services: Services
) -> None:
    client = make_client(services, {"RATE_LIMIT_ENABLED": "false"})
    client.get("/examples/cache/key-0")
    client.post("/examples/cache/key-0?value=v")
    client.get("/metrics")
    before = scrape(client)

    for index in range(1, 1000):
        client.post(f"/examples/cache/key-{index}?value=v")
        client.get(f"/examples/cache/key-{index}")
    after = scrape(client)

    assert set(after) == set(before)
    assert requests_to(after, CACHE, "200") - requests_to(before, CACHE, "200") == 999


def test_an_invented_method_is_counted_as_other(client: TestClient) -> None:
    client.request("BREW", "/health/")

    assert requests_to(scrape(client), "/health/", "405", method="OTHER") == 1


def test_a_request_is_in_progress_while_it_runs_and_not_after() -> None:
    metrics = Metrics(name="t", version="0")
    spy = SpyingDatabase(metrics)
    services = attrs.evolve(memory.services(), postgres=spy)
    app = create_app(serving(services), Settings().http, metrics=metrics)
    query = "/examples/database/postgres/query"

    with TestClient(app) as client:
        client.get(query)
        found = scrape(client)

    [during] = spy.seen
    assert f'http_requests_in_progress{{endpoint="{query}",method="GET"}} 1.0' in during
    assert found[("http_requests_in_progress", labels(method="GET", endpoint=query))] == 0


def test_two_apps_in_one_process_keep_separate_counts(make_client: MakeClient) -> None:
    """Each app, like each uvicorn worker process, reports its own requests only."""
    first = make_client(memory.services())
    second = make_client(memory.services())
    first.get("/health/")
    first.get("/health/")

    assert requests_to(scrape(first), "/health/", "200") == 2
    assert requests_to(scrape(second), "/health/", "200") == 0


def test_switched_off_request_metrics_still_serve_the_other_families(
    make_client: MakeClient, services: Services
) -> None:
    client = make_client(services, {"METRICS_ENABLED": "false"})
    client.get("/health/")

    found = scrape(client)

    assert not [name for name, _ in found if name.startswith("http_")]
    assert found[("circuit_breaker_state", labels(service="vault"))] == 0


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/"),
        ("GET", "/health/"),
        ("GET", "/health/vault"),
        ("GET", "/examples/vault/secret/postgres"),
        ("GET", "/examples/vault/secret/postgres/user"),
        ("DELETE", "/examples/cache/some-key"),
        ("PUT", "/examples/cache/some-key"),
        ("GET", "/examples/messaging/queue/orders/info"),
        ("GET", "/redis/nodes/redis-1/info"),
        ("POST", "/health/all"),
        ("GET", "/health"),
        ("GET", "/docs/static/missing.js"),
        ("GET", "/metrics/"),
    ],
)
def test_the_endpoint_label_is_the_template_the_log_line_names(
    client: TestClient, method: str, url: str
) -> None:
    """The log line and the metrics name the route the router picked, or none alike."""
    before = scrape(client)
    with capture_logs() as entries:
        client.request(method, url, follow_redirects=False)
    after = scrape(client)

    [line] = [entry for entry in entries if entry["event"] == "HTTP request completed"]
    moved: list[dict[str, Any]] = [
        dict(key)
        for (name, key), value in after.items()
        if name == "http_requests_total"
        and value != before.get((name, key), 0)
        and dict(key)["endpoint"] != "/metrics"
    ]
    assert moved == [
        {"method": method, "endpoint": line["path"], "status": str(line["status_code"])}
    ]


def dependency_calls(found: Samples, service: str, operation: str, outcome: str) -> float:
    key = labels(service=service, operation=operation, outcome=outcome)
    return found.get(("dependency_requests_total", key), 0)


def test_every_backend_call_is_counted_and_timed_per_service_operation_and_outcome() -> None:
    metrics = Metrics(name="t", version="0")
    services = memory.services(fail_max=2, recorder=metrics)
    app = create_app(serving(services), Settings().http, metrics=metrics)
    query = "/examples/database/postgres/query"

    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(3):
            client.get("/examples/cache/k1")
        client.get(query)
        services.postgres.failing = True  # type: ignore[attr-defined]
        statuses = [client.get(query).status_code for _ in range(3)]
        found = scrape(client)

    assert statuses == [503, 503, 503]
    assert dependency_calls(found, "redis", "get", "success") == 3
    timed = labels(service="redis", operation="get")
    assert found[("dependency_request_duration_seconds_count", timed)] == 3
    assert dependency_calls(found, "postgres", "current_timestamp", "success") == 1
    # The second outage opens the circuit (fail_max=2): it reached PostgreSQL, so it is an
    # error; the third call never left the process.
    assert dependency_calls(found, "postgres", "current_timestamp", "error") == 2
    assert dependency_calls(found, "postgres", "current_timestamp", "rejected") == 1
    timed = labels(service="postgres", operation="current_timestamp")
    assert found[("dependency_request_duration_seconds_count", timed)] == 4


def test_health_probes_are_not_counted_as_dependency_calls() -> None:
    metrics = Metrics(name="t", version="0")
    app = create_app(serving(memory.services(recorder=metrics)), Settings().http, metrics=metrics)

    with TestClient(app) as client:
        client.get("/health/all")
        found = scrape(client)

    # /health/all probes every service and never asks the shared cache: nothing is recorded.
    called = {dict(key)["service"] for (name, key) in found if name == "dependency_requests_total"}
    assert called == set()
