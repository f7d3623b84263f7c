from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx2
import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from colima_ref.domain.models import ServiceHealth
from colima_ref.http.app import create_app
from colima_ref.ports.services import SERVICE_NAMES, Services
from colima_ref.settings import Settings


def test_liveness_answers_ok_without_asking_any_service(
    client: TestClient, services: Services
) -> None:
    for probe in services.probes.values():
        probe.failing = True  # type: ignore[attr-defined]

    response = client.get("/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_all_services_healthy_reports_each_with_its_latency_and_the_backend(
    client: TestClient,
) -> None:
    response = client.get("/health/all")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
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


class GatedProbe:
    """Counts its runs; each answers healthy once ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.runs = 0

    async def check(self) -> ServiceHealth:
        self.runs += 1
        await self.gate.wait()
        return ServiceHealth(healthy=True, info={"version": "15.18"})


@asynccontextmanager
async def served(bundle: Services, env: dict[str, str]) -> AsyncIterator[httpx2.AsyncClient]:
    """A client of the app on ``bundle``, its lifespan running, as a server would serve it."""

    @asynccontextmanager
    async def open_services() -> AsyncIterator[Services]:
        yield bundle

    app = create_app(open_services, Settings.from_env(env).http)

    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            # What a server does with the lifespan's state; httpx's transport does not.
            await app({**scope, "state": dict(state)}, receive, send)

        transport = httpx2.ASGITransport(app=with_state)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_overlapping_requests_of_one_endpoint_share_one_probe_run(
    services: Services,
) -> None:
    """Ten /health/postgres and ten /health/all in flight together cost PostgreSQL one probe
    for each endpoint, not one a request; every answer reports its run's latency."""
    probe = GatedProbe()
    bundle = attrs.evolve(services, probes={**services.probes, "postgres": probe})

    async with served(bundle, {}) as client:
        paths = ["/health/all", "/health/postgres"] * 10
        requests = [asyncio.create_task(client.get(path)) for path in paths]
        # Every request runs until it waits for the probe: in memory nothing else blocks.
        for _ in range(50):
            await asyncio.sleep(0)
        probe.gate.set()
        responses = await asyncio.gather(*requests)

    assert probe.runs == 2
    assert [response.status_code for response in responses] == [200] * 20
    latencies = {
        (path, response.json()["services"]["postgres"]["latency_ms"])
        if path == "/health/all"
        else (path, response.json()["latency_ms"])
        for path, response in zip(paths, responses, strict=True)
    }
    assert len(latencies) == 2, "the answers of each endpoint report one run's latency"


async def test_a_single_check_after_the_last_one_ended_probes_again(services: Services) -> None:
    """Only checks in flight are shared: /health/{service} never serves an older answer."""
    probe = GatedProbe()
    probe.gate.set()
    bundle = attrs.evolve(services, probes={**services.probes, "postgres": probe})

    async with served(bundle, {}) as client:
        statuses = [(await client.get("/health/postgres")).status_code for _ in range(3)]

    assert statuses == [200] * 3
    assert probe.runs == 3


class OpeningBreaker:
    """A breaker seen closed by the first report that asks, and open from then on."""

    def __init__(self) -> None:
        self.asked = 0

    def snapshot(self) -> dict[str, object]:
        self.asked += 1
        return {"state": "closed" if self.asked == 1 else "open"}


async def test_overlapping_reports_share_one_report_and_the_next_one_is_fresh(
    services: Services,
) -> None:
    """Requests that overlap get one report (one run, one breaker snapshot, the same bytes);
    a request after it ended gets a new one, so no report outlives its run."""
    probe = GatedProbe()
    breaker = OpeningBreaker()
    bundle = attrs.evolve(
        services,
        probes={**services.probes, "postgres": probe},
        breakers={**services.breakers, "postgres": breaker},
    )

    # Without the response cache, which would hand the leader's answer to the others.
    async with served(bundle, {"RESPONSE_CACHE_ENABLED": "false"}) as client:
        requests = [asyncio.create_task(client.get("/health/all")) for _ in range(3)]
        for _ in range(50):
            await asyncio.sleep(0)
        probe.gate.set()
        overlapping = await asyncio.gather(*requests)
        later = await client.get("/health/all")

    assert probe.runs == 2
    assert {response.content for response in overlapping} == {overlapping[0].content}
    states = [
        response.json()["services"]["postgres"]["circuit_breaker"]["state"]
        for response in (overlapping[0], later)
    ]
    assert states == ["closed", "open"]


async def test_a_request_that_gives_up_leaves_the_shared_report_to_the_others(
    services: Services,
) -> None:
    probe = GatedProbe()
    bundle = attrs.evolve(services, probes={**services.probes, "postgres": probe})

    async with served(bundle, {"RESPONSE_CACHE_ENABLED": "false"}) as client:
        leaver, stayer = (asyncio.create_task(client.get("/health/all")) for _ in range(2))
        for _ in range(50):
            await asyncio.sleep(0)
        leaver.cancel()  # the client went away
        for _ in range(50):
            await asyncio.sleep(0)
        probe.gate.set()
        response = await stayer

    assert leaver.cancelled()
    assert probe.runs == 1
    assert response.status_code == 200
    assert response.json()["services"]["postgres"]["status"] == "healthy"
