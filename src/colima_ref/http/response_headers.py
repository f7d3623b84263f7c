"""Headers that middleware adds to a response, appended by one ``send`` wrapper for all of them.

Each layer that wrapped ``send`` only to append a header cost a closure and two extra calls per
request. The outermost middleware opens a collection in the scope and appends whatever the
layers inside it left there when the response starts; a layer used without such an outer
middleware (in a test, in another app) wraps ``send`` itself, so it works either way.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Message, Scope, Send

RawHeaders = list[tuple[bytes, bytes]]

# An ASGI extension key, namespaced by package.
_SCOPE_KEY = "colima_ref.response_headers"


def collect_response_headers(scope: Scope) -> RawHeaders:
    """Open the scope's collection; the caller appends it to the response it sends."""
    collected: RawHeaders = []
    scope[_SCOPE_KEY] = collected
    return collected


def add_response_headers(scope: Scope, send: Send, headers: Iterable[tuple[bytes, bytes]]) -> Send:
    """The ``send`` to pass inward: ``send`` itself when an outer middleware collects headers
    (``headers`` joins its collection), else a wrapper that appends ``headers``."""
    collected: RawHeaders | None = scope.get(_SCOPE_KEY)
    if collected is not None:
        collected.extend(headers)
        return send
    own = list(headers)

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *own]
        await send(message)

    return send_with_headers
