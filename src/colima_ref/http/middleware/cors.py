"""CORS: any origin while debugging, the CORS_ORIGINS whitelist (with credentials) otherwise."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from colima_ref.http.errors import error_name, error_response
from colima_ref.http.response_headers import add_response_headers
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
_VARY_ORIGIN = ((b"vary", b"Origin"),)


class OriginAwareCORSMiddleware:
    """Starlette's CORSMiddleware for requests that carry an ``Origin``; ``Vary: Origin`` alone
    for the rest.

    A request without ``Origin`` is not a CORS request: all Starlette does for it is add
    ``Vary: Origin`` (so a shared cache keeps the CORS and the plain answers apart), through a
    MutableHeaders per response that cost ~4 us of a ~50 us request. The header is the same
    here, appended as its own field line, which HTTP reads as the same list.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allow_origins: Sequence[str],
        allow_credentials: bool,
        allow_methods: Sequence[str],
        allow_headers: Sequence[str],
        expose_headers: Sequence[str],
        max_age: int,
    ) -> None:
        self.app = app
        self._cors = CORSMiddleware(
            app,
            allow_origins=allow_origins,
            allow_credentials=allow_credentials,
            allow_methods=allow_methods,
            allow_headers=allow_headers,
            expose_headers=expose_headers,
            max_age=max_age,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, _ in scope["headers"]:
                if name == b"origin":
                    headers = Headers(scope=scope)
                    if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
                        await self._preflight(scope, headers)(scope, receive, send)
                    else:
                        await self._cors(scope, receive, send)
                    return
            send = add_response_headers(scope, send, _VARY_ORIGIN)
        await self.app(scope, receive, send)

    def _preflight(self, scope: Scope, headers: Headers) -> Response:
        response = self._cors.preflight_response(request_headers=headers)
        if response.status_code < 400:
            return response
        # Starlette refuses in plain text; every refusal of ours is the uniform body.
        return error_response(
            scope.get("state", {}).get("request_id"),
            error=error_name(response.status_code),
            message=bytes(response.body).decode(),
            status_code=response.status_code,
        )


def cors_middleware(settings: Settings) -> Middleware:
    """Starlette's CORSMiddleware configured from ``settings`` (behind `OriginAwareCORSMiddleware`).

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
        OriginAwareCORSMiddleware,
        allow_origins=origins,
        allow_credentials=credentials,
        allow_methods=ALLOWED_METHODS,
        allow_headers=("*",),
        expose_headers=EXPOSED_HEADERS,
        max_age=PREFLIGHT_MAX_AGE,
    )
