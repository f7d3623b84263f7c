"""Rate limits per client IP and route template, answered before routing.

Headers: ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (epoch seconds), and the IETF
draft pair ``RateLimit-Policy: "default";q=100;w=60`` / ``RateLimit: "default";r=99;t=60``
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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colima_ref.http.client_ip import IPNetwork, client_ip
from colima_ref.http.errors import error_response
from colima_ref.http.middleware.moving_window import MovingWindowMemoryStorage
from colima_ref.http.route_match import match_route
from colima_ref.settings import RateLimitSettings

STORAGE_ERROR_LOG_INTERVAL = 60.0  # seconds

RawHeaders = list[tuple[bytes, bytes]]

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
    # What depends on the policy alone, computed and encoded once instead of per request.
    expiry: int = attrs.field(init=False, eq=False, repr=False)
    _limit_header: tuple[bytes, bytes] = attrs.field(init=False, eq=False, repr=False)
    _policy_header: tuple[bytes, bytes] = attrs.field(init=False, eq=False, repr=False)
    _ratelimit_prefix: bytes = attrs.field(init=False, eq=False, repr=False)

    @expiry.default
    def _window_seconds(self) -> int:
        return self.item.get_expiry()

    @_limit_header.default
    def _encode_limit_header(self) -> tuple[bytes, bytes]:
        return (b"x-ratelimit-limit", b"%d" % self.item.amount)

    @_policy_header.default
    def _encode_policy_header(self) -> tuple[bytes, bytes]:
        policy = f'"{self.name}";q={self.item.amount};w={self.expiry}'
        return (b"ratelimit-policy", policy.encode())

    @_ratelimit_prefix.default
    def _encode_ratelimit_prefix(self) -> bytes:
        return f'"{self.name}";'.encode()

    def headers(self, remaining: int, reset_time: float, reset_after: int) -> RawHeaders:
        """Every rate-limit header of a response, as ASGI header pairs."""
        return [
            self._limit_header,
            self._policy_header,
            (b"x-ratelimit-remaining", b"%d" % remaining),
            (b"x-ratelimit-reset", b"%d" % math.ceil(reset_time)),
            (b"ratelimit", self._ratelimit_prefix + b"r=%d;t=%d" % (remaining, reset_after)),
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


def open_storage(settings: RateLimitSettings) -> Storage:
    """The async storage RATE_LIMIT_STORAGE_URL names (memory: `MovingWindowMemoryStorage`).

    Redis goes through redis-py (``implementation="redispy"``): the coredis default is not
    installed, and the ``limits[redis]`` extra would downgrade redis. Nothing connects here.
    """
    if settings.storage_url.lower().startswith("memory"):
        return MovingWindowMemoryStorage(wrap_exceptions=True)
    storage = storage_from_string(
        "async+" + settings.storage_url,
        implementation="redispy",
        key_prefix=settings.key_prefix,
        wrap_exceptions=True,
    )
    assert isinstance(storage, Storage)
    return storage


async def close_storage(storage: Storage) -> None:
    """Close the redis-py client behind a Redis storage; memory storage has nothing to close."""
    bridge = getattr(storage, "bridge", None)
    client = getattr(bridge, "storage", None)
    if client is not None:
        await client.aclose()


def _ignore(*_: object) -> None:
    return None


class RateLimitMiddleware:
    """Counts each request against its route's policy; answers 429 once the limit is spent.

    When the storage fails the request passes unlimited (fail open): a broken limiter must
    not take the API down. That is logged at most once per ``STORAGE_ERROR_LOG_INTERVAL``
    and reported to ``on_storage_error`` every time. ``on_limited(endpoint)`` is called for
    every 429. The storage is closed when the app's lifespan shuts down.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: RateLimitSettings,
        trusted_proxies: Sequence[IPNetwork] = (),
        storage: Storage | None = None,
        on_limited: Callable[[str], None] = _ignore,
        on_storage_error: Callable[[], None] = _ignore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.policies = PolicyTable.from_settings(settings)
        self.storage = storage if storage is not None else open_storage(settings)
        self.limiter = _STRATEGIES[settings.strategy](self.storage)
        self._memory_window = (
            self.storage
            if isinstance(self.storage, MovingWindowMemoryStorage)
            and isinstance(self.limiter, MovingWindowRateLimiter)
            else None
        )
        self.trusted_proxies = tuple(trusted_proxies)
        self.on_limited = on_limited
        self.on_storage_error = on_storage_error
        self.clock = clock
        self._last_error_logged = -math.inf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        template, _ = match_route(scope)
        policy = self.policies.for_route(template)
        client = client_ip(scope, self.trusted_proxies)
        memory = self._memory_window
        try:
            if memory is not None:
                # One synchronous call instead of the strategy's awaited hit + get_window_stats,
                # which also build limits' key twice: half of the limiter's cost per request.
                # The key only has to be unique inside this storage, which only this writes to.
                item = policy.item
                allowed, start, count = memory.hit(
                    f"{policy.name}/{client}/{template}", item.amount, policy.expiry
                )
                remaining, reset_time = item.amount - count, start + policy.expiry
            else:
                allowed, remaining, reset_time = await self._hit(policy.item, client, template)
        except StorageError as exc:
            self._storage_failed(exc)
            await self.app(scope, receive, send)
            return

        reset_after = max(0, math.ceil(reset_time - self.clock()))
        headers = policy.headers(remaining, reset_time, reset_after)
        if not allowed:
            self.on_limited(template)
            request_id = scope.get("state", {}).get("request_id")
            response = error_response(
                request_id,
                error="RateLimitError",
                message=f"Rate limit exceeded: {policy.item.amount} per {policy.expiry} seconds",
                status_code=429,
                details={"limit": str(policy.item), "endpoint": template},
                headers={
                    **{name.decode(): value.decode() for name, value in headers},
                    "Retry-After": str(reset_after),
                },
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, _with_headers(send, headers))

    async def _hit(
        self, item: limits.RateLimitItem, client: str, template: str
    ) -> tuple[bool, int, float]:
        """Count one hit: whether it is allowed, what remains, and when the window resets."""
        allowed = await self.limiter.hit(item, client, template)
        stats = await self.limiter.get_window_stats(item, client, template)
        return allowed, stats.remaining, stats.reset_time

    def _storage_failed(self, exc: StorageError) -> None:
        self.on_storage_error()
        now = time.monotonic()
        if now - self._last_error_logged >= STORAGE_ERROR_LOG_INTERVAL:
            self._last_error_logged = now
            _log.warning(
                "rate limit storage unavailable, requests pass unlimited",
                error_type=type(exc.storage_error).__name__,
            )

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def send_closing(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await close_storage(self.storage)
            await send(message)

        return send_closing


def _with_headers(send: Send, headers: RawHeaders) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers
