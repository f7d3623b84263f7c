"""Health: liveness, readiness, and the probes of each backend.

``/health/`` touches nothing (liveness). ``/health/ready`` is 503 while the app starts or drains,
or while a service named in READINESS_SERVICES is unhealthy. ``/health/all`` and
``/health/{service}`` probe the backends; each service's report carries its circuit breaker's
state under ``circuit_breaker``. Probes bypass the breakers (docs/health.md says why).

Each endpoint shares its answers in one place, `HealthChecks`: overlapping requests of one
endpoint share one run of its probes, and ``/health/all`` serves its last report again for up to
``REPORT_TTL`` seconds unless a breaker has changed state or a check has failed since. Never
from the shared cache: each process reports the services as it reaches them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from functools import partial
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from colima_ref.domain.health import (
    CheckResult,
    HealthReport,
    RecentReport,
    check_all,
    check_one,
)
from colima_ref.domain.shared_runs import SharedRuns
from colima_ref.http.convert import converter
from colima_ref.http.json_response import ConstantJSONEndpoint, JSONResponse, render_json
from colima_ref.http.readiness import readiness
from colima_ref.http.state import services, settings
from colima_ref.ports.breakers import BreakerStatus
from colima_ref.ports.probes import HealthProbe
from colima_ref.ports.services import SERVICE_NAMES, Services
from colima_ref.settings import HttpSettings

CHECK_TIMEOUT = 2.0
CHECK_BUDGET = 3.0
# Short enough that an outage nothing else notices still shows within REPORT_TTL + CHECK_TIMEOUT.
REPORT_TTL = 1.0

AllServicesAnswer = tuple[int, bytes]


@attrs.define
class HealthChecks:
    """What the health endpoints of one app share, one place per endpoint
    (``app.state.health_checks``), so that a burst of requests costs each backend one probe.

    ``reports`` is ``/health/all``'s last report; ``single`` the ``/health/{service}`` checks
    in flight, by service; ``ready`` the ``/health/ready`` check in flight.
    """

    reports: RecentReport[AllServicesAnswer]
    single: SharedRuns[str, CheckResult] = attrs.field(factory=SharedRuns)
    ready: SharedRuns[None, HealthReport] = attrs.field(factory=SharedRuns)

    @classmethod
    def from_settings(cls, settings: HttpSettings) -> HealthChecks:
        """Reports kept REPORT_TTL seconds with the response cache on, else only shared."""
        return cls(RecentReport(ttl=REPORT_TTL if settings.response_cache_enabled else 0))


# Liveness answers the same bytes every time; orchestrators ask often. "ok", as the specification
# answers: liveness says the process runs, where "healthy" is a verdict on the backends.
liveness = ConstantJSONEndpoint({"status": "ok"})


async def ready(request: Request) -> JSONResponse:
    phase = readiness(request).phase
    if phase != "ready":
        return JSONResponse({"status": phase}, status_code=503)
    bundle = services(request)
    required = {name: bundle.probes[name] for name in settings(request).readiness_services}
    checks = _checks(request)
    report = await checks.ready.call(None, _check_all, required)
    if report.status == "healthy":
        return JSONResponse({"status": "ready"})
    checks.reports.drop()
    down = {
        name: _service_body(result, bundle.breakers.get(name))
        for name, result in report.services.items()
        if not result.health.healthy
    }
    return JSONResponse({"status": "not_ready", "services": down}, status_code=503)


async def all_services(request: Request) -> Response:
    bundle = services(request)
    status_code, content = await _checks(request).reports.get(
        partial(_breaker_states, bundle.breakers), partial(_all_services_body, bundle)
    )
    return Response(content, status_code=status_code, media_type=JSONResponse.media_type)


def _breaker_states(breakers: Mapping[str, BreakerStatus]) -> Hashable:
    return tuple([breaker.snapshot()["state"] for breaker in breakers.values()])


async def _check_all(probes: Mapping[str, HealthProbe]) -> HealthReport:
    return await check_all(probes, timeout=CHECK_TIMEOUT, budget=CHECK_BUDGET)


async def _all_services_body(bundle: Services) -> tuple[AllServicesAnswer, Hashable | None]:
    report = await _check_all(bundle.probes)
    body = converter.unstructure(report)
    states = []
    for name, breaker in bundle.breakers.items():
        snapshot = breaker.snapshot()
        states.append(snapshot["state"])
        if name in body["services"]:
            body["services"][name]["circuit_breaker"] = dict(snapshot)
    body["backend"] = bundle.backend
    # Degraded still serves traffic, so only a total outage tells load balancers to stay away.
    status_code = 503 if report.status == "unhealthy" else 200
    # A report with a failure in it is not served again: the next request checks afresh.
    built_with = tuple(states) if report.status == "healthy" else None
    return (status_code, render_json(body)), built_with


async def one_service(request: Request, name: str) -> JSONResponse:
    bundle = services(request)
    checks = _checks(request)
    result = await checks.single.call(name, check_one, bundle.probes[name], CHECK_TIMEOUT)
    if not result.health.healthy:
        checks.reports.drop()
    return JSONResponse(
        _service_body(result, bundle.breakers.get(name)),
        status_code=200 if result.health.healthy else 503,
    )


def _checks(request: Request) -> HealthChecks:
    checks: HealthChecks = request.app.state.health_checks
    return checks


def _service_body(result: CheckResult, breaker: BreakerStatus | None) -> Mapping[str, Any]:
    body: dict[str, Any] = converter.unstructure(result)
    if breaker is not None:
        body["circuit_breaker"] = dict(breaker.snapshot())
    return body


routes: list[BaseRoute] = [
    Route("/health/", liveness, methods=["GET"], name="liveness"),
    Route("/health/ready", ready, methods=["GET"]),
    Route("/health/all", all_services, methods=["GET"]),
    *(
        Route(
            f"/health/{name}",
            partial(one_service, name=name),
            methods=["GET"],
            name=f"health_{name}",
        )
        for name in SERVICE_NAMES
    ),
]
