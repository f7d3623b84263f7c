"""The head deadline: a connection with no request in flight is closed, one serving one is not."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from uvicorn.config import Config
from uvicorn.server import ServerState

from colima_ref.head_deadline import HeadDeadlineMiddleware, HeadDeadlineProtocol

GET = b"GET /%s HTTP/1.1\r\nHost: test\r\n\r\n"
DEADLINE = 0.2


class RecordingTransport(asyncio.Transport):
    """What a socket would have been asked to send, and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.wrote = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)
        self.wrote.set()

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


class QuickDeadline(HeadDeadlineProtocol):
    timeout = DEADLINE


async def fast(request: Request) -> JSONResponse:
    return JSONResponse({"status": "healthy"})


async def slow(request: Request) -> JSONResponse:
    await asyncio.sleep(DEADLINE * 4)
    return JSONResponse({"status": "slow"})


app = Starlette(routes=[Route("/fast", fast), Route("/slow", slow)])


def connect() -> tuple[HeadDeadlineProtocol, RecordingTransport]:
    config = Config(
        app=HeadDeadlineMiddleware(app), http=QuickDeadline, lifespan="off", log_config=None
    )
    config.load()
    protocol = QuickDeadline(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def answered(transport: RecordingTransport, body: bytes) -> None:
    async with asyncio.timeout(DEADLINE * 20):
        while not transport.written.endswith(body):
            transport.wrote.clear()
            await transport.wrote.wait()


async def test_a_connection_that_sends_nothing_is_closed_at_the_deadline() -> None:
    _, transport = connect()

    await asyncio.sleep(DEADLINE / 2)
    assert not transport.closed
    await asyncio.sleep(DEADLINE)
    assert transport.closed
    assert transport.written == b""


async def test_an_unfinished_head_is_closed_at_the_deadline_however_it_trickles() -> None:
    protocol, transport = connect()

    for line in (b"GET /fast HTTP/1.1\r\n", b"Host: test\r\n", b"X-Slow: 1\r\n"):
        protocol.data_received(line)
        await asyncio.sleep(DEADLINE / 2)

    assert transport.closed
    assert transport.written == b""


async def test_a_request_in_flight_is_answered_past_the_deadline() -> None:
    protocol, transport = connect()

    protocol.data_received(GET % b"slow")
    await answered(transport, b'{"status":"slow"}')

    assert transport.written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert not transport.closed


async def test_a_kept_alive_connection_is_closed_a_deadline_after_its_last_answer() -> None:
    protocol, transport = connect()

    protocol.data_received(GET % b"fast")
    await answered(transport, b'{"status":"healthy"}')
    assert not transport.closed
    await asyncio.sleep(DEADLINE * 1.5)

    assert transport.closed


def test_the_middleware_only_calls_the_app_outside_the_protocol() -> None:
    with TestClient(HeadDeadlineMiddleware(app)) as client:
        assert client.get("/fast").json() == {"status": "healthy"}
