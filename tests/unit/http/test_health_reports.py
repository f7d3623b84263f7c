"""/health/all reports are each process's own and never outlive a failure they should show."""

from __future__ import annotations

from typing import Any

import attrs
from starlette.testclient import TestClient

from colima_ref.adapters import memory
from colima_ref.adapters.memory.cache import InMemoryCache
from colima_ref.domain.models import ServiceHealth
from colima_ref.ports.services import Services


def _postgres(client: TestClient) -> dict[str, Any]:
    entry: dict[str, Any] = client.get("/health/all").json()["services"]["postgres"]
    return entry


def test_two_apps_sharing_one_cache_each_report_their_own_services(make_client: Any) -> None:
    """Instance A's PostgreSQL outage is never B's answer, nor B's healthy report A's."""
    shared = InMemoryCache()
    on_a, on_b = memory.services(), memory.services()
    on_a.probes["postgres"].failing = True  # type: ignore[attr-defined]
    a = make_client(attrs.evolve(on_a, cache=shared))
    b = make_client(attrs.evolve(on_b, cache=shared))

    answers = [(name, _postgres(client)["status"]) for name, client in [("a", a), ("b", b)] * 3]

    assert answers == [("a", "unhealthy"), ("b", "healthy")] * 3


async def test_a_health_report_is_never_written_to_the_shared_cache(make_client: Any) -> None:
    shared = InMemoryCache()
    client = make_client(attrs.evolve(memory.services(), cache=shared))

    for _ in range(3):
        assert client.get("/health/all").status_code == 200

    assert await shared.delete_matching("*") == 0


def test_a_failed_check_shows_at_once_even_right_after_a_healthy_report(
    make_client: Any, services: Services
) -> None:
    client = make_client(services)
    assert _postgres(client)["status"] == "healthy"
    services.probes["postgres"].failing = True  # type: ignore[attr-defined]

    assert client.get("/health/postgres").status_code == 503
    after = _postgres(client)

    assert after["status"] == "unhealthy"


def test_a_failed_readiness_check_shows_at_once_even_right_after_a_healthy_report(
    make_client: Any, services: Services
) -> None:
    client = make_client(services, {"READINESS_SERVICES": "postgres"})
    assert _postgres(client)["status"] == "healthy"
    services.probes["postgres"].failing = True  # type: ignore[attr-defined]

    assert client.get("/health/ready").status_code == 503
    after = _postgres(client)

    assert after["status"] == "unhealthy"


def test_a_breaker_opening_shows_at_once_even_right_after_a_healthy_report(
    make_client: Any,
) -> None:
    services = memory.services(fail_max=2)
    client = make_client(services, {"RATE_LIMIT_ENABLED": "false"})
    assert _postgres(client)["circuit_breaker"]["state"] == "closed"
    services.postgres.failing = True  # type: ignore[attr-defined]

    answers = [client.get("/examples/database/postgres/query").status_code for _ in range(3)]
    after = _postgres(client)

    assert answers == [503, 503, 503]
    assert after["circuit_breaker"]["state"] == "open"


@attrs.define
class CountingProbe:
    runs: int = 0

    async def check(self) -> ServiceHealth:
        self.runs += 1
        return ServiceHealth(healthy=True)


def test_junk_query_strings_are_served_from_the_one_report(
    make_client: Any, services: Services
) -> None:
    probe = CountingProbe()
    client = make_client(attrs.evolve(services, probes={**services.probes, "postgres": probe}))

    statuses = {client.get(f"/health/all?junk={n}&n{n}=").status_code for n in range(20)}

    assert statuses == {200}
    assert probe.runs == 1
