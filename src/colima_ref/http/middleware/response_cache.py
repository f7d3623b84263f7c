"""Response caching over the Cache port, for the routes whose answers may be a little stale.

Keys read ``cache:<route template>:<path params>?<sorted query>``, where the query holds only
the parameters the route declares: a junk parameter neither splits a route's entry nor fills the
cache with one entry per query string. Every template starts with
``/``, a character user keys of /examples/cache never contain, so the two never collide; past
200 characters the params part is MD5-hashed while the template stays readable, so pattern
invalidation (``cache:/examples/vault/*``) still finds hashed keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import attrs
import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colima_ref.domain.errors import OperationTimeoutError, ServiceUnavailableError
from colima_ref.http.middleware.near_cache import NEAR_TTL, NearCache
from colima_ref.http.route_match import match_route
from colima_ref.ports.cache import Cache

NAMESPACE = "cache:"
MAX_KEY_LENGTH = 200
CACHE_CALL_TIMEOUT = 0.5  # seconds; a slow cache must cost less than the backend call it saves
MAX_CACHED_BODY = 1024 * 1024
# Only answers that are the same whichever process gives them: a health report is not
# (routes/health.py keeps its own, in process).
DEFAULT_TTLS: Mapping[str, int] = {
    "/examples/vault/secret/{service_name}": 300,
    "/examples/vault/secret/{service_name}/{key}": 300,
}
CACHE_HEADER = "X-Cache"
# What a rotated credential may make stale: the Vault routes show a secret's harmless fields
# (user, host, port...) in clear. All of them, because a long key keeps only its route.
VAULT_RESPONSES = f"{NAMESPACE}/examples/vault/*"

# Cache outages: the port's errors, plus our own timeout around each call.
_OUTAGE = (ServiceUnavailableError, OperationTimeoutError, TimeoutError)

_log = structlog.get_logger("colima_ref.http.response_cache")


def cache_key(
    template: str,
    path_params: Mapping[str, Any],
    query_string: bytes = b"",
    declared: Collection[str] = (),
) -> str:
    """The cache key of one response: template, path params and the sorted query params the
    route ``declared``; any other query param is left out."""
    path = "&".join(f"{name}={path_params[name]}" for name in sorted(path_params))
    query = ""
    if declared and query_string:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
        query = urlencode(sorted(pair for pair in pairs if pair[0] in declared))
    params = f"{path}?{query}"
    key = f"{NAMESPACE}{template}:{params}"
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.md5(params.encode(), usedforsecurity=False).hexdigest()
    return f"{NAMESPACE}{template}:md5={digest}"


def _ignore(_: str) -> None:
    return None


@attrs.frozen
class CachedResponse:
    """A cached 200: what the cache stores (JSON text) and what a hit sends (ASGI messages)."""

    content_type: str | None
    body: bytes
    _headers: tuple[tuple[bytes, bytes], ...] = attrs.field(init=False, eq=False, repr=False)

    @_headers.default
    def _encode_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        headers = [(b"content-length", b"%d" % len(self.body)), (b"x-cache", b"HIT")]
        if self.content_type:
            headers.append((b"content-type", self.content_type.encode("latin-1")))
        return tuple(headers)

    def stored(self) -> str:
        """The cache entry: JSON with the content type and the body as text."""
        return json.dumps({"content_type": self.content_type, "body": self.body.decode()})

    @classmethod
    def from_stored(cls, stored: str) -> CachedResponse | None:
        """The response a cache entry holds, or None for a value this middleware did not write."""
        try:
            cached = json.loads(stored)
        except ValueError:
            return None
        if not isinstance(cached, dict) or not isinstance(cached.get("body"), str):
            return None
        content_type = cached.get("content_type")
        return cls(content_type if isinstance(content_type, str) else None, cached["body"].encode())

    async def replay(self, send: Send) -> None:
        """Send this response as a HIT. Raw messages: a Response object per hit cost ~3 us."""
        # A fresh list: a layer outside may edit the headers of the message in place.
        await send({"type": "http.response.start", "status": 200, "headers": list(self._headers)})
        await send({"type": "http.response.body", "body": self.body})


@attrs.define
class CachedResponses:
    """The answers the response cache keeps, as the app drops them: ``app.state.response_cache``.

    They live in two places: the shared cache (the services' ``cache``, bound while the app's
    lifespan runs) and this process's near copies, kept ``near_ttl`` seconds (none at 0).
    ``invalidate`` empties both of what matches.
    """

    near_ttl: float = NEAR_TTL
    on_invalidated: Callable[[str], None] = _ignore
    near: NearCache[CachedResponse] | None = attrs.field(init=False)
    _cache: Cache | None = attrs.field(default=None, init=False, repr=False)
    _pending: set[asyncio.Task[int]] = attrs.field(factory=set, init=False, repr=False)

    @near.default
    def _near_copies(self) -> NearCache[CachedResponse] | None:
        return NearCache(ttl=self.near_ttl) if self.near_ttl > 0 else None

    def bind(self, cache: Cache) -> None:
        """Use ``cache`` as the shared cache from now on (the lifespan binds the services' one)."""
        self._cache = cache

    async def close(self) -> None:
        """Finish the invalidations in flight and let go of the shared cache."""
        if self._pending:
            await asyncio.gather(*self._pending)
        self._cache = None

    async def invalidate(self, pattern: str) -> int:
        """Delete the cached responses whose keys match the glob ``pattern`` (``cache:/health/*``).

        Returns how many went from the bound shared cache; 0 when it is down or none is bound,
        since what it holds then expires anyway. This process's near copies go in any case.
        Counted by pattern when the shared cache took the deletion.
        """
        if self.near is not None:
            self.near.discard_matching(pattern)
        shared = self._cache
        if shared is None:
            return 0
        try:
            async with asyncio.timeout(CACHE_CALL_TIMEOUT):
                deleted = await shared.delete_matching(pattern)
        except _OUTAGE as exc:
            _log.warning("response cache invalidation failed", error_type=type(exc).__name__)
            return 0
        self.on_invalidated(pattern)
        _log.info("response cache invalidated", pattern=pattern, deleted=deleted)
        return deleted

    def invalidate_soon(self, pattern: str) -> None:
        """``invalidate`` in a task of its own, for a caller that cannot wait (a callback)."""
        task = asyncio.get_running_loop().create_task(self.invalidate(pattern))
        # Held until done: the loop keeps only a weak reference to a task.
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


class ResponseCacheMiddleware:
    """Serves GETs of the routes in ``ttls`` from the cache, and caches their 200 answers.

    What is cached is the body the endpoint sent, so a secret is stored only as masked as
    the client saw it. Concurrent misses of one key wait for one computation (single flight).
    A cache that fails or is slow is treated as a miss and the answer is served uncached.
    Responses of cached routes carry ``X-Cache: HIT`` or ``MISS``. The cache is the
    ``services.cache`` of the app's lifespan state. ``query_params`` names the query parameters
    a cached route's answer depends on (none when it is not listed); only they are in its key.

    In front of it, each process keeps what it served for up to ``near_ttl`` seconds
    (`NearCache`): a hit then costs no round trip to the cache, and another process's
    invalidation reaches this one at most ``near_ttl`` later. ``near_ttl=0`` turns that off.
    Given ``responses``, the middleware keeps its near copies there (``near_ttl`` and
    ``on_invalidated`` are then theirs), so that the app can invalidate what it serves.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        ttls: Mapping[str, int] = DEFAULT_TTLS,
        query_params: Mapping[str, Collection[str]] | None = None,
        near_ttl: float = NEAR_TTL,
        on_hit: Callable[[str], None] = _ignore,
        on_miss: Callable[[str], None] = _ignore,
        on_invalidated: Callable[[str], None] = _ignore,
        responses: CachedResponses | None = None,
    ) -> None:
        self.app = app
        self.ttls = dict(ttls)
        self.query_params = {
            template: frozenset(names) for template, names in (query_params or {}).items()
        }
        self.on_hit = on_hit
        self.on_miss = on_miss
        self.responses = responses or CachedResponses(near_ttl, on_invalidated)
        self._near = self.responses.near
        self._in_flight: dict[str, asyncio.Future[CachedResponse | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        template, path_params = match_route(scope)
        ttl = self.ttls.get(template)
        if ttl is None:
            await self.app(scope, receive, send)
            return
        key = cache_key(
            template,
            path_params,
            scope.get("query_string", b""),
            self.query_params.get(template, ()),
        )
        near = self._near.get(key) if self._near is not None else None
        if near is not None:
            self.on_hit(template)
            await near.replay(send)
            return

        leader = self._in_flight.get(key)
        if leader is not None:
            cached = await asyncio.shield(leader)
            if cached is not None:
                self.on_hit(template)
                await cached.replay(send)
                return
            # The leader got no cacheable answer, so this request asks for itself.
            self.on_miss(template)
            await self.app(scope, receive, _marking(send, "MISS"))
            return

        cache: Cache = scope["state"]["services"].cache
        future: asyncio.Future[CachedResponse | None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            cached = await self._get(cache, key)
            if cached is None:
                self.on_miss(template)
                cached = await self._compute(scope, receive, send)
                if cached is not None and await self._set(cache, key, cached, ttl):
                    self._keep_near(key, cached, ttl)
            else:
                self.on_hit(template)
                await cached.replay(send)
                self._keep_near(key, cached, ttl)
            future.set_result(cached)
        finally:
            del self._in_flight[key]
            if not future.done():
                future.set_result(None)

    async def _compute(self, scope: Scope, receive: Receive, send: Send) -> CachedResponse | None:
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
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return CachedResponse(content_type, body)

    async def _get(self, cache: Cache, key: str) -> CachedResponse | None:
        try:
            # asyncio.timeout, not wait_for: wait_for runs the call in a task of its own.
            async with asyncio.timeout(CACHE_CALL_TIMEOUT):
                entry = await cache.get(key)
        except _OUTAGE as exc:
            _log.warning(
                "response cache unavailable, serving uncached", error_type=type(exc).__name__
            )
            return None
        # Not something this middleware wrote: recompute rather than replay it.
        return None if entry is None else CachedResponse.from_stored(entry.value)

    async def _set(self, cache: Cache, key: str, cached: CachedResponse, ttl: int) -> bool:
        try:
            async with asyncio.timeout(CACHE_CALL_TIMEOUT):
                await cache.set(key, cached.stored(), ttl)
        except _OUTAGE as exc:
            _log.warning(
                "response cache unavailable, answer not cached", error_type=type(exc).__name__
            )
            return False
        return True

    def _keep_near(self, key: str, cached: CachedResponse, ttl: int) -> None:
        # Only what the shared cache holds: during its outage every answer is computed afresh.
        if self._near is not None:
            self._near.put(key, cached, ttl)


def _marking(send: Send, value: str) -> Send:
    async def marked(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message)[CACHE_HEADER] = value
        await send(message)

    return marked
