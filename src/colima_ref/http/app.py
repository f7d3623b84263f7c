"""``create_app``: the whole HTTP contract as one Starlette app over a Services bundle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ExceptionHandler

from colima_ref._version import __version__
from colima_ref.http import docs
from colima_ref.http.errors import exception_handlers
from colima_ref.http.middleware.cors import cors_middleware
from colima_ref.http.middleware.in_progress import RequestsInProgressMiddleware
from colima_ref.http.middleware.rate_limit import RateLimitMiddleware, RateLimits
from colima_ref.http.middleware.request_context import RequestContextMiddleware
from colima_ref.http.middleware.request_validation import (
    ControlCharacterMiddleware,
    RequestValidationMiddleware,
)
from colima_ref.http.middleware.response_cache import CachedResponses, ResponseCacheMiddleware
from colima_ref.http.readiness import Readiness
from colima_ref.http.routes import cache, database, health, index, messaging, metrics, redis, vault
from colima_ref.observability.metrics import Metrics
from colima_ref.ports.services import Services
from colima_ref.settings import HttpSettings


def _middleware(
    settings: HttpSettings, metrics: Metrics, internal_error: ExceptionHandler
) -> list[Middleware]:
    """The middleware every request passes, before the router picks a route; outermost first.

    Everything sits inside the request context, which also records the HTTP metrics, so that
    its lines and error bodies carry the request id and a 429 or a CORS refusal is counted too.
    Starlette's own ServerErrorMiddleware sits outside all of these, so its 500 would miss the
    request id, the CORS headers, the log line and the metrics: the one at the end answers the
    500 inside them (Starlette's then sees the response started and only re-raises, for the
    server to log the traceback).
    """
    return [
        Middleware(
            RequestContextMiddleware,
            debug=settings.debug,
            log_requests=settings.log_requests,
            trusted_proxies=settings.trusted_proxies,
            metrics=metrics if settings.metrics_enabled else None,
        ),
        cors_middleware(settings),
        Middleware(RequestValidationMiddleware),
        Middleware(ServerErrorMiddleware, handler=internal_error),
    ]


def _route_middleware(
    settings: HttpSettings,
    metrics: Metrics,
    rate_limits: RateLimits | None,
) -> list[Middleware]:
    """The middleware of each route, run once the router has picked it (so each one reads the
    route's template from ``scope["route"]``); outermost first."""
    stack = []
    if settings.metrics_enabled:
        stack.append(Middleware(RequestsInProgressMiddleware, metrics=metrics))
    if rate_limits is not None:
        stack.append(Middleware(RateLimitMiddleware, rate_limits=rate_limits))
    stack.append(Middleware(ControlCharacterMiddleware))
    if settings.response_cache_enabled:
        stack.append(
            Middleware(
                ResponseCacheMiddleware,
                on_hit=metrics.cache_hit,
                on_miss=metrics.cache_miss,
            )
        )
    return stack


def _with_middleware(route: BaseRoute, middleware: Sequence[Middleware]) -> BaseRoute:
    """``route`` built again, with ``middleware`` around its endpoint or mounted app."""
    if isinstance(route, Route):
        return Route(
            route.path,
            route.endpoint,
            methods=route.methods,
            name=route.name,
            include_in_schema=route.include_in_schema,
            middleware=middleware,
        )
    if isinstance(route, Mount):
        return Mount(route.path, app=route.app, name=route.name, middleware=middleware)
    raise TypeError(f"no middleware for a {type(route).__name__}")


def _routes(middleware: Sequence[Middleware]) -> list[BaseRoute]:
    routes = [
        *index.routes,
        *health.routes,
        *vault.routes,
        *database.routes,
        *cache.routes,
        *messaging.routes,
        *redis.routes,
        *metrics.routes,
        *docs.docs_routes(),
    ]
    return [_with_middleware(route, middleware) for route in routes]


def create_app(
    open_services: Callable[[], AbstractAsyncContextManager[Services]],
    settings: HttpSettings,
    *,
    metrics: Metrics | None = None,
) -> Starlette:
    """Build the app. ``open_services`` is entered by the lifespan, so nothing connects before
    the server starts, and a test hands in in-memory services the same way ``bootstrap`` hands
    in live ones.

    ``settings`` is what the edge reads (`Settings.http`): the app's state and its routes never
    see a Vault login; only ``open_services`` holds one.

    ``metrics`` is where everything records; the composition root passes the one its adapters
    record into. Without it the app gets a registry of its own.

    ``app.state.response_cache`` (CachedResponses) drops cached answers while the app serves:
    ``await app.state.response_cache.invalidate("cache:/examples/vault/*")``.
    """
    recorder = metrics or Metrics(name=settings.app_name, version=__version__)
    readiness = Readiness()
    responses = CachedResponses(on_invalidated=recorder.cache_invalidated)
    rate_limits = None
    if settings.rate_limit.enabled:
        rate_limits = RateLimits(
            settings.rate_limit,
            trusted_proxies=settings.trusted_proxies,
            on_limited=recorder.rate_limit_exceeded,
            on_storage_error=recorder.rate_limit_storage_error,
        )

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
                if rate_limits is not None:
                    await rate_limits.close()

    handlers = exception_handlers(debug=settings.debug)
    app = Starlette(
        routes=_routes(_route_middleware(settings, recorder, rate_limits)),
        middleware=_middleware(settings, recorder, handlers[Exception]),
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.readiness = readiness
    app.state.response_cache = responses
    app.state.health_checks = health.HealthChecks.from_settings(settings)
    return app
