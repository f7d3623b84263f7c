"""Request id, contextvars binding and the one canonical log line per request."""

from __future__ import annotations

import inspect
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import structlog
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send

from colima_ref.domain.errors import BaseAPIException
from colima_ref.http.client_ip import IPNetwork, client_ip
from colima_ref.http.errors import error_name
from colima_ref.http.route_match import UNMATCHED_ROUTE, match_route

REQUEST_ID_HEADER = "X-Request-ID"
# Where the exception handlers leave the error name for the log line and the metrics.
_ERROR_TYPE = "error_type"

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
    ``X-Request-ID`` response header and writes one ``HTTP request completed`` line.

    The line carries the error type on an error, and the traceback of an unhandled exception
    only when ``debug`` is on. ``log_requests=False`` drops the line (to measure its cost).
    It must wrap Starlette's ServerErrorMiddleware (see ``http/app.py``) so that the 500
    response gets the header and the log line sees its status too.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        debug: bool = False,
        log_requests: bool = True,
        trusted_proxies: Sequence[IPNetwork] = (),
    ) -> None:
        self.app = app
        self._debug = debug
        self._log_requests = log_requests
        self._trusted_proxies = tuple(trusted_proxies)
        # One per app, not per module: structlog caches a logger's configuration on first use,
        # so an app built after configure_logging must not reuse an older app's logger.
        self._logger = structlog.get_logger("colima_ref.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        # Resolved before the app runs: a Mount inside it rewrites the scope's root_path.
        template = match_route(scope)[0] if self._log_requests else UNMATCHED_ROUTE
        # Until a response starts, an escaping exception means the client gets a 500.
        status_code = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        escaped: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_request_id)
        except BaseException as exc:
            escaped = exc
            raise
        finally:
            if self._log_requests:
                self._log(scope, request_id, template, status_code, started, escaped)

    def _log(
        self,
        scope: Scope,
        request_id: str,
        template: str,
        status_code: int,
        started: float,
        escaped: BaseException | None,
    ) -> None:
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": scope["method"],
            "path": template,
            "status_code": status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "client_ip": client_ip(scope, self._trusted_proxies),
        }
        error_type = error_type_of(scope, status_code, escaped)
        if error_type is not None:
            fields["error_type"] = error_type
        if escaped is not None and self._debug:
            fields["exc_info"] = escaped
        if status_code >= 500:
            self._logger.error("HTTP request completed", **fields)
        else:
            self._logger.info("HTTP request completed", **fields)
