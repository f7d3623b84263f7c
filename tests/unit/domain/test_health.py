"""Health probing and aggregation: failures become safe unhealthy answers, never exceptions."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colima_ref.domain.errors import DatabaseConnectionError, VaultUnavailableError
from colima_ref.domain.health import (
    BUDGET_EXHAUSTED,
    RecentReport,
    aggregate,
    check_all,
    check_one,
)
from colima_ref.domain.models import ServiceHealth
from colima_ref.ports.probes import HealthProbe

LEAKY_MESSAGE = "connect failed for postgresql://dev_admin:hunter2@db:5432/app"


class AnsweringProbe:
    def __init__(self, health: ServiceHealth) -> None:
        self.health = health

    async def check(self) -> ServiceHealth:
        return self.health


class RaisingProbe:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def check(self) -> ServiceHealth:
        raise self.exc


class SleepingProbe:
    """Answers healthy after ``seconds``; remembers whether it was cancelled first."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.cancelled = False

    async def check(self) -> ServiceHealth:
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return ServiceHealth(healthy=True)


class BarrierProbe:
    """Answers only once ``parties`` probes are waiting at the same time."""

    def __init__(self, barrier: asyncio.Barrier) -> None:
        self.barrier = barrier

    async def check(self) -> ServiceHealth:
        await self.barrier.wait()
        return ServiceHealth(healthy=True)


async def settle() -> None:
    """Let every ready task run until it blocks: nothing here waits on I/O or a clock."""
    for _ in range(20):
        await asyncio.sleep(0)


HEALTHY = ServiceHealth(healthy=True, info={"version": "15.18"})
DOWN = ServiceHealth(healthy=False, error="Vault is sealed")


def test_no_services_at_all_is_healthy() -> None:
    assert aggregate({}) == "healthy"


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([True], "healthy"),
        ([True, True, True], "healthy"),
        ([True, False], "degraded"),
        ([False, True, True], "degraded"),
        ([False], "unhealthy"),
        ([False, False], "unhealthy"),
    ],
)
def test_overall_status_follows_the_share_of_healthy_services(
    answers: list[bool], expected: str
) -> None:
    services = {f"s{i}": ServiceHealth(healthy=up) for i, up in enumerate(answers)}

    assert aggregate(services) == expected


@given(answers=st.lists(st.booleans(), min_size=1))
def test_overall_status_is_degraded_exactly_when_services_disagree(answers: list[bool]) -> None:
    services = {f"s{i}": ServiceHealth(healthy=up) for i, up in enumerate(answers)}

    status = aggregate(services)

    assert (status == "healthy") == all(answers)
    assert (status == "unhealthy") == (not any(answers))
    assert (status == "degraded") == (len(set(answers)) == 2)


async def test_a_probe_answer_is_kept_as_given() -> None:
    healthy = await check_one(AnsweringProbe(HEALTHY))
    down = await check_one(AnsweringProbe(DOWN))

    assert healthy.health == HEALTHY
    assert down.health == DOWN


async def test_latency_is_the_time_the_probe_took_in_milliseconds() -> None:
    result = await check_one(SleepingProbe(0.05), timeout=5)

    assert result.health.healthy
    assert 50 <= result.latency_ms < 5000


async def test_our_own_error_becomes_unhealthy_with_its_message() -> None:
    probe = RaisingProbe(VaultUnavailableError("Vault is sealed", service="vault"))

    result = await check_one(probe)

    assert result.health == ServiceHealth(healthy=False, error="Vault is sealed")


async def test_a_foreign_exception_shows_only_its_class_name() -> None:
    """A driver's message may carry a DSN with a password: it must not reach the report."""
    result = await check_one(RaisingProbe(RuntimeError(LEAKY_MESSAGE)))

    assert result.health.healthy is False
    assert result.health.error == "RuntimeError"


async def test_a_timeout_raised_by_the_probe_itself_is_not_reported_as_ours() -> None:
    result = await check_one(RaisingProbe(TimeoutError(LEAKY_MESSAGE)), timeout=5)

    assert result.health.error == "TimeoutError"


async def test_a_probe_slower_than_the_timeout_is_cancelled_and_unhealthy() -> None:
    probe = SleepingProbe(30)
    started = time.perf_counter()

    result = await check_one(probe, timeout=0.05)

    assert time.perf_counter() - started < 5
    assert probe.cancelled
    assert result.health == ServiceHealth(
        healthy=False, error="health check timed out after 0.05 s"
    )


async def test_all_probes_run_concurrently() -> None:
    """Each probe waits for all the others, so a sequential run would time every one out."""
    barrier = asyncio.Barrier(3)
    probes = {name: BarrierProbe(barrier) for name in ("vault", "redis", "rabbitmq")}

    report = await check_all(probes, timeout=2, budget=3)

    assert report.status == "healthy"
    assert all(result.health.healthy for result in report.services.values())


async def test_the_report_lists_services_in_the_order_given() -> None:
    probes: dict[str, HealthProbe] = {
        "vault": SleepingProbe(0.03),
        "mongodb": AnsweringProbe(HEALTHY),
        "postgres": SleepingProbe(0.01),
    }

    report = await check_all(probes)

    assert list(report.services) == ["vault", "mongodb", "postgres"]


async def test_one_failing_service_degrades_the_report_without_hiding_the_others() -> None:
    probes: dict[str, HealthProbe] = {
        "postgres": AnsweringProbe(HEALTHY),
        "mysql": RaisingProbe(DatabaseConnectionError("MySQL is unreachable")),
        "mongodb": RaisingProbe(RuntimeError(LEAKY_MESSAGE)),
    }

    report = await check_all(probes)

    assert report.status == "degraded"
    assert report.services["postgres"].health == HEALTHY
    assert report.services["mysql"].health.error == "MySQL is unreachable"
    assert report.services["mongodb"].health.error == "RuntimeError"


async def test_every_service_down_makes_the_report_unhealthy() -> None:
    probes: dict[str, HealthProbe] = {
        "vault": AnsweringProbe(DOWN),
        "redis": RaisingProbe(ValueError("boom")),
    }

    report = await check_all(probes)

    assert report.status == "unhealthy"


async def test_no_probes_give_an_empty_healthy_report() -> None:
    report = await check_all({})

    assert report.status == "healthy"
    assert report.services == {}


async def test_a_check_still_running_when_the_budget_ends_is_cancelled_and_unhealthy() -> None:
    slow = SleepingProbe(30)
    probes: dict[str, HealthProbe] = {"redis": slow, "vault": AnsweringProbe(HEALTHY)}
    started = time.perf_counter()

    report = await check_all(probes, timeout=60, budget=0.1)
    await settle()  # the report does not wait for the cancelled probe to stop

    assert time.perf_counter() - started < 5
    assert slow.cancelled
    assert report.services["redis"].health == ServiceHealth(healthy=False, error=BUDGET_EXHAUSTED)
    assert report.services["redis"].latency_ms >= 100
    assert report.services["vault"].health == HEALTHY
    assert report.status == "degraded"


async def test_cancelling_the_whole_check_cancels_every_probe() -> None:
    probes = {"a": SleepingProbe(30), "b": SleepingProbe(30)}
    task = asyncio.create_task(check_all(probes, timeout=60, budget=60))
    await asyncio.sleep(0.05)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(probe.cancelled for probe in probes.values())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Builder:
    """Builds numbered reports, each with the breaker states it is told to report; a report
    with a failure (``failing``) says it is not to be served again."""

    def __init__(self) -> None:
        self.built = 0
        self.states: tuple[str, ...] = ("closed",)
        self.gate: asyncio.Event | None = None
        self.failing = False

    def current(self) -> tuple[str, ...]:
        return self.states

    async def build(self) -> tuple[int, tuple[str, ...] | None]:
        states = self.states
        if self.gate is not None:
            await self.gate.wait()
        self.built += 1
        return self.built, None if self.failing else states


async def test_overlapping_requests_share_one_build() -> None:
    builder = Builder()
    builder.gate = asyncio.Event()
    reports: RecentReport[int] = RecentReport(ttl=0, clock=Clock())
    overlapping = [
        asyncio.create_task(reports.get(builder.current, builder.build)) for _ in range(5)
    ]
    await settle()

    builder.gate.set()

    assert await asyncio.gather(*overlapping) == [1] * 5
    assert builder.built == 1


async def test_a_recent_report_is_served_again_until_its_ttl_ends() -> None:
    clock, builder = Clock(), Builder()
    reports: RecentReport[int] = RecentReport(ttl=1.0, clock=clock)

    served = [await reports.get(builder.current, builder.build)]
    clock.now += 0.99
    served.append(await reports.get(builder.current, builder.build))
    clock.now += 0.01
    served.append(await reports.get(builder.current, builder.build))

    assert served == [1, 1, 2]


async def test_a_breaker_changing_state_or_a_drop_means_a_new_report() -> None:
    builder = Builder()
    reports: RecentReport[int] = RecentReport(ttl=60.0, clock=Clock())
    await reports.get(builder.current, builder.build)

    builder.states = ("open",)
    after_transition = await reports.get(builder.current, builder.build)
    reports.drop()
    after_drop = await reports.get(builder.current, builder.build)
    kept = await reports.get(builder.current, builder.build)

    assert (after_transition, after_drop, kept) == (2, 3, 3)


async def test_a_report_built_across_a_drop_is_served_once_but_not_kept() -> None:
    """It may predate the failure the drop stands for."""
    builder = Builder()
    builder.gate = asyncio.Event()
    reports: RecentReport[int] = RecentReport(ttl=60.0, clock=Clock())
    first = asyncio.create_task(reports.get(builder.current, builder.build))
    await settle()

    reports.drop()
    builder.gate.set()
    served = [await first, await reports.get(builder.current, builder.build)]

    assert served == [1, 2]


async def test_a_ttl_of_zero_keeps_nothing() -> None:
    builder = Builder()
    reports: RecentReport[int] = RecentReport(ttl=0, clock=Clock())

    served = [await reports.get(builder.current, builder.build) for _ in range(3)]

    assert served == [1, 2, 3]


async def test_a_report_with_a_failure_is_served_once_and_not_again() -> None:
    builder = Builder()
    builder.failing = True
    reports: RecentReport[int] = RecentReport(ttl=60.0, clock=Clock())

    served = [await reports.get(builder.current, builder.build) for _ in range(2)]

    assert served == [1, 2]
