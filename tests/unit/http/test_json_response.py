"""Our JSONResponse renders what Starlette's did, faster, and never worse."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.responses import JSONResponse as StarletteJSONResponse

from colima_ref.http.json_response import JSONResponse


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
