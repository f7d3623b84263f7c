"""Body size and Content-Type rules, answered before routing with the uniform error body."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from starlette.types import Message

from colima_ref.adapters import memory
from colima_ref.http.app import create_app
from colima_ref.http.middleware.request_validation import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    RequestValidationMiddleware,
)
from colima_ref.ports.services import Services
from colima_ref.settings import Settings

PUBLISH = "/examples/messaging/publish?queue_name=orders"
CHUNK = 1024 * 1024
ErrorBody = Callable[[httpx2.Response, int, str], dict[str, Any]]


def test_a_body_without_content_type_is_refused_with_400(
    client: Any, error_body: ErrorBody
) -> None:
    response = client.post(PUBLISH, content=b'{"a": 1}')

    error_body(response, 400, "BadRequest")


def test_a_content_type_outside_the_allowed_list_is_refused_with_415(
    client: Any, error_body: ErrorBody
) -> None:
    response = client.post(
        PUBLISH, content=b"<a>1</a>", headers={"Content-Type": "application/xml"}
    )

    body = error_body(response, 415, "UnsupportedMediaType")
    assert "application/json" in body["details"]["allowed"]


def test_an_allowed_content_type_with_parameters_reaches_the_endpoint(client: Any) -> None:
    response = client.post(
        PUBLISH, content=b'{"a": 1}', headers={"Content-Type": "Application/JSON; charset=utf-8"}
    )

    assert response.status_code == 200


def test_a_post_without_a_body_needs_no_content_type(client: Any) -> None:
    assert client.post("/examples/cache/k?value=v").status_code == 200


def test_a_declared_length_over_the_limit_is_refused_with_413_at_once(
    client: Any, error_body: ErrorBody
) -> None:
    response = client.post(
        PUBLISH,
        content=b"{}",
        headers={"Content-Type": "application/json", "Content-Length": str(MAX_BODY_BYTES + 1)},
    )

    error_body(response, 413, "RequestEntityTooLarge")


def test_a_path_no_route_has_is_held_to_the_body_limit_too(
    client: Any, error_body: ErrorBody
) -> None:
    response = client.post(
        "/no/such/route",
        content=b"{}",
        headers={"Content-Type": "application/json", "Content-Length": str(MAX_BODY_BYTES + 1)},
    )

    error_body(response, 413, "RequestEntityTooLarge")


@pytest.mark.parametrize("path", ["/health/", "/metrics", PUBLISH])
def test_header_fields_over_the_head_limit_are_refused_with_431_on_every_route(
    client: Any, error_body: ErrorBody, path: str
) -> None:
    response = client.get(path, headers={"X-Big": "a" * MAX_HEAD_BYTES})

    body = error_body(response, 431, "RequestHeaderFieldsTooLarge")
    assert body["details"] == {"max_bytes": MAX_HEAD_BYTES}
    assert response.headers["connection"] == "close"


def test_header_fields_just_under_the_head_limit_are_served(client: Any) -> None:
    assert client.get("/health/", headers={"X-Big": "a" * (MAX_HEAD_BYTES // 2)}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/health/"), ("POST", "/openapi.json"), ("POST", "/docs"), ("GET", "/")],
)
def test_exempt_methods_and_paths_skip_the_content_type_rules(
    client: Any, method: str, path: str
) -> None:
    response = client.request(
        method, path, content=b"<a/>", headers={"Content-Type": "application/xml"}
    )

    assert response.status_code not in (400, 413, 415)


def _publish_scope(state: Any, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    """The ASGI scope a server hands the app for a JSON POST to the publish endpoint."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/examples/messaging/publish",
        "raw_path": b"/examples/messaging/publish",
        "query_string": b"queue_name=orders",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": dict(state or {}),
    }


async def _post_chunked(total_bytes: int) -> tuple[list[Message], int]:
    """POST ``total_bytes`` of chunked body straight into the ASGI app, as a server would.

    Returns the response messages and the peak of memory allocated while the app ran.
    """
    services = memory.services()

    @asynccontextmanager
    async def open_services() -> AsyncIterator[Services]:
        yield services

    app = create_app(open_services, Settings.from_env({}).http)
    sent: list[Message] = []
    remaining = total_bytes

    async def receive() -> Message:
        nonlocal remaining
        size = min(CHUNK, remaining)
        remaining -= size
        # A fresh object per chunk, as a socket read gives; reusing one would hide buffering.
        return {"type": "http.request", "body": b"{" * size, "more_body": remaining > 0}

    async def send(message: Message) -> None:
        sent.append(message)

    async with app.router.lifespan_context(app) as state:
        scope = _publish_scope(state, (b"transfer-encoding", b"chunked"))
        tracemalloc.start()
        try:
            await app(scope, receive, send)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return sent, peak


async def test_a_chunked_body_of_10mb_plus_one_byte_is_refused_with_413() -> None:
    sent, _ = await _post_chunked(MAX_BODY_BYTES + 1)

    assert sent[0]["status"] == 413
    headers = dict(sent[0]["headers"])
    body = json.loads(sent[1]["body"])
    assert body["error"] == "RequestEntityTooLarge"
    assert body["request_id"] == headers[b"x-request-id"].decode()


async def test_a_chunked_body_of_exactly_10mb_passes_the_size_rule() -> None:
    sent, _ = await _post_chunked(MAX_BODY_BYTES)

    # The publish endpoint's own 1 MiB message rule answers instead.
    assert sent[0]["status"] == 422


async def test_an_endless_chunked_body_never_holds_more_than_the_limit_in_memory() -> None:
    sent, peak = await _post_chunked(5 * MAX_BODY_BYTES)

    assert sent[0]["status"] == 413
    assert peak <= MAX_BODY_BYTES + 2 * CHUNK


def _stalling_body(*chunks: bytes) -> Callable[[], Any]:
    """A client's body: ``chunks`` (the last one unfinished), then nothing more, ever."""
    pending = list(chunks)

    async def receive() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(0), "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


async def _served_by_body_reader(receive: Callable[[], Any], read_timeout: float) -> list[Message]:
    async def read_whole_body(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    middleware = RequestValidationMiddleware(read_whole_body, body_read_timeout=read_timeout)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/examples/messaging/publish",
        "raw_path": b"/examples/messaging/publish",
        "query_string": b"queue_name=orders",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "state": {"request_id": "req-1"},
    }
    await asyncio.wait_for(middleware(scope, receive, send), timeout=5)
    return sent


async def test_a_body_that_stops_arriving_is_refused_with_408_after_the_read_timeout() -> None:
    started = time.monotonic()
    sent = await _served_by_body_reader(_stalling_body(b'{"a": '), read_timeout=0.2)

    assert 0.2 <= time.monotonic() - started < 1.0
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    body = json.loads(sent[1]["body"])
    assert (body["error"], body["request_id"]) == ("RequestTimeout", "req-1")
    assert body["details"] == {"timeout_seconds": 0.2}


async def test_a_body_arriving_in_pieces_within_the_read_timeout_is_served() -> None:
    pieces: list[Message] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.request", "body": b"}", "more_body": False},
    ]

    async def receive() -> Message:
        await asyncio.sleep(0.1)
        return pieces.pop(0)

    sent = await _served_by_body_reader(receive, read_timeout=0.3)

    assert sent[0]["status"] == 200


async def test_a_client_gone_mid_body_is_logged_as_its_own_400_not_a_server_error() -> None:
    services = memory.services()

    @asynccontextmanager
    async def open_services() -> AsyncIterator[Services]:
        yield services

    app = create_app(open_services, Settings.from_env({}).http)
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"a": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    async with app.router.lifespan_context(app) as state:
        await app(_publish_scope(state), receive, send)

    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"] == "BadRequest"
    assert services.broker.messages("orders") == []
