"""Running health probes and folding their answers into one overall status.

Overall status: every service healthy is ``healthy``, every service down is ``unhealthy``,
anything in between is ``degraded``. A probe never fails a health check: whatever it raises or
however long it hangs becomes an unhealthy answer whose error text is safe to show a client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
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


def _timed_out(timeout: float) -> ServiceHealth:
    return ServiceHealth(healthy=False, error=f"health check timed out after {timeout} s")


async def _run(probe: HealthProbe, timeout: float) -> CheckResult:  # noqa: ASYNC109
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            health = await _answer(probe)
    except TimeoutError:
        # Only our own timeout lands here: _answer turns a TimeoutError raised by the probe
        # itself into an ordinary unhealthy answer.
        health = _timed_out(timeout)
    return CheckResult(health=health, latency_ms=(time.perf_counter() - started) * 1000)


def _nothing() -> None:
    return None


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _all_done(tasks: Sequence[asyncio.Task[CheckResult]], within: float) -> None:
    """Return once every task is done or ``within`` seconds have passed; cancel none of them.

    What asyncio.wait does, for the one case the runs need: it also builds sets of the tasks,
    checks each is not a coroutine and asks for the running loop (a getpid system call), about
    a third of its cost on every /health/all request.
    """
    pending = [task for task in tasks if not task.done()]
    if not pending:
        return
    loop = pending[0].get_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    left = len(pending)

    def one_done(_task: asyncio.Task[CheckResult]) -> None:
        nonlocal left
        left -= 1
        if left == 0:
            _release(waiter)

    for task in pending:
        task.add_done_callback(one_done)
    # One timer for all of them, as asyncio.wait has.
    timer = loop.call_later(within, _release, waiter)
    try:
        await waiter
    finally:
        timer.cancel()
        for task in pending:
            task.remove_done_callback(one_done)


@attrs.define
class ProbeRuns:
    """The probe runs in flight, so that checks of one probe that overlap share one run.

    Under load, a run per check queues on the backend's pool, threads and connections; a shared
    one costs a single round trip, and its answer is at most one run old. A joined check gets the
    run's result as it is, failure, timeout and ``latency_ms`` included. Nothing is kept once a
    run ends: the next check runs the probe again. A run ends when its probe answers, when the
    timeout of the check that started it expires, or when every check waiting for it has given
    up; a check that gives up alone leaves the run to the others.

    ``on_failure`` is called whenever a check gets an unhealthy or late result, so that a
    report kept elsewhere (`RecentReport.drop`) is not served past a failure.
    """

    on_failure: Callable[[], None] = _nothing
    _shared: SharedRuns[int, CheckResult] = attrs.field(factory=SharedRuns, init=False)

    async def results(
        self,
        probes: Sequence[HealthProbe],
        *,
        timeout: float,  # noqa: ASYNC109 - bounds the runs this call starts
        within: float,
    ) -> list[CheckResult | None]:
        """Each probe's result, from the run in flight or a new one; None if not in ``within`` s."""
        if not probes:
            return []
        shared = self._shared
        joined = [shared.enter(id(probe), _run, probe, timeout) for probe in probes]
        try:
            await _all_done([run.task for run in joined], within)
        finally:
            for probe, run in zip(probes, joined, strict=True):
                shared.leave(id(probe), run)
        results = [
            run.task.result() if run.task.done() and not run.task.cancelled() else None
            for run in joined
        ]
        if any(result is None or not result.health.healthy for result in results):
            self.on_failure()
        return results


async def check_one(
    probe: HealthProbe,
    *,
    timeout: float = 2.0,  # noqa: ASYNC109 - an expired check is a result, not an exception
    runs: ProbeRuns | None = None,
) -> CheckResult:
    """Ask one probe, within ``timeout`` seconds. Never raises for a failing probe.

    With ``runs``, the check joins a run of the same probe already in flight instead of starting
    its own, and reports that run's result.
    """
    if runs is None:
        return await _run(probe, timeout)
    started = time.perf_counter()
    [result] = await runs.results([probe], timeout=timeout, within=timeout)
    if result is None:
        # A joined run may have been started with a longer timeout than this check's.
        return CheckResult(_timed_out(timeout), (time.perf_counter() - started) * 1000)
    return result


async def check_all(
    probes: Mapping[str, HealthProbe],
    *,
    timeout: float = 2.0,  # noqa: ASYNC109 - an expired check is a result, not an exception
    budget: float = 3.0,
    runs: ProbeRuns | None = None,
) -> HealthReport:
    """Ask every probe concurrently, each within ``timeout`` and all within ``budget`` seconds.

    A check still running when the budget ends is reported unhealthy, and its probe is cancelled
    unless another check still waits for it. With ``runs``, each check may join a run already in
    flight, as ``check_one`` says.
    """
    started = time.perf_counter()
    results = await (runs or ProbeRuns()).results(
        list(probes.values()), timeout=timeout, within=min(timeout, budget)
    )
    services: dict[str, CheckResult] = {}
    late: CheckResult | None = None
    for name, result in zip(probes, results, strict=True):
        if result is None:
            # Built only when a check is late, which on most requests none is.
            late = late or CheckResult(
                _timed_out(timeout)
                if timeout <= budget
                else ServiceHealth(healthy=False, error=BUDGET_EXHAUSTED),
                (time.perf_counter() - started) * 1000,
            )
            result = late
        services[name] = result
    return HealthReport(
        status=aggregate({name: result.health for name, result in services.items()}),
        services=services,
    )


@attrs.define
class RecentReport(Generic[Report]):
    """The last report this process built, served again for up to ``ttl`` seconds.

    Kept in process memory only, never in a shared store: a report describes the services as
    this process reaches them, and another process may reach them differently. A report is
    served again only while the breaker states it was built with (``built_with``) are the
    ones read now; `drop` forgets it (a failed check elsewhere), and a report whose run
    overlapped a drop is not kept at all. Overlapping builds share one run (`SharedRuns`).
    ``ttl`` 0 keeps nothing.
    """

    ttl: float
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    _kept: tuple[float, Hashable, Report] | None = attrs.field(default=None, init=False)
    _generation: int = attrs.field(default=0, init=False)
    _runs: SharedRuns[None, Report] = attrs.field(factory=SharedRuns, init=False, repr=False)

    async def get(
        self,
        built_with: Callable[[], Hashable],
        build: Callable[[], Awaitable[tuple[Report, Hashable]]],
    ) -> Report:
        """The kept report if it is fresh and ``built_with()`` still matches, else one built
        now by ``build``, which returns the report and what it was built with."""
        kept = self._kept
        if kept is not None:
            expires_at, kept_with, report = kept
            if self.clock() < expires_at and built_with() == kept_with:
                return report
            self._kept = None
        return await self._runs.call(None, self._build, build)

    def drop(self) -> None:
        """Forget the kept report, and the one a run in flight would keep."""
        self._kept = None
        self._generation += 1

    async def _build(self, build: Callable[[], Awaitable[tuple[Report, Hashable]]]) -> Report:
        generation = self._generation
        report, kept_with = await build()
        if self.ttl > 0 and generation == self._generation:
            self._kept = (self.clock() + self.ttl, kept_with, report)
        return report
