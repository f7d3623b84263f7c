"""CORS: any origin while debugging, the CORS_ORIGINS whitelist (with credentials) otherwise."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from colima_ref.settings import Settings

PREFLIGHT_MAX_AGE = 600  # seconds
EXPOSED_HEADERS = (
    "X-Request-ID",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    "X-Cache",
)
ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def cors_middleware(settings: Settings) -> Middleware:
    """Starlette's CORSMiddleware configured from ``settings``.

    With DEBUG any origin is allowed but credentials are not: browsers refuse a wildcard
    origin with credentials, and a reflected origin with credentials would trust every site.
    """
    if settings.debug:
        origins: tuple[str, ...] = ("*",)
        credentials = False
    else:
        origins = settings.cors_origins
        credentials = True
    return Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=credentials,
        allow_methods=ALLOWED_METHODS,
        allow_headers=("*",),
        expose_headers=EXPOSED_HEADERS,
        max_age=PREFLIGHT_MAX_AGE,
    )
