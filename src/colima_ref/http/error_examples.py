"""The example body of each error response the OpenAPI document names under
``components/responses``, rendered by the functions that render the app's error responses.

Each is built from our error classes and the limits the app enforces, then rendered as the app
renders it, so a renamed error, a new body field or a changed limit shows in the document the
app serves. The middleware's messages come from the constants and functions the middleware
sends, and a validation message from the domain's own check; the live adapters' messages, which
the HTTP edge may not import, are written here as those adapters write them.
tests/unit/http/test_openapi_examples.py drives each situation through the real code and
compares what it sends with the example.
"""

from __future__ import annotations

from typing import Any

import limits
import orjson
from starlette.responses import Response

from colima_ref.domain import validation
from colima_ref.domain.errors import (
    BaseAPIException,
    OperationTimeoutError,
    ResourceNotFoundError,
    VaultUnavailableError,
)
from colima_ref.http.errors import (
    INTERNAL_ERROR_MESSAGE,
    api_error_response,
    error_name,
    error_response,
)
from colima_ref.http.middleware.rate_limit import limit_exceeded
from colima_ref.http.middleware.request_validation import (
    ALLOWED_MEDIA_TYPES,
    MAX_BODY_BYTES,
    MISSING_CONTENT_TYPE,
    UNSUPPORTED_CONTENT_TYPE,
    body_too_large,
)
from colima_ref.settings import HttpSettings

EXAMPLE_REQUEST_ID = "0b6f7d8e-3c1a-4c55-9a39-2f1f8e6c2d10"
RATE_LIMITED_ENDPOINT = "/examples/cache/{key}"
MISSING_PATH = "nosuch"


def error_examples(config: HttpSettings, operation_timeout: float) -> dict[str, dict[str, Any]]:
    """The body of each documented error response, by its name under ``components/responses``,
    as an app configured with ``config``, on backends given ``operation_timeout``, sends it."""
    allowed = {"allowed": sorted(ALLOWED_MEDIA_TYPES)}
    limit = limits.parse(config.rate_limit.default)
    responses = {
        "BadRequest": _status(400, MISSING_CONTENT_TYPE, allowed),
        "NotFound": _domain(
            ResourceNotFoundError(
                f"No secret at path {MISSING_PATH!r}", {"secret_path": MISSING_PATH}
            )
        ),
        "PayloadTooLarge": _status(
            413, body_too_large(MAX_BODY_BYTES), {"max_bytes": MAX_BODY_BYTES}
        ),
        "UnsupportedMediaType": _status(415, UNSUPPORTED_CONTENT_TYPE, allowed),
        "ValidationFailed": _domain(_refusal_of(validation.ttl, "0")),
        "TooManyRequests": _status(
            429,
            limit_exceeded(limit),
            {"limit": str(limit), "endpoint": RATE_LIMITED_ENDPOINT},
        ),
        "InternalError": _status(500, INTERNAL_ERROR_MESSAGE),
        "ServiceUnavailable": _domain(
            VaultUnavailableError(
                "Vault is unavailable: unreachable",
                {"reason": "unreachable", "cause": "ConnectionError"},
                service="vault",
            )
        ),
        "GatewayTimeout": _domain(
            OperationTimeoutError(
                f"PostgreSQL did not answer within {operation_timeout:g} s",
                {"service": "postgres"},
            )
        ),
    }
    return {name: orjson.loads(response.body) for name, response in responses.items()}


def _status(status_code: int, message: str, details: dict[str, Any] | None = None) -> Response:
    return error_response(
        EXAMPLE_REQUEST_ID,
        error=error_name(status_code),
        message=message,
        status_code=status_code,
        details=details,
    )


def _domain(exc: BaseAPIException) -> Response:
    return api_error_response(exc, EXAMPLE_REQUEST_ID)


def _refusal_of(check: Any, value: str) -> BaseAPIException:
    try:
        check(value)
    except BaseAPIException as exc:
        return exc
    raise AssertionError(f"{check.__name__}({value!r}) accepted what its example refuses")
