from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from colima_ref.bootstrap import build_app, open_services
from colima_ref.ports.services import SERVICE_NAMES
from colima_ref.settings import Settings


async def test_the_memory_backend_opens_in_memory_services() -> None:
    async with open_services(Settings.from_env({"COLIMA_BACKEND": "memory"})) as services:
        assert services.backend == "memory"
        assert set(services.probes) == set(SERVICE_NAMES)


async def test_the_chosen_backend_and_its_reason_are_logged_at_start_up() -> None:
    settings = Settings.from_env({"COLIMA_BACKEND": "memory"})

    with capture_logs() as logs:
        async with open_services(settings):
            pass

    assert {"event": "backend selected", "backend": "memory", "reason": "COLIMA_BACKEND"} in [
        {key: entry.get(key) for key in ("event", "backend", "reason")} for entry in logs
    ]


async def test_the_live_backend_never_falls_back_to_memory() -> None:
    """Until the live adapters land (issue 3) opening live fails instead of serving demo data."""
    settings = Settings.from_env({"VAULT_ADDR": "http://127.0.0.1:8200"})

    with pytest.raises(NotImplementedError, match="issue 3"):
        async with open_services(settings):
            pass


def test_the_built_app_answers_health_on_the_memory_backend() -> None:
    app = build_app(Settings.from_env({"COLIMA_BACKEND": "memory"}))

    with TestClient(app) as client:
        response = client.get("/health/")

    assert response.status_code == 200
