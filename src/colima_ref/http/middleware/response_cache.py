"""Response caching over the Cache port, for the routes whose answers may be a little stale.

Keys read ``cache:<route template>:<path params>?<sorted query>``. Every template starts with
``/``, a character user keys of /examples/cache never contain, so the two never collide; past
200 characters the params part is MD5-hashed while the template stays readable, so pattern
invalidation (``cache:/examples/vault/*``) still finds hashed keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import structlog
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colima_ref.domain.errors import ServiceUnavailableError
from colima_ref.domain.errors import TimeoutError as OperationTimeoutError
from colima_ref.http.route_match import match_route
from colima_ref.ports.cache import Cache

NAMESPACE = "cache:"
MAX_KEY_LENGTH = 200
CACHE_CALL_TIMEOUT = 0.5  # seconds; a slow cache must cost less than the backend call it saves
MAX_CACHED_BODY = 1024 * 1024
DEFAULT_TTLS: Mapping[str, int] = {
    "/examples/vault/secret/{service_name}": 300,
    "/examples/vault/secret/{service_name}/{key}": 300,
    "/health/all": 30,
}
CACHE_HEADER = "X-Cache"

# Cache outages: the port's errors, plus our own timeout around each call.
_OUTAGE = (ServiceUnavailableError, OperationTimeoutError, TimeoutError)

_log = structlog.get_logger("colima_ref.http.response_cache")


def cache_key(template: str, path_params: Mapping[str, Any], query_string: bytes) -> str:
    """The cache key of one response: template, path params and sorted query params."""
    path = "&".join(f"{name}={path_params[name]}" for name in sorted(path_params))
    query = urlencode(sorted(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)))
    params = f"{path}?{query}"
    key = f"{NAMESPACE}{template}:{params}"
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.md5(params.encode(), usedforsecurity=False).hexdigest()
    return f"{NAMESPACE}{template}:md5={digest}"


def _ignore(_: str) -> None:
    return None


class ResponseCacheMiddleware:
    """Serves GETs of the routes in ``ttls`` from the cache, and caches their 200 answers.

    What is cached is the body the endpoint sent, so a secret is stored only as masked as
    the client saw it. Concurrent misses of one key wait for one computation (single flight).
    A cache that fails or is slow is treated as a miss and the answer is served uncached.
    Responses of cached routes carry ``X-Cache: HIT`` or ``MISS``. The cache is the
    ``services.cache`` of the app's lifespan state.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        ttls: Mapping[str, int] = DEFAULT_TTLS,
        on_hit: Callable[[str], None] = _ignore,
        on_miss: Callable[[str], None] = _ignore,
        on_invalidated: Callable[[str], None] = _ignore,
    ) -> None:
        self.app = app
        self.ttls = dict(ttls)
        self.on_hit = on_hit
        self.on_miss = on_miss
        self.on_invalidated = on_invalidated
        self._in_flight: dict[str, asyncio.Future[str | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        template, path_params = match_route(scope)
        ttl = self.ttls.get(template)
        if ttl is None:
            await self.app(scope, receive, send)
            return
        cache: Cache = scope["state"]["services"].cache
        key = cache_key(template, path_params, scope.get("query_string", b""))

        leader = self._in_flight.get(key)
        if leader is not None:
            stored = await asyncio.shield(leader)
            if stored is not None:
                self.on_hit(template)
                await _replay(stored, scope, receive, send)
                return
            # The leader got no cacheable answer, so this request asks for itself.
            self.on_miss(template)
            await self.app(scope, receive, _marking(send, "MISS"))
            return

        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            stored = await self._get(cache, key)
            if stored is None:
                self.on_miss(template)
                stored = await self._compute(scope, receive, send)
                if stored is not None:
                    await self._set(cache, key, stored, ttl)
            else:
                self.on_hit(template)
                await _replay(stored, scope, receive, send)
            future.set_result(stored)
        finally:
            del self._in_flight[key]
            if not future.done():
                future.set_result(None)

    async def invalidate(self, cache: Cache, pattern: str) -> int:
        """Delete the cached responses whose keys match the glob ``pattern`` (``cache:/health/*``).

        Returns how many went; 0 when the cache is down, since what it holds then expires anyway.
        """
        try:
            deleted = await asyncio.wait_for(cache.delete_matching(pattern), CACHE_CALL_TIMEOUT)
        except _OUTAGE as exc:
            _log.warning("response cache invalidation failed", error_type=type(exc).__name__)
            return 0
        self.on_invalidated(pattern)
        return deleted

    async def _compute(self, scope: Scope, receive: Receive, send: Send) -> str | None:
        status = 0
        content_type: str | None = None
        chunks: list[bytes] = []
        size = 0

        async def capturing_send(message: Message) -> None:
            nonlocal status, content_type, size
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                content_type = headers.get("content-type")
                headers[CACHE_HEADER] = "MISS"
            elif message["type"] == "http.response.body" and status == 200:
                body: bytes = message.get("body", b"")
                size += len(body)
                if size <= MAX_CACHED_BODY:
                    chunks.append(body)
            await send(message)

        await self.app(scope, receive, capturing_send)
        if status != 200 or size > MAX_CACHED_BODY:
            return None
        try:
            text = b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError:
            return None
        return json.dumps({"content_type": content_type, "body": text})

    async def _get(self, cache: Cache, key: str) -> str | None:
        try:
            entry = await asyncio.wait_for(cache.get(key), CACHE_CALL_TIMEOUT)
        except _OUTAGE as exc:
            _log.warning(
                "response cache unavailable, serving uncached", error_type=type(exc).__name__
            )
            return None
        if entry is None:
            return None
        try:
            cached = json.loads(entry.value)
        except ValueError:
            cached = None
        if not isinstance(cached, dict) or not isinstance(cached.get("body"), str):
            # Not something this middleware wrote: recompute rather than replay it.
            return None
        return entry.value

    async def _set(self, cache: Cache, key: str, stored: str, ttl: int) -> None:
        try:
            await asyncio.wait_for(cache.set(key, stored, ttl), CACHE_CALL_TIMEOUT)
        except _OUTAGE as exc:
            _log.warning(
                "response cache unavailable, answer not cached", error_type=type(exc).__name__
            )


async def _replay(stored: str, scope: Scope, receive: Receive, send: Send) -> None:
    cached = json.loads(stored)
    headers = {CACHE_HEADER: "HIT"}
    if cached["content_type"]:
        headers["content-type"] = cached["content_type"]
    response = Response(cached["body"], status_code=200, headers=headers)
    await response(scope, receive, send)


def _marking(send: Send, value: str) -> Send:
    async def marked(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message)[CACHE_HEADER] = value
        await send(message)

    return marked
