from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs
from starlette.routing import Route
from starlette.testclient import TestClient

import colima_ref
from colima_ref.ports.services import SERVICE_NAMES, Services
from colima_ref.settings import DEFAULT_APP_NAME

ORIGIN = "http://localhost:3000"


def test_root_names_the_app_its_version_backend_and_doc_links(client: TestClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == DEFAULT_APP_NAME
    assert body["version"] == colima_ref.__version__
    assert body["backend"] == "memory"
    assert body["description"]
    assert (body["docs"], body["redoc"], body["openapi"]) == ("/docs", "/redoc", "/openapi.json")


def test_root_reports_the_configured_app_name(
    make_client: Callable[..., TestClient], services: Services
) -> None:
    client = make_client(services, {"APP_NAME": "Staging API"})

    assert client.get("/").json()["name"] == "Staging API"


def test_root_is_the_specifications_index_of_paths_the_app_serves(client: TestClient) -> None:
    body = client.get("/").json()
    templates = [route.path for route in client.app.routes if isinstance(route, Route)]  # type: ignore[attr-defined]

    assert set(body) >= {"health", "metrics", "security", "redis_cluster", "examples", "note"}
    assert body["note"]
    assert set(body["redis_cluster"]) == {"nodes", "slots", "info", "node_info"}
    assert set(body["examples"]) == {"vault", "databases", "cache", "messaging"}
    for path in (body["health"], body["metrics"], *body["redis_cluster"].values()):
        assert path in templates, path
    for prefix in body["examples"].values():
        assert any(template.startswith(prefix + "/") for template in templates), prefix


def test_root_security_shows_the_settings_the_app_runs_with(
    make_client: Callable[..., TestClient], services: Services
) -> None:
    client = make_client(
        services,
        {
            "CORS_ORIGINS": "https://a.example,https://b.example:8443",
            "RATE_LIMIT_ENABLED": "false",
            "RATE_LIMIT_DEFAULT": "7/second",
            "RATE_LIMIT_HEALTH": "50 per minute",
            "RATE_LIMIT_METRICS": "3/hour",
            "RATE_LIMIT_STORAGE_URL": "redis://:storage-pass-x1@127.0.0.1:1/0",
            "CIRCUIT_BREAKER_FAIL_MAX": "3",
            "CIRCUIT_BREAKER_RESET_TIMEOUT": "2.5",
            "VAULT_TOKEN": "token-value-x2",
        },
    )

    response = client.get("/")

    security = response.json()["security"]
    assert security["cors"]["allowed_origins"] == "https://a.example, https://b.example:8443"
    assert security["cors"]["credentials"] is True
    assert security["rate_limiting"] == {
        "enabled": False,
        "general_endpoints": "7/second",
        "metrics_endpoint": "3/hour",
        "health_checks": "50 per minute",
    }
    breakers = security["circuit_breakers"]
    assert (breakers["failure_threshold"], breakers["reset_timeout"]) == (3, "2.5s")
    assert (breakers["enabled"], breakers["services"]) == (True, list(SERVICE_NAMES))
    assert "storage-pass-x1" not in response.text
    assert "token-value-x2" not in response.text


def test_root_shows_any_origin_without_credentials_under_debug(
    make_client: Callable[..., TestClient], services: Services
) -> None:
    client = make_client(services, {"DEBUG": "true", "CORS_ORIGINS": "https://a.example"})

    cors = client.get("/").json()["security"]["cors"]

    assert (cors["allowed_origins"], cors["credentials"]) == ("*", False)
    preflight = client.options(
        "/", headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"}
    )
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in preflight.headers


def test_root_lists_the_services_that_have_a_breaker(
    make_client: Callable[..., TestClient], services: Services
) -> None:
    client = make_client(attrs.evolve(services, breakers={}))

    breakers = client.get("/").json()["security"]["circuit_breakers"]

    assert (breakers["enabled"], breakers["services"]) == (False, [])


def test_the_cors_and_body_limits_root_shows_are_the_ones_enforced(client: TestClient) -> None:
    security: dict[str, Any] = client.get("/").json()["security"]
    cors = security["cors"]

    preflight = client.options(
        "/examples/cache/k", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-max-age"] + "s" == cors["max_age"]
    assert preflight.headers["access-control-allow-methods"] == cors["allowed_methods"]

    validation = security["request_validation"]
    limit = re.fullmatch(r"(\d+)MB", validation["max_request_size"])
    assert limit is not None
    max_bytes = int(limit.group(1)) * 1024 * 1024
    publish = "/examples/messaging/publish?queue_name=q"
    for content_type in validation["allowed_content_types"]:
        answer = client.post(publish, content=b"{}", headers={"Content-Type": content_type})
        assert answer.status_code != 415, content_type
    refused = client.post(publish, content=b"{}", headers={"Content-Type": "application/xml"})
    assert refused.status_code == 415
    sizes = {}
    for length in (max_bytes, max_bytes + 1):
        headers = {"Content-Type": "application/json", "Content-Length": str(length)}
        sizes[length] = client.post(publish, headers=headers).status_code
    assert sizes[max_bytes] != 413
    assert sizes[max_bytes + 1] == 413
