"""The canonical line as written (JSON through configure_logging), and the canary secret."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import structlog
from starlette.testclient import TestClient

from colima_ref.adapters import memory
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.domain.models import QueryResult
from colima_ref.http.app import create_app
from colima_ref.logs import configure_logging
from colima_ref.observability.redaction import hiding_secrets_of
from colima_ref.ports.services import Services
from colima_ref.settings import Settings
from log_capture import lines, log_stream, written

CANONICAL = "HTTP request completed"
CACHE_TEMPLATE = "/examples/cache/{key}"
CANONICAL_FIELDS = {
    "asctime",
    "levelname",
    "name",
    "message",
    "request_id",
    "method",
    "path",
    "status_code",
    "duration_ms",
    "client_ip",
}


class BrokenDatabase:
    async def current_timestamp(self) -> QueryResult:
        raise RuntimeError("boom")


@pytest.fixture
def stream() -> Iterator[io.TextIOWrapper]:
    with log_stream() as captured:
        yield captured


def start(services: Services, env: Mapping[str, str] | None = None) -> TestClient:
    @asynccontextmanager
    async def open_services() -> AsyncIterator[Services]:
        yield services

    app = create_app(open_services, Settings.from_env(env or {}).http)
    return TestClient(app, raise_server_exceptions=False, client=("10.0.0.7", 50000))


def canonical(stream: io.TextIOWrapper) -> list[dict[str, Any]]:
    return [line for line in lines(stream) if line["message"] == CANONICAL]


def test_each_request_writes_one_json_line_with_every_canonical_field(
    stream: io.TextIOWrapper,
) -> None:
    configure_logging("INFO", stream=stream)
    with start(memory.services()) as client:
        response = client.get("/examples/cache/user:1", headers={"X-Request-ID": "line-1"})

    [line] = canonical(stream)
    assert set(line) == CANONICAL_FIELDS
    assert line["levelname"] == "INFO"
    assert line["name"] == "colima_ref.http"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", line["asctime"])
    assert line["request_id"] == response.headers["X-Request-ID"] == "line-1"
    assert (line["method"], line["path"], line["status_code"]) == ("GET", CACHE_TEMPLATE, 200)
    assert line["client_ip"] == "10.0.0.7"
    assert isinstance(line["duration_ms"], float)


def test_the_client_ip_is_taken_from_a_trusted_proxy(stream: io.TextIOWrapper) -> None:
    configure_logging("INFO", stream=stream)
    env = {"TRUSTED_PROXIES": "10.0.0.0/8"}
    with start(memory.services(), env) as client:
        client.get("/health/", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.8"})

    [line] = canonical(stream)
    assert line["client_ip"] == "203.0.113.9"


def test_a_handled_error_adds_its_domain_error_type(stream: io.TextIOWrapper) -> None:
    configure_logging("INFO", stream=stream)
    services = memory.services()
    services.secrets.failing = True  # type: ignore[attr-defined]
    with start(services) as client:
        client.get("/examples/vault/secret/postgres")

    [line] = canonical(stream)
    assert (line["status_code"], line["error_type"]) == (503, "VaultUnavailableError")
    assert "exception" not in line


@pytest.mark.parametrize(("debug", "traceback"), [("false", False), ("true", True)])
def test_an_unhandled_error_adds_its_type_and_only_under_debug_its_traceback(
    stream: io.TextIOWrapper, debug: str, traceback: bool
) -> None:
    configure_logging("INFO", stream=stream)
    services = attrs.evolve(memory.services(), postgres=BrokenDatabase())
    with start(services, {"DEBUG": debug}) as client:
        client.get("/examples/database/postgres/query")

    [line] = canonical(stream)
    assert (line["levelname"], line["status_code"], line["error_type"]) == (
        "ERROR",
        500,
        "RuntimeError",
    )
    assert ("exception" in line) is traceback
    if traceback:
        assert "RuntimeError: boom" in line["exception"]


def test_log_level_warning_keeps_only_the_lines_of_failed_requests(
    stream: io.TextIOWrapper,
) -> None:
    configure_logging("WARNING", stream=stream)
    services = attrs.evolve(memory.services(), postgres=BrokenDatabase())
    with start(services) as client:
        client.get("/health/")
        client.get("/examples/database/postgres/query")

    assert [line["status_code"] for line in canonical(stream)] == [500]


def test_log_requests_false_writes_no_canonical_line(stream: io.TextIOWrapper) -> None:
    configure_logging("INFO", stream=stream)
    with start(memory.services(), {"LOG_REQUESTS": "false"}) as client:
        response = client.get("/health/")

    assert response.headers["X-Request-ID"]
    assert canonical(stream) == []


def test_a_planted_canary_secret_reaches_no_log_response_or_metric(
    stream: io.TextIOWrapper,
) -> None:
    """The canary is loaded as the live backend loads a password: through a CredentialSource,
    which the composition root hands to the log redaction."""
    canary = f"canary-{uuid.uuid4().hex}"
    configure_logging("DEBUG", stream=stream)
    services = memory.services()
    services.secrets.put(  # type: ignore[attr-defined]
        "postgres", {"user": "app", "password": canary, "host": "db", "port": "5432"}
    )
    credentials = CredentialSource(services.secrets)
    asyncio.run(credentials.get("postgres"))
    careless = structlog.get_logger("careless.adapter")
    bodies: list[str] = []

    with hiding_secrets_of(credentials), start(services) as client:
        for url in (
            "/examples/vault/secret/postgres",
            "/examples/vault/secret/postgres/password",
            "/examples/vault/secret/postgres/user",
            "/health/vault",
        ):
            response = client.get(url)
            bodies.append(response.text + str(response.headers))
        careless.info(f"connecting with {canary}", dsn=f"postgresql://app:{canary}@db/app")
        careless.info("login", password=canary, note=canary)
        logging.getLogger("psycopg").warning("authentication failed for %s", canary)
        try:
            raise ConnectionError(f"refused: {canary}")
        except ConnectionError:
            careless.exception("connect failed")
        metrics = client.get("/metrics").text

    logged = written(stream)
    assert "connecting with" in logged
    assert "authentication failed" in logged
    assert "refused: ***" in logged
    assert canary not in logged
    assert not [body for body in bodies if canary in body]
    assert canary not in metrics
