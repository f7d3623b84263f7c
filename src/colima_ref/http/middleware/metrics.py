"""HTTP request metrics: count, duration and requests in progress per method and route template."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colima_ref.http.middleware.request_context import error_type_of
from colima_ref.http.route_match import match_route
from colima_ref.observability.metrics import Metrics

# Anything else a client invents would be a new series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"})
OTHER_METHOD = "OTHER"


class MetricsMiddleware:
    """Records ``http_requests_total``, ``http_request_duration_seconds``,
    ``http_requests_in_progress`` and ``http_errors_total`` for every HTTP request.

    It wraps Starlette's ServerErrorMiddleware (see ``http/app.py``), so an unhandled exception
    counts as the 500 the client got, with the exception's class as its error type.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        method = scope["method"]
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        template, _ = match_route(scope)
        route = self._metrics.http_route(method, template)
        route.started()
        started = time.perf_counter()
        status_code = 500
        escaped: BaseException | None = None

        async def send_with_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except BaseException as exc:
            escaped = exc
            raise
        finally:
            route.finished(status_code, time.perf_counter() - started)
            error_type = error_type_of(scope, status_code, escaped)
            if error_type is not None:
                self._metrics.http_error(error_type, status_code)
