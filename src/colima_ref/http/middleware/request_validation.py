"""Request-target, body size and Content-Type rules.

`RequestValidationMiddleware` runs before routing, so that every path, one no route has
included, is held to the body limits. `ControlCharacterMiddleware` runs in each route, because
naming the path parameter that holds a control character takes the route the router picked.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection
from urllib.parse import unquote_to_bytes

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colima_ref.http.errors import error_name, error_response
from colima_ref.http.json_response import JSONResponse

MAX_BODY_BYTES = 10 * 1024 * 1024
# The HTTP parser refuses a head still unfinished past this many bytes, but parses one that
# arrived whole in a single read; the header fields of such a head are refused here.
MAX_HEAD_BYTES = 32 * 1024
# The head has a deadline of its own (colima_ref.head_deadline); this bounds each wait for the
# next piece of a body, so a body trickled in or never finished cannot hold a request forever.
BODY_READ_TIMEOUT = 5.0
ALLOWED_MEDIA_TYPES = frozenset(
    {
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/plain",
    }
)
EXEMPT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
EXEMPT_PATHS = frozenset({"/metrics", "/docs", "/redoc", "/openapi.json"})
EXEMPT_PREFIXES = ("/health/",)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_ENCODED_SLASH = re.compile(rb"%2f", re.IGNORECASE)
# An escape of a byte past ASCII, the only kind that can fail to decode as UTF-8.
_ESCAPED_HIGH_BYTE = re.compile(rb"%[89a-f]", re.IGNORECASE)


MISSING_CONTENT_TYPE = "A request body needs a Content-Type header"
UNSUPPORTED_CONTENT_TYPE = "Unsupported Content-Type"


def body_too_large(max_body_bytes: int) -> str:
    """The message of the 413 for a body over ``max_body_bytes``."""
    return f"Request body exceeds {max_body_bytes} bytes"


class _BodyTooLargeError(HTTPException):
    """Raised inside the app's ``receive``, so Starlette's handler writes the uniform 413 body
    before its 500 handler could claim the response."""

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(
            413,
            body_too_large(max_body_bytes),
            # The rest of the body is never read, so the connection cannot be reused.
            headers={"Connection": "close"},
        )


class _BodyReadTimeoutError(HTTPException):
    """Raised inside the app's ``receive``, as _BodyTooLargeError is, for the same reason."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            f"The request body stopped arriving for {seconds:g} s",
            # What is left of the body may still come: the connection cannot be reused.
            headers={"Connection": "close"},
        )


def _headers_of(scope: Scope) -> dict[bytes, bytes]:
    return {name: value for name, value in scope["headers"]}


def _percent_encoded_utf8(raw: bytes) -> bool:
    if not raw.isascii():
        return False
    # Most targets have no escape at all, or only ASCII ones: a substring test, not a decode.
    if b"%" not in raw or _ESCAPED_HIGH_BYTE.search(raw) is None:
        return True
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def target_problem(scope: Scope) -> tuple[str, str] | None:
    """The field and the rule a request's path or query string breaks, or None.

    The ASGI server has already decoded the path, so what it cannot pass on as sent is refused
    here rather than routed: an encoded slash (``%2F`` would become a separator between path
    params) and escapes that are not UTF-8 (decoded as U+FFFD, in the query string too).
    """
    raw_path = scope.get("raw_path")
    if raw_path is not None and not (raw_path.isascii() and b"%" not in raw_path):
        if not _percent_encoded_utf8(raw_path):
            return "path", "path must be percent-encoded UTF-8"
        if _ENCODED_SLASH.search(raw_path):
            return "path", "path must not contain an encoded '/'"
    if not _percent_encoded_utf8(scope.get("query_string", b"")):
        return "query", "query string must be percent-encoded UTF-8"
    return None


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    raw = headers.get(b"content-length")
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


def _header_bytes(scope: Scope) -> int:
    # As on the wire: "name: value" and its CRLF.
    return sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def control_character_field(scope: Scope) -> str | None:
    """The path parameter holding a control character, ``path`` when the route's own text
    matched around one, or None when the path has none."""
    path: str = scope["path"]
    # isprintable() is False for every control character (and for some other characters,
    # which the search then lets through): one C loop on the common path, no regex.
    if path.isprintable() or _CONTROL_CHARACTER.search(path) is None:
        return None
    params = scope.get("path_params", {})
    return next(
        (name for name, value in params.items() if _CONTROL_CHARACTER.search(str(value))), "path"
    )


def _refusal(scope: Scope, field: str, rule: str) -> JSONResponse:
    return error_response(
        scope.get("state", {}).get("request_id"),
        error="ValidationError",
        message=rule,
        status_code=422,
        details={"field": field},
    )


async def _refuse_large_head(scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(
        scope.get("state", {}).get("request_id"),
        error=error_name(431),
        message=f"Request header fields exceed {MAX_HEAD_BYTES} bytes",
        status_code=431,
        details={"max_bytes": MAX_HEAD_BYTES},
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)


def _framed_twice(scope: Scope) -> bool:
    names = {name for name, _ in scope["headers"]}
    return b"content-length" in names and b"transfer-encoding" in names


async def _refuse_double_framing(scope: Scope, receive: Receive, send: Send) -> None:
    # A proxy that frames by Content-Length and a server that frames by Transfer-Encoding read
    # different requests from the same bytes (request smuggling); RFC 9112 6.1 lets a server
    # refuse such a request, and then the connection must not carry another one.
    response = error_response(
        scope.get("state", {}).get("request_id"),
        error=error_name(400),
        message="A request cannot carry both Content-Length and Transfer-Encoding",
        status_code=400,
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)


class RequestValidationMiddleware:
    """431 for header fields over `MAX_HEAD_BYTES`, 422 for a path or query string that cannot
    be used as sent (`target_problem`), 413 for a body over ``max_body_bytes``, 400 for a body
    without Content-Type, 415 for a Content-Type outside ``ALLOWED_MEDIA_TYPES``, 400 (and the
    connection closed) for both Content-Length and Transfer-Encoding on any route, 408 when a
    body stops arriving for ``body_read_timeout`` seconds, each with the uniform error body.

    A declared Content-Length over the limit is refused before a byte is read. A chunked body
    is counted while the app reads it, so no more than the limit is ever held; crossing it
    raises a 413 HTTPException inside the app's ``receive`` (answered by the app's handler, or
    here when the app has none). GET, HEAD, OPTIONS, the docs, /metrics and /health/* are exempt
    from the body rules, never from the target rules.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        allowed_media_types: Collection[str] = ALLOWED_MEDIA_TYPES,
        body_read_timeout: float = BODY_READ_TIMEOUT,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_read_timeout = body_read_timeout
        self.allowed_media_types = frozenset(allowed_media_types)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _framed_twice(scope):
            await _refuse_double_framing(scope, receive, send)
            return
        if _header_bytes(scope) > MAX_HEAD_BYTES:
            await _refuse_large_head(scope, receive, send)
            return
        target = target_problem(scope)
        if target is not None:
            await _refusal(scope, *target)(scope, receive, send)
            return
        if self._exempt(scope):
            await self.app(scope, receive, send)
            return

        headers = _headers_of(scope)
        length = _content_length(headers)
        if length is not None and length > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        has_body = (length or 0) > 0 or b"transfer-encoding" in headers
        if has_body and scope["method"] in _BODY_METHODS:
            problem = self._content_type_problem(headers.get(b"content-type"))
            if problem is not None:
                status_code, message = problem
                response = error_response(
                    scope.get("state", {}).get("request_id"),
                    error=error_name(status_code),
                    message=message,
                    status_code=status_code,
                    details={"allowed": sorted(self.allowed_media_types)},
                )
                await response(scope, receive, send)
                return

        received = 0
        body_pending = True
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, body_pending
            if not body_pending:
                # Past the body, receive only waits for the client to go: no deadline on that.
                return await receive()
            try:
                async with asyncio.timeout(self.body_read_timeout):
                    message = await receive()
            except TimeoutError:
                raise _BodyReadTimeoutError(self.body_read_timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLargeError(self.max_body_bytes)
                body_pending = message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLargeError:
            if response_started:
                raise
            await self._too_large(scope, receive, send)
        except _BodyReadTimeoutError as exc:
            if response_started:
                raise
            await self._timed_out(scope, receive, send, exc)

    def _exempt(self, scope: Scope) -> bool:
        path: str = scope["path"]
        return (
            scope["method"] in EXEMPT_METHODS
            or path in EXEMPT_PATHS
            or path.startswith(EXEMPT_PREFIXES)
        )

    def _content_type_problem(self, raw: bytes | None) -> tuple[int, str] | None:
        if raw is None or not raw.strip():
            return 400, MISSING_CONTENT_TYPE
        media_type = raw.decode("latin-1").partition(";")[0].strip().lower()
        if media_type not in self.allowed_media_types:
            return 415, UNSUPPORTED_CONTENT_TYPE
        return None

    async def _timed_out(
        self, scope: Scope, receive: Receive, send: Send, exc: _BodyReadTimeoutError
    ) -> None:
        response = error_response(
            scope.get("state", {}).get("request_id"),
            error=error_name(408),
            message=exc.detail,
            status_code=408,
            details={"timeout_seconds": self.body_read_timeout},
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            scope.get("state", {}).get("request_id"),
            error=error_name(413),
            message=body_too_large(self.max_body_bytes),
            status_code=413,
            details={"max_bytes": self.max_body_bytes},
            # The rest of the body is never read, so the connection cannot be reused.
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


class ControlCharacterMiddleware:
    """Route-level middleware: 422 for a path with a control character, naming the path
    parameter that holds it, else ``path``.

    Starlette's route patterns end in ``$``, which also matches before a final newline, so
    without this ``/health/all%0A`` would be served as ``/health/all``. A path no route matches
    gets the router's 404 instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        field = control_character_field(scope) if scope["type"] == "http" else None
        if field is None:
            await self.app(scope, receive, send)
            return
        refusal = _refusal(scope, field, f"{field} must not contain control characters")
        await refusal(scope, receive, send)
