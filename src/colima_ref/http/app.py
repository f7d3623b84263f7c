"""``create_app``: the whole HTTP contract as one Starlette app over a Services bundle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from colima_ref.http import docs
from colima_ref.http.errors import exception_handlers
from colima_ref.http.middleware.cors import cors_middleware
from colima_ref.http.middleware.rate_limit import RateLimitMiddleware
from colima_ref.http.middleware.request_context import RequestContextMiddleware
from colima_ref.http.middleware.request_validation import RequestValidationMiddleware
from colima_ref.http.routes import cache, database, health, messaging, redis, root, vault
from colima_ref.ports.services import Services
from colima_ref.settings import Settings


class _OutermostMiddlewareStarlette(Starlette):
    """A Starlette whose middleware wraps its ServerErrorMiddleware instead of sitting inside it.

    Starlette puts user middleware inside ServerErrorMiddleware, so a 500 would skip them: no
    X-Request-ID header, no log line, no metric. Ours see every response, the 500 included.
    """

    def __init__(self, *, outermost: Sequence[Middleware], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outermost = list(outermost)

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for cls, args, kwargs in reversed(self.outermost):
            app = cls(app, *args, **kwargs)
        return app


def _middleware(settings: Settings) -> list[Middleware]:
    """The whole middleware stack, outermost first.

    Metrics (issue 5) and rate limits, request validation and CORS (issue 4) slot in here,
    after the request context so their lines and error bodies carry the request id.
    """
    stack = [Middleware(RequestContextMiddleware), cors_middleware(settings)]
    if settings.rate_limit.enabled:
        stack.append(
            Middleware(
                RateLimitMiddleware,
                settings=settings.rate_limit,
                trusted_proxies=settings.trusted_proxies,
            )
        )
    stack.append(Middleware(RequestValidationMiddleware))
    return stack


def _routes() -> list[BaseRoute]:
    return [
        *root.routes,
        *health.routes,
        *vault.routes,
        *database.routes,
        *cache.routes,
        *messaging.routes,
        *redis.routes,
        *docs.docs_routes(),
    ]


def create_app(
    open_services: Callable[[], AbstractAsyncContextManager[Services]], settings: Settings
) -> Starlette:
    """Build the app. ``open_services`` is entered by the lifespan, so nothing connects before
    the server starts, and a test hands in in-memory services the same way ``bootstrap`` hands
    in live ones.
    """

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_services() as services:
            yield {"services": services, "settings": settings}

    return _OutermostMiddlewareStarlette(
        outermost=_middleware(settings),
        routes=_routes(),
        exception_handlers=exception_handlers(debug=settings.debug),
        lifespan=lifespan,
    )
