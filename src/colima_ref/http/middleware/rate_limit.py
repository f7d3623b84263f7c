"""Rate limits per client IP and route template, counted by each route's middleware.

A `limits` strategy (RATE_LIMIT_STRATEGY) counts each request in the storage that
RATE_LIMIT_STORAGE_URL names. Headers: ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset``
(epoch seconds: when limits' window stats expect the count to drop), and the IETF draft pair
``RateLimit-Policy: "default";q=100;w=60`` / ``RateLimit: "default";r=99;t=60``
(draft-ietf-httpapi-ratelimit-headers-09 structured fields), on every limited response.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import attrs
import limits
import structlog
from limits.aio.storage import Storage
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.util import WindowStats
from redis.asyncio import ConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colima_ref.http.client_ip import IPNetwork, client_ip
from colima_ref.http.errors import error_response
from colima_ref.settings import RateLimitSettings

STORAGE_ERROR_LOG_INTERVAL = 60.0  # seconds

_STRATEGIES: dict[str, type[RateLimiter]] = {
    "moving-window": MovingWindowRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}

_log = structlog.get_logger("colima_ref.http.rate_limit")


@attrs.frozen
class Policy:
    """A named limit; the name is the IETF header's policy name."""

    name: str
    item: limits.RateLimitItem

    def headers(self, stats: WindowStats, reset_after: int) -> list[tuple[bytes, bytes]]:
        """Every rate-limit header of a response, as ASGI header pairs."""
        amount, window = self.item.amount, self.item.get_expiry()
        return [
            (b"x-ratelimit-limit", b"%d" % amount),
            (b"x-ratelimit-remaining", b"%d" % stats.remaining),
            (b"x-ratelimit-reset", b"%d" % math.ceil(stats.reset_time)),
            (b"ratelimit-policy", f'"{self.name}";q={amount};w={window}'.encode()),
            (b"ratelimit", f'"{self.name}";r={stats.remaining};t={reset_after}'.encode()),
        ]


@attrs.frozen
class PolicyTable:
    """Which limit a route template gets: health routes, /metrics, and everything else."""

    default: Policy
    health: Policy
    metrics: Policy

    @classmethod
    def from_settings(cls, settings: RateLimitSettings) -> PolicyTable:
        return cls(
            default=Policy("default", limits.parse(settings.default)),
            health=Policy("health", limits.parse(settings.health)),
            metrics=Policy("metrics", limits.parse(settings.metrics)),
        )

    def for_route(self, template: str) -> Policy:
        if template == "/health" or template.startswith("/health/"):
            return self.health
        if template == "/metrics":
            return self.metrics
        return self.default


def open_storage(settings: RateLimitSettings) -> tuple[Storage, ConnectionPool | None]:
    """The async storage RATE_LIMIT_STORAGE_URL names, and the pool to close when done.

    Redis goes through redis-py (``implementation="redispy"``): the coredis default is not
    installed, and the ``limits[redis]`` extra would downgrade redis. A standalone Redis gets
    a pool of ours, since limits' storages have no close; a cluster storage takes no pool, so
    its connections end with the process. Nothing connects here.
    """
    url = settings.storage_url
    pool = None
    if url.partition("://")[0].lower() in ("redis", "rediss"):
        pool = ConnectionPool.from_url(url)
    storage = storage_from_string(
        "async+" + url,
        implementation="redispy",
        key_prefix=settings.key_prefix,
        wrap_exceptions=True,
        # Documented by limits' RedisStorage, though its type hints allow scalar options only.
        **({"connection_pool": pool} if pool is not None else {}),  # type: ignore[arg-type]
    )
    assert isinstance(storage, Storage)
    return storage, pool


def _ignore(*_: object) -> None:
    return None


class RateLimits:
    """What every route's RateLimitMiddleware of one app counts in: the policies, one `limits`
    strategy and its storage.

    When the storage fails the request passes unlimited (fail open): a broken limiter must
    not take the API down. That is logged at most once per ``STORAGE_ERROR_LOG_INTERVAL``
    and reported to ``on_storage_error`` every time. ``on_limited(endpoint)`` is called for
    every 429. ``close`` (the app's lifespan calls it) lets go of a storage opened here; one
    passed in belongs to the caller.
    """

    def __init__(
        self,
        settings: RateLimitSettings,
        *,
        trusted_proxies: Sequence[IPNetwork] = (),
        storage: Storage | None = None,
        on_limited: Callable[[str], None] = _ignore,
        on_storage_error: Callable[[], None] = _ignore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policies = PolicyTable.from_settings(settings)
        self._pool: ConnectionPool | None = None
        if storage is None:
            storage, self._pool = open_storage(settings)
        self.limiter = _STRATEGIES[settings.strategy](storage)
        self.trusted_proxies = tuple(trusted_proxies)
        self.on_limited = on_limited
        self.on_storage_error = on_storage_error
        self.clock = clock
        self._last_error_logged = -math.inf

    async def close(self) -> None:
        """Close the connections of a storage opened here."""
        if self._pool is not None:
            await self._pool.aclose()

    def storage_failed(self, exc: StorageError) -> None:
        self.on_storage_error()
        now = time.monotonic()
        if now - self._last_error_logged >= STORAGE_ERROR_LOG_INTERVAL:
            self._last_error_logged = now
            _log.warning(
                "rate limit storage unavailable, requests pass unlimited",
                error_type=type(exc.storage_error).__name__,
            )


class RateLimitMiddleware:
    """Route-level middleware: counts each request against its route's policy in ``limits``
    and answers 429 once the limit is spent.

    The route is the one Starlette's router picked (``scope["route"]``): each route template
    has its own counter per client, shared by all the paths it matches. The router answers a
    path no route has (404) or a method its route does not take (405) before any route's
    middleware runs, so neither costs quota.
    """

    def __init__(self, app: ASGIApp, *, rate_limits: RateLimits) -> None:
        self.app = app
        self.rate_limits = rate_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        shared = self.rate_limits
        template: str = scope["route"].path
        policy = shared.policies.for_route(template)
        client = client_ip(scope, shared.trusted_proxies)
        try:
            allowed = await shared.limiter.hit(policy.item, client, template)
            stats = await shared.limiter.get_window_stats(policy.item, client, template)
        except StorageError as exc:
            shared.storage_failed(exc)
            await self.app(scope, receive, send)
            return

        reset_after = max(0, math.ceil(stats.reset_time - shared.clock()))
        headers = policy.headers(stats, reset_after)
        if allowed:
            await self.app(scope, receive, _sending_headers(send, headers))
            return
        shared.on_limited(template)
        response = error_response(
            scope.get("state", {}).get("request_id"),
            error="RateLimitError",
            message=limit_exceeded(policy.item),
            status_code=429,
            details={"limit": str(policy.item), "endpoint": template},
            headers={
                **{name.decode(): value.decode() for name, value in headers},
                "retry-after": str(reset_after),
            },
        )
        await response(scope, receive, send)


def limit_exceeded(item: limits.RateLimitItem) -> str:
    """The message of the 429 for a client past ``item``."""
    return f"Rate limit exceeded: {item.amount} per {item.get_expiry()} seconds"


def _sending_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers
