"""SharedLifespan: an app's lifespan run once, its state handed to every request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message

from colima_ref.serving import LifespanFailedError, SharedLifespan


def app_with(events: list[str], *, fail: bool = False) -> Starlette:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        if fail:
            raise RuntimeError("backend set-up broken")
        yield {"opened": len(events)}
        events.append("shutdown")

    async def endpoint(request: Request) -> JSONResponse:
        seen = getattr(request.state, "mine", None)
        request.state.mine = "set by this request"
        return JSONResponse({"opened": request.state.opened, "mine_before": seen})

    return Starlette(routes=[Route("/", endpoint)], lifespan=lifespan)


async def get(app: SharedLifespan) -> bytes:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    # The empty state a server with lifespan="off" gives each request.
    await app({**scope, "state": {}}, receive, send)
    return b"".join(message.get("body", b"") for message in sent)


async def test_the_lifespan_runs_once_and_every_request_gets_its_own_copy_of_its_state() -> None:
    events: list[str] = []
    shared = SharedLifespan(app_with(events))

    await shared.startup()
    first, second = await get(shared), await get(shared)
    await shared.shutdown()

    assert events == ["startup", "shutdown"]
    assert first == second == b'{"opened":1,"mine_before":null}'


async def test_a_failing_startup_raises_with_the_apps_error_as_its_cause() -> None:
    shared = SharedLifespan(app_with([], fail=True))

    with pytest.raises(LifespanFailedError) as caught:
        await shared.startup()

    assert isinstance(caught.value.__cause__, RuntimeError)
