from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from colima_ref.adapters.memory import DEMO_SECRETS
from colima_ref.domain.masking import MASK
from colima_ref.ports.services import Services

ErrorBody = Callable[[httpx2.Response, int, str], dict[str, Any]]


def test_a_secret_answers_every_field_with_the_password_masked(client: TestClient) -> None:
    response = client.get("/examples/vault/secret/postgres")

    assert response.status_code == 200
    body = response.json()
    seed = DEMO_SECRETS["postgres"]
    assert body["service"] == "postgres"
    assert set(body["data"]) == set(seed)
    assert body["data"]["password"] == MASK
    assert body["data"]["user"] == seed["user"]
    assert body["note"] == "Passwords are masked in API responses for security"


@pytest.mark.parametrize("path", sorted(DEMO_SECRETS))
def test_no_secret_response_contains_a_seeded_password(client: TestClient, path: str) -> None:
    password = DEMO_SECRETS[path]["password"]

    whole = client.get(f"/examples/vault/secret/{path}")
    field = client.get(f"/examples/vault/secret/{path}/password")

    assert whole.status_code == field.status_code == 200
    assert password not in whole.text
    assert password not in field.text
    assert field.json() == {"service": path, "key": "password", "value": MASK}


def test_a_non_sensitive_field_is_answered_in_clear(client: TestClient) -> None:
    response = client.get("/examples/vault/secret/postgres/user")

    assert response.status_code == 200
    assert response.json() == {
        "service": "postgres",
        "key": "user",
        "value": DEMO_SECRETS["postgres"]["user"],
    }


def test_an_unknown_secret_is_404(client: TestClient, error_body: ErrorBody) -> None:
    response = client.get("/examples/vault/secret/no-such-service")

    error_body(response, 404, "ResourceNotFoundError")


def test_an_unknown_key_of_a_known_secret_is_404(client: TestClient, error_body: ErrorBody) -> None:
    response = client.get("/examples/vault/secret/postgres/no_such_key")

    body = error_body(response, 404, "ResourceNotFoundError")
    assert body["details"] == {"service": "postgres", "key": "no_such_key"}


@pytest.mark.parametrize(
    "service_name",
    ["bad.name", "bad%20name", "x" * 51, "caf%C3%A9"],
    ids=["dot", "space", "51-chars", "non-ascii"],
)
def test_a_service_name_breaking_the_rule_is_422(
    client: TestClient, error_body: ErrorBody, service_name: str
) -> None:
    for url in (
        f"/examples/vault/secret/{service_name}",
        f"/examples/vault/secret/{service_name}/user",
    ):
        body = error_body(client.get(url), 422, "ValidationError")
        assert body["details"]["field"] == "service_name"


def test_a_service_name_of_50_chars_is_valid(client: TestClient, error_body: ErrorBody) -> None:
    # Valid, so the store is asked and answers that nothing lives there.
    error_body(client.get(f"/examples/vault/secret/{'x' * 50}"), 404, "ResourceNotFoundError")


@pytest.mark.parametrize("key", ["bad:key", "x" * 101], ids=["colon", "101-chars"])
def test_a_secret_key_breaking_the_rule_is_422(
    client: TestClient, error_body: ErrorBody, key: str
) -> None:
    body = error_body(client.get(f"/examples/vault/secret/postgres/{key}"), 422, "ValidationError")

    assert body["details"]["field"] == "key"


def test_vault_down_is_503_with_the_service_named(
    client: TestClient, services: Services, error_body: ErrorBody
) -> None:
    services.secrets.failing = True  # type: ignore[attr-defined]

    body = error_body(client.get("/examples/vault/secret/postgres"), 503, "VaultUnavailableError")

    assert body["details"]["service"] == "vault"
