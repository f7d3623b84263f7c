from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from colima_ref.domain.validation import MAX_CACHE_VALUE_LENGTH, MAX_TTL
from colima_ref.ports.services import Services

ErrorBody = Callable[[httpx2.Response, int, str], dict[str, Any]]


def test_getting_a_missing_key_answers_that_it_does_not_exist(client: TestClient) -> None:
    response = client.get("/examples/cache/absent")

    assert response.status_code == 200
    assert response.json() == {"key": "absent", "value": None, "exists": False, "ttl": None}


def test_a_value_set_with_a_ttl_is_read_back_with_the_seconds_left(client: TestClient) -> None:
    set_response = client.post("/examples/cache/user:123", params={"value": "v1", "ttl": "60"})

    assert set_response.status_code == 200
    assert set_response.json() == {"key": "user:123", "value": "v1", "ttl": 60, "action": "set"}
    body = client.get("/examples/cache/user:123").json()
    assert body["key"] == "user:123"
    assert body["value"] == "v1"
    assert body["exists"] is True
    assert 0 < body["ttl"] <= 60


def test_a_value_set_without_ttl_never_expires(client: TestClient) -> None:
    set_response = client.post("/examples/cache/k1", params={"value": "v"})

    assert set_response.json()["ttl"] is None
    assert client.get("/examples/cache/k1").json()["ttl"] == "no expiration"


def test_deleting_a_key_reports_whether_it_existed(client: TestClient) -> None:
    client.post("/examples/cache/temp:data", params={"value": "x"})

    first = client.delete("/examples/cache/temp:data")
    second = client.delete("/examples/cache/temp:data")

    assert first.json() == {"key": "temp:data", "deleted": True, "action": "delete"}
    assert second.json() == {"key": "temp:data", "deleted": False, "action": "delete"}
    assert client.get("/examples/cache/temp:data").json()["exists"] is False


def test_whitespace_around_a_key_is_refused_and_the_bare_key_left_alone(
    client: TestClient, error_body: ErrorBody
) -> None:
    client.post("/examples/cache/k1", params={"value": "kept"})

    response = client.post("/examples/cache/%20%20k1%20", params={"value": "v"})

    assert error_body(response, 422, "ValidationError")["details"]["field"] == "key"
    assert client.get("/examples/cache/k1").json()["value"] == "kept"


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize(
    "key", ["bad*key", "x" * 201, "%20%20"], ids=["asterisk", "201-chars", "only-whitespace"]
)
def test_a_key_breaking_the_rule_is_422(
    client: TestClient, error_body: ErrorBody, method: str, key: str
) -> None:
    response = client.request(method, f"/examples/cache/{key}", params={"value": "v"})

    assert error_body(response, 422, "ValidationError")["details"]["field"] == "key"


def test_a_key_of_200_chars_is_valid(client: TestClient) -> None:
    assert client.get(f"/examples/cache/{'k' * 200}").status_code == 200


@pytest.mark.parametrize("ttl", ["0", str(MAX_TTL + 1), "abc", "-5", "1.5", ""])
def test_a_ttl_outside_1_to_86400_whole_seconds_is_422(
    client: TestClient, error_body: ErrorBody, ttl: str
) -> None:
    response = client.post("/examples/cache/k1", params={"value": "v", "ttl": ttl})

    assert error_body(response, 422, "ValidationError")["details"]["field"] == "ttl"
    assert client.get("/examples/cache/k1").json()["exists"] is False


@pytest.mark.parametrize("ttl", [1, MAX_TTL])
def test_the_ttl_bounds_are_accepted(client: TestClient, ttl: int) -> None:
    response = client.post("/examples/cache/k1", params={"value": "v", "ttl": str(ttl)})

    assert response.status_code == 200
    assert response.json()["ttl"] == ttl


def test_a_value_over_10000_chars_is_422_and_not_stored(
    client: TestClient, error_body: ErrorBody
) -> None:
    response = client.post(
        "/examples/cache/k1", params={"value": "v" * (MAX_CACHE_VALUE_LENGTH + 1)}
    )

    assert error_body(response, 422, "ValidationError")["details"]["field"] == "value"
    assert client.get("/examples/cache/k1").json()["exists"] is False


def test_a_value_of_10000_chars_is_stored(client: TestClient) -> None:
    value = "v" * MAX_CACHE_VALUE_LENGTH

    assert client.post("/examples/cache/k1", params={"value": value}).status_code == 200
    assert client.get("/examples/cache/k1").json()["value"] == value


def test_setting_without_a_value_is_422(client: TestClient, error_body: ErrorBody) -> None:
    response = client.post("/examples/cache/k1")

    assert error_body(response, 422, "ValidationError")["details"]["field"] == "value"


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_the_cache_down_is_503(
    client: TestClient, services: Services, error_body: ErrorBody, method: str
) -> None:
    services.cache.failing = True  # type: ignore[attr-defined]

    response = client.request(method, "/examples/cache/k1", params={"value": "v"})

    error_body(response, 503, "CacheConnectionError")


def test_an_unsupported_method_is_405_naming_the_allowed_ones(
    client: TestClient, error_body: ErrorBody
) -> None:
    response = client.put("/examples/cache/k1")

    error_body(response, 405, "MethodNotAllowed")
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST", "DELETE"}
