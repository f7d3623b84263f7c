"""Request id, contextvars binding, the one canonical log line and the HTTP metrics per request."""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send

from colima_ref.domain.errors import BaseAPIException
from colima_ref.http.client_ip import IPNetwork, client_ip
from colima_ref.http.errors import error_name
from colima_ref.http.request_ids import RequestIds
from colima_ref.http.response_headers import collect_response_headers
from colima_ref.http.route_match import UNMATCHED_ROUTE, match_route
from colima_ref.observability.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_LOGGER = "colima_ref.http"
REQUEST_LOG_MESSAGE = "HTTP request completed"
_REQUEST_ID_HEADER_NAME = REQUEST_ID_HEADER.lower().encode()
# Any other method a client invents would be a new metric series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"})
OTHER_METHOD = "OTHER"
# Where the exception handlers leave the error name for the log line and the metrics.
_ERROR_TYPE = "error_type"

# A UUID in its canonical form is 36 characters of this alphabet, so it needs no second rule.
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_from(scope: Scope, fresh_ids: RequestIds) -> str:
    """The caller's X-Request-ID when it is safe to echo and log, else a fresh UUID4."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _ACCEPTABLE_ID.fullmatch(candidate):
                return candidate
            break
    return fresh_ids.next()


def noting_error_types(handlers: Mapping[Any, ExceptionHandler]) -> dict[Any, ExceptionHandler]:
    """``handlers``, each also leaving the domain error's name (``VaultUnavailableError``) in
    the request state, where a status code alone would only say ``ServiceUnavailableError``."""

    def noting(handler: ExceptionHandler) -> ExceptionHandler:
        # Starlette types a handler as taking a Request or a WebSocket; ours take requests.
        call = cast(Callable[[Request, Exception], Response | Awaitable[Response]], handler)

        async def noted(request: Request, exc: Exception) -> Response:
            if isinstance(exc, BaseAPIException):
                request.scope.setdefault("state", {})[_ERROR_TYPE] = exc.error
            response = call(request, exc)
            return await response if inspect.isawaitable(response) else response

        return noted

    return {key: noting(handler) for key, handler in handlers.items()}


def error_type_of(scope: Scope, status_code: int, escaped: BaseException | None) -> str | None:
    """What went wrong, for logs and ``http_errors_total``: the class of an exception that
    escaped the app, else the error the handlers noted, else the name of an error status.
    ``None`` for a success."""
    if escaped is not None:
        return type(escaped).__name__
    noted = scope.get("state", {}).get(_ERROR_TYPE)
    if isinstance(noted, str):
        return noted
    return error_name(status_code) if status_code >= 400 else None


class RequestContextMiddleware:
    """Gives every request an id, binds it to structlog's contextvars, echoes it in the
    ``X-Request-ID`` response header, writes one ``HTTP request completed`` line and, given
    ``metrics``, records ``http_requests_total``, ``http_request_duration_seconds``,
    ``http_requests_in_progress`` and ``http_errors_total``.

    The line carries the error type on an error, and the traceback of an unhandled exception
    only when ``debug`` is on. ``log_requests=False`` drops the line (to measure its cost).
    It must wrap Starlette's ServerErrorMiddleware (see ``http/app.py``) so that the 500
    response gets the header, and the log line and the metrics see its status (with the
    exception's class as the error type). Line and metrics share one wrapper of ``send`` and
    one clock read: they were two middlewares, and the layer cost more than its work.
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
        self._fresh_ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        request_id = request_id_from(scope, self._fresh_ids)
        scope.setdefault("state", {})["request_id"] = request_id
        # Bound, not cleared first: an ASGI server runs each request in a task of its own, whose
        # context is a copy, so nothing bound here outlives the request; and a host app that
        # mounts ours keeps what it bound for its own lines.
        structlog.contextvars.bind_contextvars(request_id=request_id)
        metrics = self._metrics
        # Resolved before the app runs: a Mount inside it rewrites the scope's root_path.
        template = (
            match_route(scope)[0] if self._log_requests or metrics is not None else UNMATCHED_ROUTE
        )
        route = None
        if metrics is not None:
            method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER_METHOD
            route = metrics.http_route(method, template)
            route.started()
        # Inner layers leave their headers here for the one wrapper below (response_headers).
        extra_headers = collect_response_headers(scope)
        extra_headers.append((_REQUEST_ID_HEADER_NAME, request_id.encode("latin-1")))
        # Until a response starts, an escaping exception means the client gets a 500.
        status_code = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                # Appended, not set: the app inside never writes X-Request-ID.
                message["headers"] = [*message.get("headers", ()), *extra_headers]
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
            if route is not None and metrics is not None:
                route.finished(status_code, seconds)
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
            # Milliseconds to two places; round() costs five times this on every request.
            "duration_ms": int(seconds * 100_000 + 0.5) / 100,
            "client_ip": client_ip(scope, self._trusted_proxies),
        }
        if error_type is not None:
            fields["error_type"] = error_type
        level = logging.ERROR if status_code >= 500 else logging.INFO
        exc_info = escaped if self._debug else None
        self._logger.log(level, REQUEST_LOG_MESSAGE, exc_info=exc_info, **fields)
