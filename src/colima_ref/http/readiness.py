"""Where the app is in its life, for ``GET /health/ready``.

``starting`` until the lifespan has opened the services, ``ready`` while it serves, ``draining``
once the lifespan begins to close them. Under uvicorn, SIGTERM first stops accepting connections
and waits for requests in flight, then runs the lifespan's exit: ``draining`` is what a request
still running at that moment sees, and what the process answers if shutdown takes a while.
"""

from __future__ import annotations

from typing import Literal

import attrs
from starlette.requests import Request

Phase = Literal["starting", "ready", "draining"]


@attrs.define
class Readiness:
    """The phase of one app, moved by its lifespan."""

    phase: Phase = "starting"


def readiness(request: Request) -> Readiness:
    """The Readiness of the app serving ``request`` (kept on ``app.state``, which exists before
    the lifespan runs, unlike the lifespan's request state)."""
    current: Readiness = request.app.state.readiness
    return current
