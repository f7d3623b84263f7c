from __future__ import annotations

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from colima_ref._version import __version__
from colima_ref.http.json_response import JSONResponse
from colima_ref.http.state import services, settings

DESCRIPTION = (
    "Reference service showing real integration with Vault, PostgreSQL, MySQL, MongoDB, "
    "Redis Cluster and RabbitMQ behind one HTTP contract"
)


async def index(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "name": settings(request).app_name,
            "version": __version__,
            "description": DESCRIPTION,
            "backend": services(request).backend,
            "docs": "/docs",
            "redoc": "/redoc",
            "openapi": "/openapi.json",
        }
    )


routes: list[BaseRoute] = [Route("/", index, methods=["GET"])]
