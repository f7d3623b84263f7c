"""CORS: any origin while debugging, the CORS_ORIGINS whitelist (with credentials) otherwise."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from colima_ref.http.errors import error_name, error_response
from colima_ref.settings import HttpSettings

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


class UniformCORSMiddleware:
    """Starlette's CORSMiddleware, except that a preflight it refuses gets the uniform error
    body: Starlette refuses in plain text, and every refusal of ours has the one body."""

    def __init__(
        self, app: ASGIApp, *, allow_origins: Sequence[str], allow_credentials: bool
    ) -> None:
        self.cors = CORSMiddleware(
            app,
            allow_origins=allow_origins,
            allow_credentials=allow_credentials,
            allow_methods=ALLOWED_METHODS,
            allow_headers=("*",),
            expose_headers=EXPOSED_HEADERS,
            max_age=PREFLIGHT_MAX_AGE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            headers = Headers(scope=scope)
            # What Starlette's CORSMiddleware takes for a preflight.
            if "origin" in headers and "access-control-request-method" in headers:
                await self._preflight(scope, headers)(scope, receive, send)
                return
        await self.cors(scope, receive, send)

    def _preflight(self, scope: Scope, headers: Headers) -> Response:
        response = self.cors.preflight_response(request_headers=headers)
        if response.status_code < 400:
            return response
        return error_response(
            scope.get("state", {}).get("request_id"),
            error=error_name(response.status_code),
            message=bytes(response.body).decode(),
            status_code=response.status_code,
        )


def cors_policy(settings: HttpSettings) -> tuple[tuple[str, ...], bool]:
    """The allowed origins and whether credentials are allowed, as ``settings`` configure them.

    With DEBUG any origin is allowed but credentials are not: browsers refuse a wildcard
    origin with credentials, and a reflected origin with credentials would trust every site.
    """
    if settings.debug:
        return ("*",), False
    return settings.cors_origins, True


def cors_middleware(settings: HttpSettings) -> Middleware:
    """The CORS layer configured from ``settings`` (`cors_policy`)."""
    origins, credentials = cors_policy(settings)
    return Middleware(UniformCORSMiddleware, allow_origins=origins, allow_credentials=credentials)
