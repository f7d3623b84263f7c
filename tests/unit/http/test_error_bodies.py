from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from colima_ref.adapters import memory
from colima_ref.domain.errors import CircuitBreakerError
from colima_ref.domain.models import QueryResult
from colima_ref.http.errors import error_name, exception_handlers
from colima_ref.observability.redaction import hiding_secrets_of
from colima_ref.ports.services import Services

ErrorBody = Callable[[httpx2.Response, int, str], dict[str, Any]]
MakeClient = Callable[..., TestClient]


class BrokenDatabase:
    """A SqlDatabase with a bug in it: what a 500 is for."""

    async def current_timestamp(self) -> QueryResult:
        raise RuntimeError("boom in the database adapter")


class OpenBreakerDatabase:
    """A SqlDatabase whose circuit breaker is open for another 42 seconds."""

    async def current_timestamp(self) -> QueryResult:
        raise CircuitBreakerError(service="postgres", retry_after=42)


def test_an_unknown_route_is_404_with_the_uniform_body(
    client: TestClient, error_body: ErrorBody
) -> None:
    body = error_body(client.get("/no/such/route"), 404, "ResourceNotFoundError")

    assert body["message"]
    assert body["details"] == {}


def test_a_wrong_method_is_405_with_the_uniform_body_and_allow_header(
    client: TestClient, error_body: ErrorBody
) -> None:
    response = client.get("/examples/messaging/publish")

    error_body(response, 405, "MethodNotAllowed")
    assert response.headers["Allow"] == "POST"


def test_a_bug_is_a_500_with_the_uniform_body_and_no_traceback(
    make_client: MakeClient, error_body: ErrorBody
) -> None:
    client = make_client(attrs.evolve(memory.services(), postgres=BrokenDatabase()))

    response = client.get("/examples/database/postgres/query")

    body = error_body(response, 500, "InternalServerError")
    assert body["details"] == {}
    assert "boom" not in response.text


def test_a_bug_in_debug_mode_shows_the_traceback_in_details(
    make_client: MakeClient, error_body: ErrorBody
) -> None:
    services = attrs.evolve(memory.services(), postgres=BrokenDatabase())
    client = make_client(services, {"DEBUG": "true"})

    response = client.get("/examples/database/postgres/query")

    traceback = error_body(response, 500, "InternalServerError")["details"]["traceback"]
    assert "RuntimeError: boom in the database adapter" in traceback


class LeakyDatabase:
    """A SqlDatabase whose bug quotes the password it loaded in its exception text."""

    password = "canary-pw-7c1e9d"

    def secret_values(self) -> frozenset[str]:
        return frozenset({self.password})

    async def current_timestamp(self) -> QueryResult:
        raise RuntimeError(f"connect failed for postgresql://app:{self.password}@db/app")


def test_a_debug_traceback_hides_a_loaded_secret_quoted_by_the_exception(
    make_client: MakeClient, error_body: ErrorBody
) -> None:
    leaky = LeakyDatabase()
    with hiding_secrets_of(leaky):
        services = attrs.evolve(memory.services(), postgres=leaky)
        client = make_client(services, {"DEBUG": "true"})

        response = client.get("/examples/database/postgres/query")

    traceback = error_body(response, 500, "InternalServerError")["details"]["traceback"]
    assert "postgresql://app:***@db/app" in traceback
    assert LeakyDatabase.password not in response.text


def test_an_open_breaker_is_503_with_retry_after(
    make_client: MakeClient, error_body: ErrorBody
) -> None:
    client = make_client(attrs.evolve(memory.services(), postgres=OpenBreakerDatabase()))

    response = client.get("/examples/database/postgres/query")

    body = error_body(response, 503, "CircuitBreakerError")
    assert body["details"] == {"service": "postgres"}
    assert response.headers["Retry-After"] == "42"


def test_an_unavailable_service_without_a_retry_hint_sends_no_retry_after(
    client: TestClient, services: Services, error_body: ErrorBody
) -> None:
    services.postgres.failing = True  # type: ignore[attr-defined]

    response = client.get("/examples/database/postgres/query")

    error_body(response, 503, "DatabaseConnectionError")
    assert "Retry-After" not in response.headers


@pytest.mark.parametrize(
    ("status_code", "error"),
    [
        (404, "ResourceNotFoundError"),
        (429, "RateLimitError"),
        (400, "BadRequest"),
        (599, "HTTPError"),
    ],
    ids=["domain-name", "rate-limit", "status-name", "unknown-status"],
)
def test_a_bare_status_code_gets_an_error_name(status_code: int, error: str) -> None:
    assert error_name(status_code) == error


def test_an_http_error_raised_by_a_route_keeps_its_status_message_and_headers(
    error_body: ErrorBody,
) -> None:
    async def conflict(_request: Request) -> Response:
        raise HTTPException(409, "already there", headers={"X-Hint": "retry"})

    handlers = exception_handlers(debug=False)
    app = Starlette(routes=[Route("/thing", conflict)], exception_handlers=handlers)
    with TestClient(app) as client:
        response = client.get("/thing")

    body: dict[str, Any] = response.json()
    assert (response.status_code, body["error"], body["message"]) == (
        409,
        "Conflict",
        "already there",
    )
    assert response.headers["X-Hint"] == "retry"
    assert body["request_id"] is None  # no request-context middleware in this bare app
