from __future__ import annotations

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from colima_ref.domain import validation
from colima_ref.http.json_response import JSONResponse
from colima_ref.http.state import services


class CacheEntryEndpoint(HTTPEndpoint):
    """One key of the cache: one route for GET, POST and DELETE, so that a 405 lists all three."""

    async def get(self, request: Request) -> JSONResponse:
        key = validation.cache_key(request.path_params["key"])
        entry = await services(request).cache.get(key)
        if entry is None:
            return JSONResponse({"key": key, "value": None, "exists": False, "ttl": None})
        ttl = "no expiration" if entry.ttl is None else entry.ttl
        return JSONResponse({"key": key, "value": entry.value, "exists": True, "ttl": ttl})

    async def post(self, request: Request) -> JSONResponse:
        key = validation.cache_key(request.path_params["key"])
        query = request.query_params
        value = validation.cache_value(validation.single("value", query.getlist("value")))
        ttl = validation.ttl(validation.single("ttl", query.getlist("ttl")))
        await services(request).cache.set(key, value, ttl)
        return JSONResponse({"key": key, "value": value, "ttl": ttl, "action": "set"})

    async def delete(self, request: Request) -> JSONResponse:
        key = validation.cache_key(request.path_params["key"])
        deleted = await services(request).cache.delete(key)
        return JSONResponse({"key": key, "deleted": deleted, "action": "delete"})


# The methods are named on the route too, so the router answers any other method with a 405
# before the route's middleware counts it against a rate limit.
routes: list[BaseRoute] = [
    Route("/examples/cache/{key}", CacheEntryEndpoint, methods=["GET", "POST", "DELETE"])
]
