"""Behaviour every HealthProbe shares, and the fields each service's health shows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from colima_ref.ports.probes import HealthProbe
from colima_ref.ports.services import SERVICE_NAMES

from .conftest import open_adapter, service_of

INFO_KEYS = {
    "vault": {"details"},
    "postgres": {"version"},
    "mysql": {"version"},
    "mongodb": {"version"},
    "redis": {"cluster_enabled", "cluster_state", "total_nodes"},
    "rabbitmq": set(),
}


@pytest.fixture(
    params=[
        *(f"memory:{name}" for name in SERVICE_NAMES),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
        pytest.param("mongodb", marks=pytest.mark.mongodb),
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("vault", marks=pytest.mark.vault),
    ]
)
def probe_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
async def probe(probe_backend: str) -> AsyncIterator[HealthProbe]:
    async with open_adapter(HealthProbe, probe_backend) as opened:
        yield opened


@pytest.fixture(params=["memory:vault", pytest.param("vault", marks=pytest.mark.vault)])
async def vault_probe(request: pytest.FixtureRequest) -> AsyncIterator[HealthProbe]:
    async with open_adapter(HealthProbe, request.param) as opened:
        yield opened


@pytest.fixture(params=["memory:redis", pytest.param("redis", marks=pytest.mark.redis)])
async def redis_probe(request: pytest.FixtureRequest) -> AsyncIterator[HealthProbe]:
    async with open_adapter(HealthProbe, request.param) as opened:
        yield opened


async def test_a_reachable_service_reports_healthy_without_an_error(probe: HealthProbe) -> None:
    health = await probe.check()

    assert (health.healthy, health.status, health.error) == (True, "healthy", None)


async def test_health_info_carries_the_services_documented_fields(
    probe: HealthProbe, probe_backend: str
) -> None:
    health = await probe.check()

    assert INFO_KEYS[service_of(probe_backend)] <= health.info.keys()


async def test_vault_health_details_are_its_seal_flags(vault_probe: HealthProbe) -> None:
    details = (await vault_probe.check()).info["details"]

    assert details == {"initialized": True, "sealed": False, "standby": False}


async def test_redis_health_reports_an_ok_cluster_and_its_size(redis_probe: HealthProbe) -> None:
    info = (await redis_probe.check()).info

    assert (info["cluster_enabled"], info["cluster_state"]) == (True, "ok")
    assert isinstance(info["total_nodes"], int)
    assert info["total_nodes"] > 0
