"""Rate limits per client IP and route template, on the whole app and on the middleware alone."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import limits
import pytest
from limits.aio.storage import MemoryStorage
from limits.errors import StorageError
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from colima_ref.http.app import create_app
from colima_ref.http.client_ip import client_ip
from colima_ref.http.middleware.rate_limit import PolicyTable, RateLimitMiddleware, RateLimits
from colima_ref.ports.services import Services
from colima_ref.settings import RateLimitSettings, Settings, SettingsError

MakeClient = Callable[..., TestClient]
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
ErrorBody = Callable[[httpx2.Response, int, str], dict[str, Any]]


@pytest.fixture
def client_at(services: Services) -> Iterator[Callable[..., TestClient]]:
    """A client whose socket peer is ``peer``, on an app built from ``env``."""
    clients: list[TestClient] = []

    def make(peer: str, env: dict[str, str]) -> TestClient:
        @asynccontextmanager
        async def open_services() -> AsyncIterator[Services]:
            yield services

        app = create_app(open_services, Settings.from_env(env).http)
        client = TestClient(app, client=(peer, 40000)).__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _scope(peer: str, forwarded: list[str]) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return {"type": "http", "client": (peer, 1234), "headers": headers}


TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


def clear_of_a_window_boundary() -> None:
    """The in-memory sliding window counter's windows start on the minute: a boundary inside
    a test weighs the hits before it down, and lets one more through."""
    left = 60 - time.time() % 60
    if left < 2:
        time.sleep(left)


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window-counter"])
def test_101_requests_in_a_minute_to_a_general_route_give_exactly_one_429(
    make_client: MakeClient, services: Services, error_body: ErrorBody, strategy: str
) -> None:
    client = make_client(services, {"RATE_LIMIT_STRATEGY": strategy})
    clear_of_a_window_boundary()

    responses = [client.get("/") for _ in range(101)]

    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) == 1
    assert responses[-1].status_code == 429
    assert all(r.status_code == 200 for r in responses[:100])
    refused = limited[0]
    error_body(refused, 429, "RateLimitError")
    assert 0 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "100"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert refused.headers["RateLimit-Policy"] == '"default";q=100;w=60'
    assert refused.headers["RateLimit"].startswith('"default";r=0;t=')


def test_a_successful_response_carries_the_rate_limit_headers(
    make_client: MakeClient, services: Services
) -> None:
    client = make_client(services, {"RATE_LIMIT_STRATEGY": "moving-window"})

    response = client.get("/")

    assert response.status_code == 200
    assert all(name in response.headers for name in RATE_HEADERS)
    assert response.headers["X-RateLimit-Remaining"] == "99"
    assert response.headers["RateLimit"] == '"default";r=99;t=60'
    assert "Retry-After" not in response.headers


def test_the_sliding_window_counter_resets_a_first_hit_when_its_minute_ends(
    make_client: MakeClient, services: Services
) -> None:
    client = make_client(services, {"RATE_LIMIT_STRATEGY": "sliding-window-counter"})
    clear_of_a_window_boundary()

    response = client.get("/")

    minute_ends = (int(time.time()) // 60 + 1) * 60
    assert response.headers["X-RateLimit-Remaining"] == "99"
    # Rounded up from a float that can land a hair past the minute.
    assert int(response.headers["X-RateLimit-Reset"]) in (minute_ends, minute_ends + 1)
    seconds_left = int(response.headers["RateLimit"].removeprefix('"default";r=99;t='))
    assert abs(seconds_left - (minute_ends - time.time())) <= 1


def test_health_routes_get_the_health_limit(client: TestClient) -> None:
    response = client.get("/health/")

    assert response.headers["X-RateLimit-Limit"] == "200"
    assert response.headers["RateLimit-Policy"] == '"health";q=200;w=60'


def test_the_policy_table_gives_metrics_and_health_their_own_limits() -> None:
    table = PolicyTable.from_settings(RateLimitSettings())

    assert table.for_route("/metrics").item == limits.parse("1000/minute")
    assert table.for_route("/health/all").item == limits.parse("200/minute")
    assert table.for_route("/examples/cache/{key}").item == limits.parse("100/minute")


def test_each_route_has_its_own_counter_shared_by_all_its_paths(
    make_client: MakeClient, services: Services
) -> None:
    client = make_client(services, {"RATE_LIMIT_DEFAULT": "2/minute"})

    assert client.get("/examples/vault/secret/postgres").status_code == 200
    assert client.get("/examples/vault/secret/mysql").status_code == 200
    assert client.get("/examples/vault/secret/mongodb").status_code == 429
    assert client.get("/").status_code == 200


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_change_the_key(
    client_at: Callable[..., TestClient],
) -> None:
    client = client_at("203.0.113.7", {"RATE_LIMIT_DEFAULT": "2/minute"})

    statuses = [
        client.get("/", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
        for n in range(3)
    ]

    assert statuses == [200, 200, 429]


def test_a_trusted_proxy_gives_each_forwarded_client_its_own_counter(
    client_at: Callable[..., TestClient],
) -> None:
    client = client_at(
        "10.1.2.3", {"RATE_LIMIT_DEFAULT": "2/minute", "TRUSTED_PROXIES": "10.0.0.0/8"}
    )

    statuses = [
        client.get("/", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
        for n in range(3)
    ]

    assert statuses == [200, 200, 200]


def test_disabled_rate_limiting_adds_no_headers_and_never_refuses(
    make_client: MakeClient, services: Services
) -> None:
    client = make_client(services, {"RATE_LIMIT_ENABLED": "false", "RATE_LIMIT_DEFAULT": "1/hour"})

    responses = [client.get("/") for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in responses[-1].headers


def test_the_client_is_the_socket_peer_when_it_is_not_a_trusted_proxy() -> None:
    assert client_ip(_scope("192.0.2.1", ["198.51.100.9"]), TRUSTED) == "192.0.2.1"


def test_forwarded_for_is_walked_from_the_right_to_the_first_untrusted_hop() -> None:
    scope = _scope("10.0.0.1", ["6.6.6.6, 198.51.100.9", "10.0.0.2"])

    assert client_ip(scope, TRUSTED) == "198.51.100.9"


def test_a_forwarded_chain_of_only_trusted_proxies_names_its_leftmost_hop() -> None:
    assert client_ip(_scope("10.0.0.1", ["10.0.0.3, 10.0.0.2"]), TRUSTED) == "10.0.0.3"


def test_a_garbage_hop_stops_the_walk_at_the_proxy_that_reported_it() -> None:
    scope = _scope("::1", ["198.51.100.9, not-an-ip, 10.0.0.2"])

    assert client_ip(scope, TRUSTED) == "10.0.0.2"


def test_without_a_forwarded_header_a_trusted_peer_is_the_client() -> None:
    assert client_ip(_scope("10.0.0.1", []), TRUSTED) == "10.0.0.1"


class DownStorage(MemoryStorage):
    """limits' memory storage behaving as a Redis that cannot be reached, whatever the strategy."""

    async def incr(self, *args: Any, **kwargs: Any) -> int:
        raise StorageError(ConnectionError("connection refused"))

    async def acquire_entry(self, *args: Any, **kwargs: Any) -> bool:
        raise StorageError(ConnectionError("connection refused"))

    async def acquire_sliding_window_entry(self, *args: Any, **kwargs: Any) -> bool:
        raise StorageError(ConnectionError("connection refused"))


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.mark.parametrize("strategy", ["sliding-window-counter", "moving-window", "fixed-window"])
def test_a_storage_outage_fails_open_logs_once_and_counts_every_failure(strategy: str) -> None:
    failures: list[None] = []
    rate_limits = RateLimits(
        RateLimitSettings(default="1/minute", strategy=strategy),
        storage=DownStorage(),
        on_storage_error=lambda: failures.append(None),
    )
    limited = [Middleware(RateLimitMiddleware, rate_limits=rate_limits)]
    app = Starlette(routes=[Route("/", _ok, middleware=limited)])

    with TestClient(app) as client, capture_logs() as logs:
        statuses = [client.get("/").status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    assert len(failures) == 3
    warnings = [line for line in logs if "storage unavailable" in line["event"]]
    assert len(warnings) == 1
    assert warnings[0]["error_type"] == "ConnectionError"


def test_every_429_is_reported_with_its_route_template() -> None:
    limited: list[str] = []
    rate_limits = RateLimits(RateLimitSettings(default="1/minute"), on_limited=limited.append)
    middleware = [Middleware(RateLimitMiddleware, rate_limits=rate_limits)]
    app = Starlette(routes=[Route("/items/{name}", _ok, middleware=middleware)])

    with TestClient(app) as client:
        statuses = [client.get(f"/items/{n}").status_code for n in range(3)]

    assert statuses == [200, 429, 429]
    assert limited == ["/items/{name}", "/items/{name}"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RATE_LIMIT_DEFAULT", "lots"),
        ("RATE_LIMIT_HEALTH", "0/minute"),
        ("RATE_LIMIT_METRICS", "-5/second"),
        ("RATE_LIMIT_STRATEGY", "token-bucket"),
        ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal"),
        ("RATE_LIMIT_ENABLED", "perhaps"),
    ],
)
def test_a_malformed_rate_limit_variable_is_a_one_line_settings_error(
    variable: str, value: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})

    assert raised.value.variable == variable
    assert "\n" not in str(raised.value)


def test_a_malformed_storage_url_is_reported_without_echoing_it() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"RATE_LIMIT_STORAGE_URL": "mysql://user:hunter2@db/0"})

    assert raised.value.variable == "RATE_LIMIT_STORAGE_URL"
    assert "hunter2" not in str(raised.value)


def test_rate_limit_variables_are_read_into_settings() -> None:
    settings = Settings.from_env(
        {
            "RATE_LIMIT_DEFAULT": "5 per second",
            "RATE_LIMIT_STORAGE_URL": "redis+cluster://127.0.0.1:7001,127.0.0.1:7002",
            "RATE_LIMIT_STRATEGY": "Fixed-Window",
            "TRUSTED_PROXIES": "10.0.0.0/8, ::1",
        }
    )

    assert settings.rate_limit.default == "5 per second"
    assert settings.rate_limit.storage_url == "redis+cluster://127.0.0.1:7001,127.0.0.1:7002"
    assert settings.rate_limit.strategy == "fixed-window"
    assert settings.trusted_proxies == (TRUSTED[0], ipaddress.ip_network("::1"))


def _sample(client: TestClient, name: str, labels: dict[str, str]) -> float:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_a_429_is_counted_in_rate_limit_exceeded_total_by_route(
    make_client: MakeClient, services: Services
) -> None:
    client = make_client(services, {"RATE_LIMIT_DEFAULT": "1/minute"})
    labels = {"endpoint": "/examples/vault/secret/{service_name}"}

    client.get("/examples/vault/secret/postgres")
    client.get("/examples/vault/secret/mysql")
    client.get("/examples/vault/secret/redis-1")

    assert _sample(client, "rate_limit_exceeded_total", labels) == 2


def test_a_path_no_route_has_or_a_method_it_does_not_take_costs_no_quota(
    make_client: MakeClient, services: Services
) -> None:
    client = make_client(services, {"RATE_LIMIT_DEFAULT": "1/minute"})

    misses = [client.get(f"/no/such/route/{n}") for n in range(3)]
    wrong = [client.put("/examples/cache/k1") for _ in range(3)]

    assert [r.status_code for r in misses + wrong] == [404] * 3 + [405] * 3
    assert "X-RateLimit-Limit" not in misses[0].headers
    assert client.get("/").status_code == 200
    assert client.get("/examples/cache/k1").status_code == 200


def test_a_429_is_logged_and_counted_under_its_route_with_its_request_id(
    make_client: MakeClient, services: Services
) -> None:
    client = make_client(services, {"RATE_LIMIT_DEFAULT": "1/minute"})
    client.get("/examples/vault/secret/postgres")

    with capture_logs() as entries:
        refused = client.get("/examples/vault/secret/mysql", headers={"X-Request-ID": "over-1"})

    template = "/examples/vault/secret/{service_name}"
    [line] = [entry for entry in entries if entry["event"] == "HTTP request completed"]
    assert (refused.status_code, refused.headers["X-Request-ID"]) == (429, "over-1")
    assert (line["path"], line["status_code"], line["request_id"]) == (template, 429, "over-1")
    labels = {"method": "GET", "endpoint": template, "status": "429"}
    assert _sample(client, "http_requests_total", labels) == 1
