"""The app on in-memory services, as the server runs it, and the checks every error body shares."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from colima_ref.adapters import memory
from colima_ref.http.app import create_app
from colima_ref.ports.services import Services
from colima_ref.settings import Settings

ERROR_FIELDS = {"error", "message", "status_code", "details", "request_id"}

MakeClient = Callable[..., TestClient]


def serving(services: Services) -> Callable[[], AbstractAsyncContextManager[Services]]:
    """An ``open_services`` that hands the app the bundle a test already holds."""

    @asynccontextmanager
    async def open_services() -> AsyncIterator[Services]:
        yield services

    return open_services


@pytest.fixture
def services() -> Services:
    return memory.services()


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """Start an app on the given services and environment; every client is closed at teardown."""
    clients: list[TestClient] = []

    def make(services: Services, env: Mapping[str, str] | None = None) -> TestClient:
        app = create_app(serving(services), Settings.from_env(env or {}).http)
        # Unhandled errors must come back as the 500 a client sees, not as a test-side raise.
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient, services: Services) -> TestClient:
    return make_client(services)


def _assert_error_body(response: httpx2.Response, status_code: int, error: str) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == status_code
    assert set(body) == ERROR_FIELDS
    assert body["error"] == error
    assert body["status_code"] == status_code
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


@pytest.fixture
def error_body() -> Callable[[httpx2.Response, int, str], dict[str, Any]]:
    """Checks a response is the uniform error body (with the header's request id) and returns it."""
    return _assert_error_body
