"""The server's HTTP protocol: a small response leaves in one write, and nothing else changes."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.config import Config
from uvicorn.server import ServerState

from colima_ref.server_protocol import OneWriteHttpToolsProtocol

GET = b"GET /%s HTTP/1.1\r\nHost: test\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    """What a socket would have been asked to send, one entry per write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


released = asyncio.Event()


async def small(request: Request) -> JSONResponse:
    return JSONResponse({"status": "healthy"})


async def empty(request: Request) -> Response:
    return Response(status_code=204)


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="text/plain")


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> Any:
        yield b"first"
        await released.wait()
        yield b"second"

    return StreamingResponse(chunks(), media_type="text/plain")


async def head_then_fail(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    raise RuntimeError("the body never comes")


app = Starlette(
    routes=[
        Route("/small", small, methods=["GET"]),
        Route("/empty", empty),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
    ]
)


def connect(asgi_app: Any = app) -> tuple[OneWriteHttpToolsProtocol, RecordingTransport]:
    config = Config(app=asgi_app, http=OneWriteHttpToolsProtocol, lifespan="off", log_config=None)
    config.load()
    protocol = OneWriteHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def settle(protocol: OneWriteHttpToolsProtocol) -> None:
    """Run the event loop until every request the connection received has been answered."""
    for _ in range(200):
        if not protocol.tasks and not protocol.pipeline:
            return
        await asyncio.sleep(0)
    raise AssertionError("the responses did not complete")


def split(response: bytes) -> tuple[bytes, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head, body


async def test_a_small_response_is_written_once_head_and_body_together() -> None:
    protocol, transport = connect()

    protocol.data_received(GET % b"small")
    await settle(protocol)

    [response] = transport.writes
    head, body = split(response)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 20" in head
    assert body == b'{"status":"healthy"}'


async def test_each_response_on_a_kept_alive_connection_is_one_write() -> None:
    protocol, transport = connect()

    protocol.data_received(GET % b"small")
    await settle(protocol)
    protocol.data_received(GET % b"small" + GET % b"small")
    await settle(protocol)

    assert len(transport.writes) == 3
    assert all(split(write)[1] == b'{"status":"healthy"}' for write in transport.writes)
    assert not transport.closed


async def test_a_head_request_gets_its_head_without_waiting_for_a_body() -> None:
    protocol, transport = connect()

    protocol.data_received(b"HEAD /small HTTP/1.1\r\nHost: test\r\n\r\n")
    await settle(protocol)

    [response] = transport.writes
    head, body = split(response)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == b""


async def test_a_response_without_a_body_is_written_at_once() -> None:
    protocol, transport = connect()

    protocol.data_received(GET % b"empty")
    await settle(protocol)

    assert b"".join(transport.writes).startswith(b"HTTP/1.1 204 No Content\r\n")


async def test_a_streamed_response_sends_its_head_before_a_later_chunk() -> None:
    released.clear()
    protocol, transport = connect()

    protocol.data_received(GET % b"stream")
    for _ in range(50):
        await asyncio.sleep(0)
    sent_so_far = b"".join(transport.writes)

    assert sent_so_far.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in sent_so_far
    assert b"first" in sent_so_far
    assert b"second" not in sent_so_far

    released.set()
    await settle(protocol)
    assert b"second" in b"".join(transport.writes)


async def test_expect_continue_is_answered_before_the_body_is_read() -> None:
    protocol, transport = connect()

    protocol.data_received(
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    for _ in range(20):
        await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]

    protocol.data_received(b"hello")
    await settle(protocol)
    assert len(transport.writes) == 2
    assert split(transport.writes[1])[1] == b"hello"


async def test_an_app_failing_between_head_and_body_leaves_no_half_response() -> None:
    protocol, transport = connect(head_then_fail)

    protocol.data_received(GET % b"")
    await settle(protocol)

    # uvicorn closes the connection; the client never saw a head promising two bytes.
    assert transport.writes == []
    assert transport.closed


async def test_a_finished_request_is_freed_without_the_garbage_collector() -> None:
    protocol, transport = connect()
    gc.disable()
    try:
        protocol.data_received(GET % b"small")
        await settle(protocol)
        finished = weakref.ref(protocol.cycle)
        protocol.data_received(GET % b"small")
        await settle(protocol)

        # The connection has moved on to the next request: nothing but a cycle of references
        # could still hold the first one.
        assert finished() is None
    finally:
        gc.enable()
    assert len(transport.writes) == 2
