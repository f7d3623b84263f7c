"""``GET /``: what this API is, where its parts live, and the protections it runs with.

The body is the specification's index (name, version, description, links, ``security``,
``redis_cluster``, ``examples``, ``note``) plus ``backend``, ``redoc`` and ``openapi``. Every
``security`` value is read from what the app was configured with and the constants its
middleware enforces, so the index cannot claim a limit the app does not apply.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from colima_ref._version import __version__
from colima_ref.http.docs import OPENAPI_PATH, REDOC_PATH, SWAGGER_PATH
from colima_ref.http.json_response import JSONResponse
from colima_ref.http.middleware.cors import ALLOWED_METHODS, PREFLIGHT_MAX_AGE, cors_policy
from colima_ref.http.middleware.request_validation import ALLOWED_MEDIA_TYPES, MAX_BODY_BYTES
from colima_ref.http.state import services, settings
from colima_ref.ports.services import Backend
from colima_ref.settings import HttpSettings

DESCRIPTION = (
    "Reference service showing real integration with Vault, PostgreSQL, MySQL, MongoDB, "
    "Redis Cluster and RabbitMQ behind one HTTP contract"
)
NOTE = "This is a reference implementation, not production code"
HEALTH_PATH = "/health/all"
METRICS_PATH = "/metrics"
REDIS_CLUSTER_PATHS = {
    "nodes": "/redis/cluster/nodes",
    "slots": "/redis/cluster/slots",
    "info": "/redis/cluster/info",
    "node_info": "/redis/nodes/{node_name}/info",
}
EXAMPLE_PATHS = {
    "vault": "/examples/vault",
    "databases": "/examples/database",
    "cache": "/examples/cache",
    "messaging": "/examples/messaging",
}


def api_index(config: HttpSettings, backend: Backend, breakers: Iterable[str]) -> dict[str, Any]:
    """The body of ``GET /`` for an app configured with ``config``, on ``backend``, with a
    circuit breaker for each of ``breakers``."""
    return {
        "name": config.app_name,
        "version": __version__,
        "description": DESCRIPTION,
        "backend": backend,
        "docs": SWAGGER_PATH,
        "redoc": REDOC_PATH,
        "openapi": OPENAPI_PATH,
        "health": HEALTH_PATH,
        "metrics": METRICS_PATH,
        "security": security(config, breakers),
        "redis_cluster": REDIS_CLUSTER_PATHS,
        "examples": EXAMPLE_PATHS,
        "note": NOTE,
    }


def security(config: HttpSettings, breakers: Iterable[str]) -> dict[str, Any]:
    """The ``security`` block, in the specification's shapes ("600s", "10MB", "100/minute").

    Reads only settings that hold no secret: this is the one place ``GET /`` touches them.
    """
    origins, credentials = cors_policy(config)
    limits = config.rate_limit
    breaker = config.circuit_breaker
    protected = list(breakers)
    return {
        "cors": {
            "enabled": True,
            "allowed_origins": ", ".join(origins),
            "allowed_methods": ", ".join(ALLOWED_METHODS),
            "credentials": credentials,
            "max_age": f"{PREFLIGHT_MAX_AGE}s",
        },
        "rate_limiting": {
            "enabled": limits.enabled,
            "general_endpoints": limits.default,
            "metrics_endpoint": limits.metrics,
            "health_checks": limits.health,
        },
        "request_validation": {
            "max_request_size": _size(MAX_BODY_BYTES),
            "allowed_content_types": sorted(ALLOWED_MEDIA_TYPES),
        },
        "circuit_breakers": {
            "enabled": bool(protected),
            "services": protected,
            "failure_threshold": breaker.fail_max,
            "reset_timeout": f"{breaker.reset_timeout:g}s",
        },
    }


def _size(size: int) -> str:
    mebibytes, rest = divmod(size, 1024 * 1024)
    # The specification's "10MB" is 10 * 1024 * 1024 bytes, the limit its middleware applies.
    return f"{mebibytes}MB" if mebibytes and not rest else f"{size} bytes"


async def index(request: Request) -> JSONResponse:
    bundle = services(request)
    return JSONResponse(api_index(settings(request), bundle.backend, bundle.breakers))


routes: list[BaseRoute] = [Route("/", index, methods=["GET"])]
