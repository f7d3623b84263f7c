from __future__ import annotations

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from colima_ref.domain import validation
from colima_ref.domain.errors import ResourceNotFoundError
from colima_ref.domain.masking import mask_secrets, mask_value
from colima_ref.http.json_response import JSONResponse
from colima_ref.http.state import services

NOTE = "Passwords are masked in API responses for security"


async def secret(request: Request) -> JSONResponse:
    name = validation.service_name(request.path_params["service_name"])
    stored = await services(request).secrets.read(name)
    return JSONResponse({"service": name, "data": mask_secrets(stored.data), "note": NOTE})


async def secret_field(request: Request) -> JSONResponse:
    name = validation.service_name(request.path_params["service_name"])
    key = validation.secret_key(request.path_params["key"])
    stored = await services(request).secrets.read(name)
    if key not in stored.data:
        raise ResourceNotFoundError(
            f"Key {key!r} not found in secret {name!r}", {"service": name, "key": key}
        )
    return JSONResponse({"service": name, "key": key, "value": mask_value(key, stored.data[key])})


routes: list[BaseRoute] = [
    Route("/examples/vault/secret/{service_name}", secret, methods=["GET"]),
    Route("/examples/vault/secret/{service_name}/{key}", secret_field, methods=["GET"]),
]
