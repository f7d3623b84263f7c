"""``create_app``: the whole HTTP contract as one Starlette app over a Services bundle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import BaseRoute
from starlette.types import ExceptionHandler

from colima_ref import __version__
from colima_ref.http import docs
from colima_ref.http.errors import exception_handlers
from colima_ref.http.middleware.cors import cors_middleware
from colima_ref.http.middleware.rate_limit import RateLimitMiddleware
from colima_ref.http.middleware.request_context import RequestContextMiddleware
from colima_ref.http.middleware.request_validation import RequestValidationMiddleware
from colima_ref.http.middleware.response_cache import CachedResponses, ResponseCacheMiddleware
from colima_ref.http.readiness import Readiness
from colima_ref.http.routes import cache, database, health, messaging, metrics, redis, root, vault
from colima_ref.observability.metrics import Metrics
from colima_ref.ports.services import Services
from colima_ref.settings import Settings


def _middleware(
    settings: Settings,
    metrics: Metrics,
    responses: CachedResponses,
    internal_error: ExceptionHandler,
) -> list[Middleware]:
    """The whole middleware stack, outermost first.

    Everything sits inside the request context, which also records the HTTP metrics, so that
    its lines and error bodies carry the request id and a 429 or a CORS refusal is counted too.
    Starlette's own ServerErrorMiddleware sits outside all of these, so its 500 would miss the
    request id, the CORS and rate-limit headers, the log line and the metrics: the one at the
    end answers the 500 inside them (Starlette's then sees the response started and only
    re-raises, for the server to log the traceback).
    """
    stack = [
        Middleware(
            RequestContextMiddleware,
            debug=settings.debug,
            log_requests=settings.log_requests,
            trusted_proxies=settings.trusted_proxies,
            metrics=metrics if settings.metrics_enabled else None,
        ),
        cors_middleware(settings),
    ]
    if settings.rate_limit.enabled:
        stack.append(
            Middleware(
                RateLimitMiddleware,
                settings=settings.rate_limit,
                trusted_proxies=settings.trusted_proxies,
                on_limited=metrics.rate_limit_exceeded,
                on_storage_error=metrics.rate_limit_storage_error,
            )
        )
    stack.append(Middleware(RequestValidationMiddleware))
    if settings.response_cache_enabled:
        stack.append(
            Middleware(
                ResponseCacheMiddleware,
                on_hit=metrics.cache_hit,
                on_miss=metrics.cache_miss,
                responses=responses,
            )
        )
    stack.append(Middleware(ServerErrorMiddleware, handler=internal_error))
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
        *metrics.routes,
        *docs.docs_routes(),
    ]


def create_app(
    open_services: Callable[[], AbstractAsyncContextManager[Services]],
    settings: Settings,
    *,
    metrics: Metrics | None = None,
) -> Starlette:
    """Build the app. ``open_services`` is entered by the lifespan, so nothing connects before
    the server starts, and a test hands in in-memory services the same way ``bootstrap`` hands
    in live ones.

    ``metrics`` is where everything records; the composition root passes the one its adapters
    record into. Without it the app gets a registry of its own.

    ``app.state.response_cache`` (CachedResponses) drops cached answers while the app serves:
    ``await app.state.response_cache.invalidate("cache:/examples/vault/*")``.
    """
    recorder = metrics or Metrics(name=settings.app_name, version=__version__)
    readiness = Readiness()
    responses = CachedResponses(on_invalidated=recorder.cache_invalidated)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_services() as services:
            responses.bind(services.cache)
            readiness.phase = "ready"
            try:
                yield {"services": services, "settings": settings, "metrics": recorder}
            finally:
                readiness.phase = "draining"
                await responses.close()

    handlers = exception_handlers(debug=settings.debug)
    app = Starlette(
        routes=_routes(),
        middleware=_middleware(settings, recorder, responses, handlers[Exception]),
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.readiness = readiness
    app.state.response_cache = responses
    app.state.health_checks = health.HealthChecks.from_settings(settings)
    return app
