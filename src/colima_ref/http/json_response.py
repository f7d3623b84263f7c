"""The JSON response every route and error answers with: Starlette's, rendered by orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.types import Receive, Scope, Send


class JSONResponse(StarletteJSONResponse):
    """Starlette's JSONResponse, rendered by orjson through its ``render()`` hook.

    Same bytes for what our routes return (compact, UTF-8, not ASCII-escaped). What orjson
    cannot render (an integer past 64 bits) falls back to Starlette's ``json.dumps``, so no
    body renders differently, except NaN and infinities, which orjson writes as ``null``
    where ``json.dumps`` refuses them with a 500.
    """

    def render(self, content: Any) -> bytes:
        return render_json(content)


class ConstantJSONEndpoint:
    """An endpoint whose answer never changes, rendered once: the same bytes and headers as
    `JSONResponse` gives for ``content``.

    An ASGI app, so Starlette's ``Route`` calls it as it is, without building a ``Request``
    and a response per request: for endpoints asked often, such as liveness. Errors still
    reach the app's handlers, which sit outside the router.
    """

    def __init__(self, content: Any, status_code: int = 200) -> None:
        response = JSONResponse(content, status_code)
        self._status_code = status_code
        self._body = response.body
        self._headers = tuple(response.raw_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A new list per response: the middleware outside appends its headers to it.
        start = {
            "type": "http.response.start",
            "status": self._status_code,
            "headers": list(self._headers),
        }
        await send(start)
        await send({"type": "http.response.body", "body": self._body})


def render_json(content: Any) -> bytes:
    """The body `JSONResponse` renders for ``content``."""
    try:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return _STARLETTE_RENDER(content)


_STARLETTE_RENDER = StarletteJSONResponse(None).render
