"""The uniform error body, and the exception handlers that write it for every error path.

Every error answers ``{error, message, status_code, details, request_id}``. Handlers are looked
up by MRO, so one handler covers the whole BaseAPIException tree and endpoints never catch-and-map.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from colima_ref.domain.errors import BaseAPIException, ServiceUnavailableError
from colima_ref.http.json_response import JSONResponse
from colima_ref.observability.redaction import redact_text

ERROR_NAMES: Mapping[int, str] = MappingProxyType(
    {
        400: "BadRequest",
        401: "AuthenticationError",
        402: "PaymentRequired",
        403: "Forbidden",
        404: "ResourceNotFoundError",
        405: "MethodNotAllowed",
        406: "NotAcceptable",
        407: "ProxyAuthenticationRequired",
        408: "RequestTimeout",
        409: "Conflict",
        410: "Gone",
        411: "LengthRequired",
        412: "PreconditionFailed",
        413: "RequestEntityTooLarge",
        414: "RequestUriTooLong",
        415: "UnsupportedMediaType",
        416: "RequestedRangeNotSatisfiable",
        417: "ExpectationFailed",
        418: "IMATeapot",
        421: "MisdirectedRequest",
        422: "ValidationError",
        423: "Locked",
        424: "FailedDependency",
        425: "TooEarly",
        426: "UpgradeRequired",
        428: "PreconditionRequired",
        429: "RateLimitError",
        431: "RequestHeaderFieldsTooLarge",
        451: "UnavailableForLegalReasons",
        500: "InternalServerError",
        501: "NotImplemented",
        502: "BadGateway",
        503: "ServiceUnavailableError",
        504: "TimeoutError",
        505: "HttpVersionNotSupported",
        506: "VariantAlsoNegotiates",
        507: "InsufficientStorage",
        508: "LoopDetected",
        510: "NotExtended",
        511: "NetworkAuthenticationRequired",
    }
)
"""The ``error`` field of each standard 4xx and 5xx status answered without a domain error to name
it (by our middleware, Starlette, or a host app's own route): the domain class a client already
knows where there is one, else the status's name as clients have seen it since the first release.

Ours, not ``http.HTTPStatus`` phrases: those change between Python versions (413 is Request
Entity Too Large on 3.11 and Content Too Large on 3.13), and the ``error`` field is contract."""

UNNAMED_ERROR = "HTTPError"
"""The ``error`` field of a status outside `ERROR_NAMES` (one a host app's own route raises)."""

INTERNAL_ERROR_MESSAGE = "Internal server error"


def error_response(
    request_id: str | None,
    *,
    error: str,
    message: str,
    status_code: int,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build the uniform error response; middleware that answers before routing uses it too."""
    body = {
        "error": error,
        "message": message,
        "status_code": status_code,
        "details": dict(details or {}),
        "request_id": request_id,
    }
    return JSONResponse(body, status_code=status_code, headers=headers)


def request_id_of(request: Request) -> str | None:
    """The request id the request-context middleware stored, or None outside of it."""
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def error_name(status_code: int) -> str:
    """The ``error`` field for a bare status code (``404`` -> ``ResourceNotFoundError``)."""
    return ERROR_NAMES.get(status_code, UNNAMED_ERROR)


def api_error_response(exc: BaseAPIException, request_id: str | None) -> JSONResponse:
    """The uniform response of a domain error, with Retry-After when it gives a retry hint."""
    headers = None
    if isinstance(exc, ServiceUnavailableError) and exc.retry_after is not None:
        headers = {"Retry-After": str(exc.retry_after)}
    return error_response(
        request_id,
        error=exc.error,
        message=exc.message,
        status_code=exc.status_code,
        details=exc.details,
        headers=headers,
    )


def http_error_response(exc: HTTPException, request_id: str | None) -> JSONResponse:
    """The uniform response of a bare status, named from `ERROR_NAMES`."""
    return error_response(
        request_id,
        error=error_name(exc.status_code),
        message=exc.detail,
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BaseAPIException)
    # The domain error's name (VaultUnavailableError) for the request log and http_errors_total,
    # where the status alone would only say ServiceUnavailableError.
    request.state.error_type = exc.error
    return api_error_response(exc, request_id_of(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return http_error_response(exc, request_id_of(request))


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Nobody reads this answer; it is written so the request log and metrics show a client's
    # abandoned request as one, rather than as a server error with a traceback.
    return error_response(
        request_id_of(request),
        error=error_name(400),
        message="The client closed the connection before its request body was complete",
        status_code=400,
    )


def _internal_error(*, debug: bool) -> ExceptionHandler:
    async def handler(request: Request, exc: Exception) -> Response:
        # An exception's text may quote a credential (a DSN, a driver message): hide loaded ones.
        trace = redact_text("".join(traceback.format_exception(exc))) if debug else None
        details = {"traceback": trace} if trace is not None else {}
        return error_response(
            request_id_of(request),
            error=error_name(500),
            message=INTERNAL_ERROR_MESSAGE,
            status_code=500,
            details=details,
        )

    return handler


def exception_handlers(*, debug: bool) -> dict[Any, ExceptionHandler]:
    """Handlers for ``Starlette(exception_handlers=...)``.

    ``Exception`` is the 500, whose traceback is in ``details`` only when ``debug`` is on;
    Starlette hands it to its ServerErrorMiddleware, and ``http/app.py`` to a second one inside
    the app's middleware.
    """
    return {
        BaseAPIException: _api_error,
        HTTPException: _http_error,
        ClientDisconnect: _client_gone,
        Exception: _internal_error(debug=debug),
    }
