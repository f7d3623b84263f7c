from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient

import colima_ref
from colima_ref.ports.services import Services
from colima_ref.settings import DEFAULT_APP_NAME


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
