"""Health: liveness, readiness, and the probes of each backend.

``/health/`` touches nothing (liveness). ``/health/ready`` is 503 while the app starts or drains,
or while a service named in READINESS_SERVICES is unhealthy. ``/health/all`` and
``/health/{service}`` probe the backends; each service's report carries its circuit breaker's
state under ``circuit_breaker``. Probes bypass the breakers (docs/health.md says why), and
concurrent checks of one service share one probe run; overlapping ``/health/all`` requests share
one report, which the process serves again for up to ``REPORT_TTL`` seconds unless a breaker
has changed state or a check has failed since (`RecentReport`). Never from the shared cache:
each process reports the services as it reaches them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from colima_ref.domain.health import CheckResult, ProbeRuns, RecentReport, check_all, check_one
from colima_ref.http.convert import converter
from colima_ref.http.json_response import ConstantJSONEndpoint, JSONResponse, render_json
from colima_ref.http.readiness import readiness
from colima_ref.http.state import services, settings
from colima_ref.ports.breakers import BreakerStatus
from colima_ref.ports.services import SERVICE_NAMES, Services

CHECK_TIMEOUT = 2.0
CHECK_BUDGET = 3.0
# Short enough that an outage nothing else notices still shows within REPORT_TTL + CHECK_TIMEOUT.
REPORT_TTL = 1.0


# Liveness answers the same bytes every time; orchestrators ask often.
liveness = ConstantJSONEndpoint({"status": "healthy"})


async def ready(request: Request) -> JSONResponse:
    phase = readiness(request).phase
    if phase != "ready":
        return JSONResponse({"status": phase}, status_code=503)
    bundle = services(request)
    required = {name: bundle.probes[name] for name in settings(request).readiness_services}
    report = await check_all(
        required, timeout=CHECK_TIMEOUT, budget=CHECK_BUDGET, runs=_probe_runs(request)
    )
    if report.status == "healthy":
        return JSONResponse({"status": "ready"})
    down = {
        name: _service_body(result, bundle.breakers.get(name))
        for name, result in report.services.items()
        if not result.health.healthy
    }
    return JSONResponse({"status": "not_ready", "services": down}, status_code=503)


async def all_services(request: Request) -> Response:
    # Concurrent requests share one report, rendered once: under load, per-request aggregation,
    # breaker snapshots and rendering were most of what /health/all cost over a single check.
    reports: RecentReport[tuple[int, bytes]] = request.app.state.health_reports
    bundle = services(request)
    status_code, content = await reports.get(
        partial(_breaker_states, bundle.breakers),
        partial(_all_services_body, bundle, _probe_runs(request)),
    )
    return Response(content, status_code=status_code, media_type=JSONResponse.media_type)


def _breaker_states(breakers: Mapping[str, BreakerStatus]) -> Hashable:
    return tuple([breaker.snapshot()["state"] for breaker in breakers.values()])


async def _all_services_body(
    bundle: Services, runs: ProbeRuns
) -> tuple[tuple[int, bytes], Hashable]:
    report = await check_all(bundle.probes, timeout=CHECK_TIMEOUT, budget=CHECK_BUDGET, runs=runs)
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
    return (status_code, render_json(body)), tuple(states)


async def one_service(request: Request, name: str) -> JSONResponse:
    bundle = services(request)
    result = await check_one(bundle.probes[name], timeout=CHECK_TIMEOUT, runs=_probe_runs(request))
    return JSONResponse(
        _service_body(result, bundle.breakers.get(name)),
        status_code=200 if result.health.healthy else 503,
    )


def _probe_runs(request: Request) -> ProbeRuns:
    # One per app (create_app), so every health endpoint of the app shares its runs.
    runs: ProbeRuns = request.app.state.probe_runs
    return runs


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
