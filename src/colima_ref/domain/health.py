"""Running health probes and folding their answers into one overall status.

Overall status: every service healthy is ``healthy``, every service down is ``unhealthy``,
anything in between is ``degraded``. A probe never fails a health check: whatever it raises or
however long it hangs becomes an unhealthy answer whose error text is safe to show a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Literal

import attrs

from colima_ref.domain.errors import BaseAPIException
from colima_ref.domain.models import ServiceHealth
from colima_ref.ports.probes import HealthProbe

OverallStatus = Literal["healthy", "degraded", "unhealthy"]

BUDGET_EXHAUSTED = "health check budget exhausted"


@attrs.frozen
class CheckResult:
    """What one probe answered and how long it took, in milliseconds."""

    health: ServiceHealth
    latency_ms: float


@attrs.frozen
class HealthReport:
    """The overall status and each service's result, in the order the probes were given."""

    status: OverallStatus
    services: Mapping[str, CheckResult]


def aggregate(services: Mapping[str, ServiceHealth]) -> OverallStatus:
    """Fold per-service health into one status. No services at all counts as healthy."""
    healthy = sum(1 for health in services.values() if health.healthy)
    if healthy == len(services):
        return "healthy"
    if healthy == 0:
        return "unhealthy"
    return "degraded"


async def _answer(probe: HealthProbe) -> ServiceHealth:
    try:
        return await probe.check()
    except BaseAPIException as exc:
        return ServiceHealth(healthy=False, error=exc.message)
    except Exception as exc:  # noqa: BLE001 - any failure is an unhealthy answer, never a 500
        # Only the class name: a driver's message may carry a DSN or a password.
        return ServiceHealth(healthy=False, error=type(exc).__name__)


async def check_one(
    probe: HealthProbe,
    *,
    timeout: float = 2.0,  # noqa: ASYNC109 - an expired check is a result, not an exception
) -> CheckResult:
    """Ask one probe, within ``timeout`` seconds. Never raises for a failing probe."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            health = await _answer(probe)
    except TimeoutError:
        # Only our own timeout lands here: _answer turns a TimeoutError raised by the probe
        # itself into an ordinary unhealthy answer.
        health = ServiceHealth(healthy=False, error=f"health check timed out after {timeout} s")
    return CheckResult(health=health, latency_ms=(time.perf_counter() - started) * 1000)


async def check_all(
    probes: Mapping[str, HealthProbe],
    *,
    timeout: float = 2.0,  # noqa: ASYNC109 - an expired check is a result, not an exception
    budget: float = 3.0,
) -> HealthReport:
    """Ask every probe concurrently, each within ``timeout`` and all within ``budget`` seconds.

    A check still running when the budget ends is cancelled and reported unhealthy.
    """
    started = time.perf_counter()
    results: dict[str, CheckResult] = {}

    async def run(name: str, probe: HealthProbe) -> None:
        results[name] = await check_one(probe, timeout=timeout)

    # When the budget ends the task group cancels and awaits the stragglers; a service with no
    # result below is one of them.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(budget), asyncio.TaskGroup() as group:
            for name, probe in probes.items():
                group.create_task(run(name, probe))
    elapsed_ms = (time.perf_counter() - started) * 1000
    exhausted = CheckResult(ServiceHealth(healthy=False, error=BUDGET_EXHAUSTED), elapsed_ms)
    services = {name: results.get(name, exhausted) for name in probes}
    return HealthReport(
        status=aggregate({name: result.health for name, result in services.items()}),
        services=services,
    )
