"""Request id, contextvars binding, the one canonical log line and the HTTP metrics per request.

This middleware sits outside the router, so it learns the route only after the app returned:
Starlette's router puts the route it picked in ``scope["route"]``, and the line and the metrics
name that route's template. A request no route took (a 404, a redirect to the path with or
without its trailing slash) is named ``UNMATCHED_ROUTE``, so a scan of random paths shares one
series instead of creating one per path.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colima_ref.http.client_ip import IPNetwork, client_ip
from colima_ref.http.errors import error_name
from colima_ref.observability.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_LOGGER = "colima_ref.http"
REQUEST_LOG_MESSAGE = "HTTP request completed"
_HEADER_NAME = REQUEST_ID_HEADER.lower().encode("latin-1")
# Any other method a client invents would be a new metric series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"})
OTHER_METHOD = "OTHER"
UNMATCHED_ROUTE = "<unmatched>"

# A UUID in its canonical form is 36 characters of this alphabet, so it needs no second rule.
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_from(scope: Scope) -> str:
    """The caller's X-Request-ID when it is safe to echo and log, else a fresh UUID4."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _ACCEPTABLE_ID.fullmatch(candidate):
                return candidate
            break
    return str(uuid.uuid4())


def method_label(scope: Scope) -> str:
    """The request's method as a metric label: one of ``KNOWN_METHODS`` or ``OTHER_METHOD``."""
    method: str = scope["method"]
    return method if method in KNOWN_METHODS else OTHER_METHOD


def route_template(scope: Scope, outer_route: object = None) -> str:
    """The template of the route the router picked for ``scope``, once the app has returned.

    ``outer_route`` is what ``scope["route"]`` held before this app ran: a host app that mounts
    ours puts its Mount there, which names no route of ours.
    """
    route = scope.get("route")
    if route is None or route is outer_route:
        return UNMATCHED_ROUTE
    return getattr(route, "path", UNMATCHED_ROUTE)


def error_type_of(scope: Scope, status_code: int, escaped: BaseException | None) -> str | None:
    """What went wrong, for logs and ``http_errors_total``: the class of an exception that
    escaped the app, else the domain error the handlers noted (``http/errors.py``), else the
    name of an error status. ``None`` for a success."""
    if escaped is not None:
        return type(escaped).__name__
    noted = scope.get("state", {}).get("error_type")
    if isinstance(noted, str):
        return noted
    return error_name(status_code) if status_code >= 400 else None


class RequestContextMiddleware:
    """Gives every request an id, binds it to structlog's contextvars, echoes it in the
    ``X-Request-ID`` response header, writes one ``HTTP request completed`` line and, given
    ``metrics``, records ``http_requests_total``, ``http_request_duration_seconds`` and
    ``http_errors_total`` (``http_requests_in_progress`` needs the route before the endpoint
    runs, so each route counts it: ``in_progress.py``).

    The line carries the error type on an error, and the traceback of an unhandled exception
    only when ``debug`` is on. ``log_requests=False`` drops the line. The 500 of an unhandled
    exception passes through here like any response (``http/app.py`` puts a ServerErrorMiddleware
    inside this one), so it gets the header, and the line and the metrics see its status with
    the exception's class as the error type.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        debug: bool = False,
        log_requests: bool = True,
        trusted_proxies: Sequence[IPNetwork] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self._debug = debug
        self._log_requests = log_requests
        self._trusted_proxies = tuple(trusted_proxies)
        self._metrics = metrics
        # One per app, not per module: structlog caches a logger's configuration on first use,
        # so an app built after configure_logging must not reuse an older app's logger.
        self._logger = structlog.get_logger(REQUEST_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        # Bound, not cleared first: an ASGI server runs each request in a task of its own, whose
        # context is a copy, so nothing bound here outlives the request; and a host app that
        # mounts ours keeps what it bound for its own lines.
        structlog.contextvars.bind_contextvars(request_id=request_id)
        outer_route = scope.get("route")
        header_value = request_id.encode("latin-1")
        # Until a response starts, an escaping exception means the client gets a 500.
        status_code = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                # Appended, not set: nothing inside writes X-Request-ID.
                message["headers"] = [*message.get("headers", ()), (_HEADER_NAME, header_value)]
            await send(message)

        escaped: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_request_id)
        except BaseException as exc:
            escaped = exc
            raise
        finally:
            seconds = time.perf_counter() - started
            error_type = error_type_of(scope, status_code, escaped)
            template = route_template(scope, outer_route)
            metrics = self._metrics
            if metrics is not None:
                metrics.http_route(method_label(scope), template).finished(status_code, seconds)
                if error_type is not None:
                    metrics.http_error(error_type, status_code)
            if self._log_requests:
                self._log(scope, request_id, template, status_code, seconds, error_type, escaped)

    def _log(
        self,
        scope: Scope,
        request_id: str,
        template: str,
        status_code: int,
        seconds: float,
        error_type: str | None,
        escaped: BaseException | None,
    ) -> None:
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": scope["method"],
            "path": template,
            "status_code": status_code,
            "duration_ms": round(seconds * 1000, 2),
            "client_ip": client_ip(scope, self._trusted_proxies),
        }
        if error_type is not None:
            fields["error_type"] = error_type
        level = logging.ERROR if status_code >= 500 else logging.INFO
        exc_info = escaped if self._debug else None
        self._logger.log(level, REQUEST_LOG_MESSAGE, exc_info=exc_info, **fields)
