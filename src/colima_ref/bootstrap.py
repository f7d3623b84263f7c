"""The composition root: the one place that picks adapters and wires them into Services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from starlette.applications import Starlette

from colima_ref.adapters import memory
from colima_ref.http.app import create_app
from colima_ref.ports.services import Services
from colima_ref.settings import Settings

log = structlog.get_logger(__name__)


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open the backend ``settings.backend`` names, yield its Services, close it on exit.

    A live backend is never replaced by memory: if it cannot be built the error propagates.

    Raises:
        NotImplementedError: ``settings.backend`` is ``"live"`` (the live adapters are issue 3).
    """
    log.info("backend selected", backend=settings.backend, reason=settings.backend_source)
    if settings.backend == "memory":
        yield memory.services()
        return
    async with _open_live(settings) as services:
        yield services


def _open_live(settings: Settings) -> AbstractAsyncContextManager[Services]:
    raise NotImplementedError("live backend: see issue 3")


def build_app(settings: Settings) -> Starlette:
    """The whole HTTP contract on the backend ``settings`` selects, opened by the lifespan."""
    return create_app(lambda: open_services(settings), settings)
