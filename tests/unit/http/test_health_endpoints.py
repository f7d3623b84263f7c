from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from colima_ref.ports.services import SERVICE_NAMES, Services


def test_liveness_answers_healthy_without_asking_any_service(
    client: TestClient, services: Services
) -> None:
    for probe in services.probes.values():
        probe.failing = True  # type: ignore[attr-defined]

    response = client.get("/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


def test_all_services_healthy_reports_each_with_its_latency_and_the_backend(
    client: TestClient,
) -> None:
    response = client.get("/health/all")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["backend"] == "memory"
    assert set(body["services"]) == set(SERVICE_NAMES)
    for entry in body["services"].values():
        assert entry["status"] == "healthy"
        assert entry["latency_ms"] >= 0
        assert "error" not in entry


def test_probe_info_is_shown_beside_the_status(client: TestClient) -> None:
    vault = client.get("/health/all").json()["services"]["vault"]

    assert vault["details"] == {"initialized": True, "sealed": False, "standby": False}


def test_one_service_down_is_degraded_and_still_200(client: TestClient, services: Services) -> None:
    services.probes["mysql"].failing = True  # type: ignore[attr-defined]

    response = client.get("/health/all")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["services"]["mysql"]["status"] == "unhealthy"
    assert body["services"]["mysql"]["error"]
    assert body["services"]["postgres"]["status"] == "healthy"


def test_every_service_down_is_unhealthy_and_503(client: TestClient, services: Services) -> None:
    for probe in services.probes.values():
        probe.failing = True  # type: ignore[attr-defined]

    response = client.get("/health/all")

    assert response.status_code == 503
    body: dict[str, Any] = response.json()
    assert body["status"] == "unhealthy"
    assert {entry["status"] for entry in body["services"].values()} == {"unhealthy"}


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_a_healthy_service_answers_200_with_its_health(client: TestClient, name: str) -> None:
    response = client.get(f"/health/{name}")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["latency_ms"] >= 0


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_an_unhealthy_service_answers_503_with_the_same_health_shape(
    client: TestClient, services: Services, name: str
) -> None:
    services.probes[name].failing = True  # type: ignore[attr-defined]

    response = client.get(f"/health/{name}")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["error"]
    assert body["latency_ms"] >= 0


def test_a_service_health_does_not_depend_on_the_others(
    client: TestClient, services: Services
) -> None:
    services.probes["rabbitmq"].failing = True  # type: ignore[attr-defined]

    assert client.get("/health/postgres").status_code == 200
