"""Another service mounts our routes inside its own Starlette app, as the README shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from colima_ref import Settings, create_app, open_services


def host_app() -> Starlette:
    settings = Settings.from_env({})
    reference = create_app(lambda: open_services(settings), settings.http)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # Starlette runs no lifespan of a mounted app: the host enters ours and shares its state.
        async with reference.router.lifespan_context(reference) as state:
            yield dict(state or {})

    async def home(_request: object) -> PlainTextResponse:
        return PlainTextResponse("host")

    return Starlette(
        routes=[Route("/", home), Mount("/reference", app=reference)], lifespan=lifespan
    )


def test_mounted_routes_answer_from_the_hosts_lifespan() -> None:
    with TestClient(host_app()) as client:
        assert client.get("/").text == "host"
        cached = client.post("/reference/examples/cache/k1", params={"value": "v", "ttl": "60"})
        assert cached.status_code == 200
        body = client.get("/reference/examples/cache/k1").json()
        assert body["value"] == "v"
        assert body["exists"] is True


def test_mounted_routes_keep_the_uniform_error_body_and_request_id() -> None:
    with TestClient(host_app()) as client:
        response = client.get("/reference/examples/vault/secret/nope")
        assert response.status_code == 404
        assert response.json()["error"] == "ResourceNotFoundError"
        assert response.json()["request_id"] == response.headers["x-request-id"]


def test_mounted_requests_are_logged_under_our_templates_not_the_hosts_mount() -> None:
    with TestClient(host_app()) as client, capture_logs() as entries:
        client.get("/reference/examples/vault/secret/postgres")
        client.get("/reference/no/such/route")

    lines = [entry for entry in entries if entry["event"] == "HTTP request completed"]
    assert [(line["path"], line["status_code"]) for line in lines] == [
        ("/examples/vault/secret/{service_name}", 200),
        ("<unmatched>", 404),
    ]
