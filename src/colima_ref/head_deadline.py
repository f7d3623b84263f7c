"""A deadline on each request head, which none of uvicorn's HTTP protocols has.

uvicorn arms its keep-alive timer only when a response is complete, and the next byte received
cancels it: a connection that sends nothing, or sends its head a byte at a time (a slow-loris),
stays open for as long as the client likes. Only the connection's protocol sees it before its
head is parsed, so the deadline lives there. `HeadDeadlineProtocol` wraps the protocol uvicorn
runs for ``http="h11"`` through asyncio's ``Protocol`` interface alone and closes a connection
that has had no request in flight for `HEAD_TIMEOUT` seconds: from its opening, and from the
end of each request.

When a request starts and ends is known to the app, not to the wrapper: `HeadDeadlineMiddleware`
tells the connection it is serving. It finds that connection in a context variable the protocol
sets while it hands received bytes to uvicorn, which is when uvicorn creates the request's task
(a task starts with a copy of the context it was created in).
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

HEAD_TIMEOUT = 5  # seconds; an int because uvicorn's timeout_keep_alive, which matches it, is one

# The class uvicorn itself runs for ``http="h11"``, looked up the way uvicorn looks it up.
_H11: type[asyncio.Protocol] = import_from_string(HTTP_PROTOCOLS["h11"])

_serving: ContextVar[HeadDeadlineProtocol | None] = ContextVar("serving", default=None)


class HeadDeadlineProtocol(asyncio.Protocol):
    """uvicorn's h11 protocol, closing a connection with no request in flight after
    `HEAD_TIMEOUT` seconds. Pass it as ``http=HeadDeadlineProtocol`` and serve an app wrapped in
    `HeadDeadlineMiddleware`; without the middleware every request would be cut at the deadline.
    """

    timeout: float = HEAD_TIMEOUT

    def __init__(self, **uvicorn_arguments: Any) -> None:
        # Whatever uvicorn hands an ``http=`` protocol class goes on to its own h11 protocol
        # untouched, so the wrapper names none of it.
        self._http = _H11(**uvicorn_arguments)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._in_flight = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._http.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        token = _serving.set(self)
        try:
            self._http.data_received(data)
        finally:
            _serving.reset(token)

    def eof_received(self) -> bool | None:
        return self._http.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._http.connection_lost(exc)

    def pause_writing(self) -> None:
        self._http.pause_writing()

    def resume_writing(self) -> None:
        self._http.resume_writing()

    def request_started(self) -> None:
        self._in_flight += 1
        self._disarm()

    def request_finished(self) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            self._deadline = self._loop.call_later(self.timeout, transport.close)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class HeadDeadlineMiddleware:
    """Pure ASGI: tells the `HeadDeadlineProtocol` serving a request when it starts and ends.

    Outside such a protocol (a test client, another server) it only calls the app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = _serving.get()
        if connection is None:
            await self.app(scope, receive, send)
            return
        connection.request_started()
        try:
            await self.app(scope, receive, send)
        finally:
            connection.request_finished()
