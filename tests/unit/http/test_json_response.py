"""Our JSONResponse renders the bytes Starlette's does, and never fails where it does not."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.types import Message, Receive, Scope, Send

from colima_ref.http.json_response import ConstantJSONEndpoint, JSONResponse


@pytest.mark.parametrize(
    "body",
    [
        {"status": "healthy"},
        {"key": "k1", "value": "çà 日本", "ttl": 60, "exists": True, "nothing": None},
        {"services": {"postgres": {"latency_ms": 1.5, "details": [1, 2, "x"]}}},
        [],
    ],
)
def test_bodies_render_to_the_same_bytes_as_starlettes(body: Any) -> None:
    assert JSONResponse(body).body == StarletteJSONResponse(body).body


def test_an_integer_orjson_cannot_hold_falls_back_to_json() -> None:
    body = {"big": 2**70}

    assert json.loads(JSONResponse(body).body) == body


def test_nan_becomes_null_instead_of_a_server_error() -> None:
    assert json.loads(JSONResponse({"ratio": float("nan")}).body) == {"ratio": None}


def test_the_content_type_is_json() -> None:
    assert JSONResponse({}).headers["content-type"] == "application/json"


async def _sent_by(app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET"}, receive, send)
    return sent


@pytest.mark.parametrize("status_code", [200, 503])
async def test_a_constant_endpoint_sends_what_a_json_response_sends(status_code: int) -> None:
    body = {"status": "healthy", "note": "çà"}

    ours = await _sent_by(ConstantJSONEndpoint(body, status_code))
    theirs = await _sent_by(JSONResponse(body, status_code))

    assert ours == theirs


async def test_a_constant_endpoint_gives_each_response_its_own_headers() -> None:
    """Middleware appends to the list it is sent; the next response must not carry that."""
    endpoint = ConstantJSONEndpoint({"status": "healthy"})
    first = await _sent_by(endpoint)
    first[0]["headers"].append((b"x-request-id", b"first"))

    second = await _sent_by(endpoint)

    assert (b"x-request-id", b"first") not in second[0]["headers"]
