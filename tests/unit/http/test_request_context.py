from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import structlog
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from colima_ref.adapters import memory
from colima_ref.domain.models import QueryResult

MakeClient = Callable[..., TestClient]
CANONICAL = "HTTP request completed"


class BrokenDatabase:
    async def current_timestamp(self) -> QueryResult:
        raise RuntimeError("boom")


class ChattyDatabase:
    """A SqlDatabase that logs while it works, as a live adapter would."""

    async def current_timestamp(self) -> QueryResult:
        structlog.get_logger("test.adapter").info("querying")
        return QueryResult(query="SELECT 1", result="1")


def _canonical(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["event"] == CANONICAL]


def test_a_request_without_an_id_gets_a_fresh_uuid4(client: TestClient) -> None:
    first = client.get("/health/").headers["X-Request-ID"]
    second = client.get("/health/").headers["X-Request-ID"]

    assert uuid.UUID(first).version == 4
    assert first != second


@pytest.mark.parametrize(
    "incoming",
    [str(uuid.uuid4()), "req-42", "a.b_c-D", "x" * 64],
    ids=["uuid", "token", "all-allowed-punctuation", "64-chars"],
)
def test_a_well_formed_incoming_id_is_kept(client: TestClient, incoming: str) -> None:
    response = client.get("/health/", headers={"X-Request-ID": incoming})

    assert response.headers["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["x" * 65, "has space", "semi;colon", "new\\nline", ""],
    ids=["65-chars", "space", "semicolon", "backslash", "empty"],
)
def test_a_malformed_incoming_id_is_replaced(client: TestClient, incoming: str) -> None:
    response = client.get("/health/", headers={"X-Request-ID": incoming})

    replaced = response.headers["X-Request-ID"]
    assert replaced != incoming
    assert uuid.UUID(replaced).version == 4


def test_error_responses_carry_the_incoming_id_in_header_and_body(client: TestClient) -> None:
    response = client.get("/no/such/route", headers={"X-Request-ID": "trace-7"})

    assert response.headers["X-Request-ID"] == "trace-7"
    assert response.json()["request_id"] == "trace-7"


def test_a_500_carries_the_request_id_in_header_and_body(make_client: MakeClient) -> None:
    client = make_client(attrs.evolve(memory.services(), postgres=BrokenDatabase()))

    response = client.get("/examples/database/postgres/query", headers={"X-Request-ID": "r-500"})

    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "r-500"
    assert response.json()["request_id"] == "r-500"


def test_each_request_writes_one_canonical_line_with_the_route_template(
    client: TestClient,
) -> None:
    with capture_logs() as entries:
        response = client.get("/examples/cache/user:1", headers={"X-Request-ID": "line-1"})

    [line] = _canonical(entries)
    assert line["log_level"] == "info"
    assert line["request_id"] == response.headers["X-Request-ID"] == "line-1"
    assert line["method"] == "GET"
    assert line["path"] == "/examples/cache/{key}"
    assert line["status_code"] == 200
    assert line["client_ip"] == "testclient"
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] == round(line["duration_ms"], 2)


def test_an_unknown_route_is_logged_under_one_fixed_path(client: TestClient) -> None:
    with capture_logs() as entries:
        client.get("/no/such/route/12345")
        client.get("/another/unknown")

    lines = _canonical(entries)
    assert [(line["path"], line["status_code"]) for line in lines] == [("<unmatched>", 404)] * 2


def test_a_wrong_method_is_logged_under_its_route_template(client: TestClient) -> None:
    with capture_logs() as entries:
        client.put("/examples/cache/k1")

    [line] = _canonical(entries)
    assert (line["path"], line["status_code"]) == ("/examples/cache/{key}", 405)


def test_a_500_is_logged_once_with_its_status(make_client: MakeClient) -> None:
    client = make_client(attrs.evolve(memory.services(), postgres=BrokenDatabase()))

    with capture_logs() as entries:
        client.get("/examples/database/postgres/query")

    [line] = _canonical(entries)
    assert (line["path"], line["status_code"]) == ("/examples/database/postgres/query", 500)


def test_lines_logged_during_a_request_carry_its_request_id(make_client: MakeClient) -> None:
    client = make_client(attrs.evolve(memory.services(), postgres=ChattyDatabase()))

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as entries:
        client.get("/examples/database/postgres/query", headers={"X-Request-ID": "ctx-1"})
        client.get("/examples/database/postgres/query", headers={"X-Request-ID": "ctx-2"})

    adapter_lines = [entry for entry in entries if entry["event"] == "querying"]
    assert [line["request_id"] for line in adapter_lines] == ["ctx-1", "ctx-2"]
