"""CORS in both modes: the whitelist with credentials, and any origin without them in DEBUG."""

from __future__ import annotations

from typing import Any

import attrs

from colima_ref.domain.models import QueryResult
from colima_ref.ports.services import Services

PREFLIGHT = {
    "Origin": "http://localhost:3000",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


def test_a_whitelisted_origin_gets_credentials_and_the_exposed_headers(client: Any) -> None:
    response = client.get("/", headers={"Origin": "http://localhost:3000"})

    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    exposed = {
        h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert {"x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "retry-after"} <= exposed


def test_an_origin_off_the_whitelist_gets_no_cors_headers(client: Any) -> None:
    response = client.get("/", headers={"Origin": "https://evil.example"})

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_preflight_from_a_whitelisted_origin_is_allowed_for_ten_minutes(client: Any) -> None:
    response = client.options("/examples/messaging/publish", headers=PREFLIGHT)

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


def test_a_preflight_from_an_unknown_origin_is_refused_with_the_uniform_body(
    client: Any, error_body: Any
) -> None:
    response = client.options(
        "/examples/messaging/publish", headers={**PREFLIGHT, "Origin": "https://evil.example"}
    )

    body = error_body(response, 400, "BadRequest")
    assert body["message"] == "Disallowed CORS origin"
    assert "Access-Control-Allow-Origin" not in response.headers


def test_configured_origins_replace_the_default_whitelist(
    make_client: Any, services: Services
) -> None:
    client = make_client(services, {"CORS_ORIGINS": "https://app.example"})

    allowed = client.get("/", headers={"Origin": "https://app.example"})
    default = client.get("/", headers={"Origin": "http://localhost:3000"})

    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Access-Control-Allow-Origin" not in default.headers


def test_debug_allows_any_origin_without_credentials(make_client: Any, services: Services) -> None:
    client = make_client(services, {"DEBUG": "true"})

    response = client.get("/", headers={"Origin": "https://anywhere.example"})
    preflight = client.options(
        "/examples/messaging/publish", headers={**PREFLIGHT, "Origin": "https://anywhere.example"}
    )

    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"


def test_an_error_response_carries_cors_headers_too(make_client: Any, services: Services) -> None:
    client = make_client(services, {"RATE_LIMIT_DEFAULT": "1/minute"})
    client.get("/", headers={"Origin": "http://localhost:3000"})

    refused = client.get("/", headers={"Origin": "http://localhost:3000"})

    assert refused.status_code == 429
    assert refused.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


class BrokenDatabase:
    async def current_timestamp(self) -> QueryResult:
        raise RuntimeError("boom")


def test_a_500_carries_cors_headers_so_a_browser_can_read_it(
    make_client: Any, services: Services
) -> None:
    client = make_client(attrs.evolve(services, postgres=BrokenDatabase()))

    response = client.get(
        "/examples/database/postgres/query", headers={"Origin": "http://localhost:3000"}
    )

    assert response.status_code == 500
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


def test_an_answer_without_origin_still_varies_by_origin(client: Any) -> None:
    # A shared cache must not hand this answer to a CORS request, nor the reverse.
    plain = client.get("/")
    cors = client.get("/", headers={"Origin": "http://localhost:3000"})

    assert plain.headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Origin" not in plain.headers
    assert "Origin" in cors.headers["Vary"]


def test_in_debug_an_answer_without_origin_varies_by_origin_too(
    make_client: Any, services: Services
) -> None:
    client = make_client(services, {"DEBUG": "true"})

    assert client.get("/").headers["Vary"] == "Origin"
