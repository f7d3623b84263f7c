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
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

import attrs
import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colima_ref.domain.errors import OperationTimeoutError, ServiceUnavailableError
from colima_ref.domain.shared_runs import SharedRuns
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
        """Send this response as a HIT."""
        # A fresh list: a layer outside may edit the headers of the message in place.
        await send({"type": "http.response.start", "status": 200, "headers": list(self._headers)})
        await send({"type": "http.response.body", "body": self.body})


@attrs.define
class CachedResponses:
    """The answers the response cache keeps, as the app drops them: ``app.state.response_cache``.

    They live in the shared cache (the services' ``cache``, bound while the app's lifespan runs).
    """

    on_invalidated: Callable[[str], None] = _ignore
    _cache: Cache | None = attrs.field(default=None, init=False, repr=False)
    _pending: set[asyncio.Task[int]] = attrs.field(factory=set, init=False, repr=False)

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

        Returns how many went; 0 when the shared cache is down or none is bound, since what it
        holds then expires anyway. Counted by pattern when the shared cache took the deletion.
        """
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


@attrs.frozen
class _Computed:
    """What the app answered the request ``computed_for``: the messages it sent (and the
    exception it raised), and the response hits may replay (None: nothing to share)."""

    computed_for: Scope
    messages: Sequence[Message]
    shared: CachedResponse | None
    error: Exception | None = None


@attrs.define
class _Recorder:
    """Keeps what the app sends, marked as a MISS."""

    messages: list[Message] = attrs.Factory(list)

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message)[CACHE_HEADER] = "MISS"
        self.messages.append(message)

    def cacheable(self) -> CachedResponse | None:
        """The response to cache: a whole 200 of at most MAX_CACHED_BODY bytes of UTF-8."""
        if not self.messages or self.messages[0].get("status") != 200:
            return None
        body = b"".join(message.get("body", b"") for message in self.messages[1:])
        if len(body) > MAX_CACHED_BODY:
            return None
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        content_type = MutableHeaders(scope=self.messages[0]).get("content-type")
        return CachedResponse(content_type, body)


class ResponseCacheMiddleware:
    """Route-level middleware: serves GETs of the routes in ``ttls`` (by the template of the
    route Starlette's router picked, ``scope["route"]``) from the cache, and caches their 200
    answers.

    What is cached is the body the endpoint sent, so a secret is stored only as masked as
    the client saw it. Misses of one key that overlap share one computation (`SharedRuns`):
    the request that started it gets the app's answer as a MISS, the others get it as a HIT,
    or ask the app themselves when it is not cacheable (an error names its own request). The
    answer is buffered whole before it is sent, as cached routes answer small JSON bodies.
    A cache that fails or is slow is treated as a miss and the answer is served uncached.
    Responses of cached routes carry ``X-Cache: HIT`` or ``MISS``. The cache is the
    ``services.cache`` of the app's lifespan state. ``query_params`` names the query parameters
    a cached route's answer depends on (none when it is not listed); only they are in its key.
    What it caches is dropped through `CachedResponses`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        ttls: Mapping[str, int] = DEFAULT_TTLS,
        query_params: Mapping[str, Collection[str]] | None = None,
        on_hit: Callable[[str], None] = _ignore,
        on_miss: Callable[[str], None] = _ignore,
    ) -> None:
        self.app = app
        self.ttls = dict(ttls)
        self.query_params = {
            template: frozenset(names) for template, names in (query_params or {}).items()
        }
        self.on_hit = on_hit
        self.on_miss = on_miss
        self._misses: SharedRuns[str, _Computed] = SharedRuns()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        template: str = scope["route"].path
        ttl = self.ttls.get(template)
        if ttl is None:
            await self.app(scope, receive, send)
            return
        key = cache_key(
            template,
            scope["path_params"],
            scope.get("query_string", b""),
            self.query_params.get(template, ()),
        )
        cache: Cache = scope["state"]["services"].cache
        cached = await self._get(cache, key)
        if cached is None:
            computed = await self._misses.call(key, self._compute, cache, key, ttl, scope, receive)
            if computed.computed_for is scope:
                self.on_miss(template)
                for message in computed.messages:
                    await send(message)
                if computed.error is not None:
                    raise computed.error
                return
            cached = computed.shared
            if cached is None:
                self.on_miss(template)
                await self.app(scope, receive, _marking(send, "MISS"))
                return
        self.on_hit(template)
        await cached.replay(send)

    async def _compute(
        self, cache: Cache, key: str, ttl: int, scope: Scope, receive: Receive
    ) -> _Computed:
        recorder = _Recorder()
        try:
            await self.app(scope, receive, recorder.send)
        except Exception as exc:  # noqa: BLE001 - raised again in the request it belongs to
            return _Computed(scope, recorder.messages, None, exc)
        cached = recorder.cacheable()
        if cached is not None:
            await self._set(cache, key, cached, ttl)
        return _Computed(scope, recorder.messages, cached)

    async def _get(self, cache: Cache, key: str) -> CachedResponse | None:
        try:
            async with asyncio.timeout(CACHE_CALL_TIMEOUT):
                entry = await cache.get(key)
        except _OUTAGE as exc:
            _log.warning(
                "response cache unavailable, serving uncached", error_type=type(exc).__name__
            )
            return None
        # Not something this middleware wrote: recompute rather than replay it.
        return None if entry is None else CachedResponse.from_stored(entry.value)

    async def _set(self, cache: Cache, key: str, cached: CachedResponse, ttl: int) -> None:
        try:
            async with asyncio.timeout(CACHE_CALL_TIMEOUT):
                await cache.set(key, cached.stored(), ttl)
        except _OUTAGE as exc:
            _log.warning(
                "response cache unavailable, answer not cached", error_type=type(exc).__name__
            )


def _marking(send: Send, value: str) -> Send:
    async def marked(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message)[CACHE_HEADER] = value
        await send(message)

    return marked
