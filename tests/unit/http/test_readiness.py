"""GET /health/ready: the app's phase first, then the services READINESS_SERVICES names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from starlette.testclient import TestClient

from colima_ref.adapters.memory import InMemoryMessageBroker, InMemorySqlDatabase
from colima_ref.http.app import create_app
from colima_ref.ports.services import Services
from colima_ref.settings import Settings

MakeClient = Callable[..., TestClient]


def serving(services: Services) -> Callable[[], AbstractAsyncContextManager[Services]]:
    @asynccontextmanager
    async def open_services() -> AsyncIterator[Services]:
        yield services

    return open_services


def test_ready_once_the_lifespan_has_opened_the_services(client: TestClient) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_not_ready_while_starting_before_the_lifespan_ran(services: Services) -> None:
    app = create_app(serving(services), Settings().http)
    # Without the context manager the TestClient never runs the lifespan.
    response = TestClient(app).get("/health/ready")

    assert response.status_code == 503
    assert response.json() == {"status": "starting"}


def test_not_ready_while_draining_once_the_lifespan_began_to_close(services: Services) -> None:
    app = create_app(serving(services), Settings().http)
    with TestClient(app) as running:
        assert running.get("/health/ready").status_code == 200

    response = TestClient(app).get("/health/ready")

    assert response.status_code == 503
    assert response.json() == {"status": "draining"}


def test_liveness_answers_ok_while_starting(services: Services) -> None:
    app = create_app(serving(services), Settings().http)

    assert TestClient(app).get("/health/").json() == {"status": "ok"}


def test_not_ready_while_a_required_service_is_unhealthy(
    make_client: MakeClient, services: Services
) -> None:
    assert isinstance(services.postgres, InMemorySqlDatabase)
    services.postgres.failing = True
    client = make_client(services, {"READINESS_SERVICES": "vault,postgres"})

    response = client.get("/health/ready")
    body = response.json()

    assert response.status_code == 503
    assert body["status"] == "not_ready"
    assert set(body["services"]) == {"postgres"}
    assert body["services"]["postgres"]["status"] == "unhealthy"
    assert body["services"]["postgres"]["circuit_breaker"]["state"] == "closed"


def test_a_service_that_is_not_required_does_not_make_the_app_unready(
    make_client: MakeClient, services: Services
) -> None:
    assert isinstance(services.broker, InMemoryMessageBroker)
    services.broker.failing = True

    default = make_client(services)
    postgres_only = make_client(services, {"READINESS_SERVICES": "postgres"})

    assert default.get("/health/ready").status_code == 200
    assert postgres_only.get("/health/ready").status_code == 200
