"""Request id, contextvars binding and the one canonical log line per request."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED_ROUTE = "<unmatched>"

# A UUID in its canonical form is 36 characters of this alphabet, so it needs no second rule.
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

_log = structlog.get_logger("colima_ref.http")


def request_id_from(scope: Scope) -> str:
    """The caller's X-Request-ID when it is safe to echo and log, else a fresh UUID4."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _ACCEPTABLE_ID.fullmatch(candidate):
                return candidate
            break
    return str(uuid.uuid4())


def route_template(scope: Scope) -> str:
    """The path template of the route that served the request, so logs and metrics do not
    get one series per cache key."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class RequestContextMiddleware:
    """Gives every request an id, binds it to structlog's contextvars, echoes it in the
    ``X-Request-ID`` response header and writes one ``HTTP request completed`` line.

    It must wrap Starlette's ServerErrorMiddleware (see ``http/app.py``) so that the 500
    response gets the header and the log line sees its status too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        # Until a response starts, an escaping exception means the client gets a 500.
        status_code = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            client = scope.get("client")
            _log.info(
                "HTTP request completed",
                request_id=request_id,
                method=scope["method"],
                path=route_template(scope),
                status_code=status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                client_ip=client[0] if client else None,
            )
