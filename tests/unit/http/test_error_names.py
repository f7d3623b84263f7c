"""The ``error`` field of a bare status is ours: one table, whatever Python's HTTPStatus says."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import colima_ref.http
from colima_ref.domain.errors import BaseAPIException
from colima_ref.http.errors import ERROR_NAMES, UNNAMED_ERROR, error_name

HTTP_PACKAGE = Path(colima_ref.http.__file__).parent
# What Starlette answers by itself inside our app: the router's 404 and 405, StaticFiles' 401, 404
# and 405 (the docs assets), the CORS middleware's refused preflight and Request.form()'s 400.
STARLETTE_STATUSES = {400, 401, 404, 405}
# The names clients have seen since the first release (Python 3.11's phrases for the statuses no
# domain error names), for every standard 4xx and 5xx; 3.13 renamed 413 to Content Too Large.
CONTRACT = {
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


def _subclasses(cls: type[BaseAPIException]) -> Iterator[type[BaseAPIException]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def _error_statuses_in_http_code() -> set[int]:
    """Every 4xx/5xx literal in the HTTP edge's code (not its comments): each is a status some
    path there answers with."""
    found = set()
    for source in HTTP_PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            value = node.value if isinstance(node, ast.Constant) else None
            if type(value) is int and 400 <= value < 600:
                found.add(value)
    return found


def test_every_status_the_app_answers_with_an_error_body_has_a_name() -> None:
    emitted = (
        _error_statuses_in_http_code()
        | STARLETTE_STATUSES
        | {cls.status_code for cls in _subclasses(BaseAPIException)}
    )

    assert emitted - set(ERROR_NAMES) == set()


def test_the_names_are_the_contract_on_every_python() -> None:
    assert dict(ERROR_NAMES) == CONTRACT
    assert {status: error_name(status) for status in CONTRACT} == CONTRACT


@pytest.mark.parametrize("status_code", [419, 499, 509, 599])
def test_a_status_outside_the_table_gets_the_generic_name_not_a_phrase(status_code: int) -> None:
    assert error_name(status_code) == UNNAMED_ERROR == "HTTPError"


def test_a_413_keeps_its_name_under_python_3_13s_phrase(
    monkeypatch: pytest.MonkeyPatch, client: TestClient
) -> None:
    # Python 3.13's phrase for 413, on whichever Python runs the test.
    monkeypatch.setattr(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "phrase", "Content Too Large")

    response = client.post(
        "/examples/messaging/publish?queue_name=q",
        headers={"Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)},
    )

    assert (response.status_code, response.json()["error"]) == (413, "RequestEntityTooLarge")
