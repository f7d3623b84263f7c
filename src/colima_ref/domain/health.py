"""Running health probes and folding their answers into one overall status.

Overall status: every service healthy is ``healthy``, every service down is ``unhealthy``,
anything in between is ``degraded``. A probe never fails a health check: whatever it raises or
however long it hangs becomes an unhealthy answer whose error text is safe to show a client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, Literal, TypeVar

import attrs

from colima_ref.domain.errors import BaseAPIException
from colima_ref.domain.models import ServiceHealth
from colima_ref.domain.shared_runs import SharedRuns
from colima_ref.ports.probes import HealthProbe

OverallStatus = Literal["healthy", "degraded", "unhealthy"]
Report = TypeVar("Report")

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
    timeout: float = 2.0,  # noqa: ASYNC109 - an expired check is a result, not an exception
) -> CheckResult:
    """Ask one probe, within ``timeout`` seconds. Never raises for a failing or late probe."""
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
    Cancelling this call cancels every check.
    """
    started = time.perf_counter()
    checks = {
        name: asyncio.create_task(check_one(probe, timeout)) for name, probe in probes.items()
    }
    try:
        if checks:
            # Each check ends within its own timeout; the budget bounds them all.
            await asyncio.wait(checks.values(), timeout=budget)
    finally:
        for check in checks.values():
            check.cancel()
    late = CheckResult(
        ServiceHealth(healthy=False, error=BUDGET_EXHAUSTED),
        (time.perf_counter() - started) * 1000,
    )
    services = {
        name: check.result() if check.done() and not check.cancelled() else late
        for name, check in checks.items()
    }
    return HealthReport(
        status=aggregate({name: result.health for name, result in services.items()}),
        services=services,
    )


@attrs.define
class RecentReport(Generic[Report]):
    """The last report this process built, shared by the requests that overlap its build and
    served again for up to ``ttl`` seconds.

    Kept in process memory only, never in a shared store: a report describes the services as
    this process reaches them, and another process may reach them differently. A report is
    served again only while what it was built with (the breakers' states) is what
    ``built_with()`` reads now, and never once `drop` was called (a check failed elsewhere)
    after its build began. ``ttl`` 0 keeps nothing: only overlapping requests share a report.
    """

    ttl: float
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    _kept: tuple[float, Hashable, Report] | None = attrs.field(default=None, init=False)
    _generation: int = attrs.field(default=0, init=False)
    _builds: SharedRuns[None, Report] = attrs.field(factory=SharedRuns, init=False, repr=False)

    async def get(
        self,
        built_with: Callable[[], Hashable],
        build: Callable[[], Awaitable[tuple[Report, Hashable | None]]],
    ) -> Report:
        """The kept report if it is fresh and ``built_with()`` still matches, else the one
        ``build`` makes now, which returns the report and what it was built with (None for a
        report not to be served again)."""
        kept = self._kept
        if kept is not None:
            expires_at, kept_with, report = kept
            if self.clock() < expires_at and built_with() == kept_with:
                return report
            self._kept = None
        return await self._builds.call(None, self._build, build)

    def drop(self) -> None:
        """Forget the kept report, and the one a build in flight would keep."""
        self._kept = None
        self._generation += 1

    async def _build(
        self, build: Callable[[], Awaitable[tuple[Report, Hashable | None]]]
    ) -> Report:
        generation = self._generation
        report, kept_with = await build()
        if kept_with is not None and self.ttl > 0 and generation == self._generation:
            self._kept = (self.clock() + self.ttl, kept_with, report)
        return report
