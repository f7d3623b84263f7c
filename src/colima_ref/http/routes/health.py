from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from colima_ref.domain.health import check_all, check_one
from colima_ref.http.convert import converter
from colima_ref.http.state import services
from colima_ref.ports.services import SERVICE_NAMES

CHECK_TIMEOUT = 2.0
CHECK_BUDGET = 3.0


async def liveness(request: Request) -> JSONResponse:
    return JSONResponse({"status": "healthy"})


async def all_services(request: Request) -> JSONResponse:
    bundle = services(request)
    report = await check_all(bundle.probes, timeout=CHECK_TIMEOUT, budget=CHECK_BUDGET)
    body = converter.unstructure(report)
    body["backend"] = bundle.backend
    # Degraded still serves traffic, so only a total outage tells load balancers to stay away.
    return JSONResponse(body, status_code=503 if report.status == "unhealthy" else 200)


async def one_service(request: Request, name: str) -> JSONResponse:
    result = await check_one(services(request).probes[name], timeout=CHECK_TIMEOUT)
    return JSONResponse(
        converter.unstructure(result), status_code=200 if result.health.healthy else 503
    )


routes: list[BaseRoute] = [
    Route("/health/", liveness, methods=["GET"]),
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
