"""Response caching: hits and misses, TTLs, masking, outages, single flight and invalidation."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message

from colima_ref.adapters import memory
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.adapters.memory.cache import InMemoryCache
from colima_ref.http.middleware.response_cache import (
    VAULT_RESPONSES,
    CachedResponses,
    ResponseCacheMiddleware,
    cache_key,
)
from colima_ref.ports.services import Services

SECRET = "/examples/vault/secret/postgres"
SECRET_TEMPLATE = "/examples/vault/secret/{service_name}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> InMemoryCache:
    return InMemoryCache(clock=clock)


@pytest.fixture
def cached_services(cache: InMemoryCache) -> Services:
    return attrs.evolve(memory.services(), cache=cache)


@pytest.fixture
def cached_client(make_client: Any, cached_services: Services) -> TestClient:
    client: TestClient = make_client(cached_services)
    return client


def test_a_second_read_of_a_secret_is_served_from_the_cache(cached_client: TestClient) -> None:
    first = cached_client.get(SECRET)
    second = cached_client.get(SECRET)

    assert (first.status_code, first.headers["X-Cache"]) == (200, "MISS")
    assert (second.status_code, second.headers["X-Cache"]) == (200, "HIT")
    assert second.json() == first.json()
    assert second.headers["content-type"] == "application/json"
    assert second.headers["X-Request-ID"] != first.headers["X-Request-ID"]


async def test_the_cache_holds_the_masked_secret_never_the_raw_password(
    cached_client: TestClient, cached_services: Services, cache: InMemoryCache
) -> None:
    password = (await cached_services.secrets.read("postgres")).data["password"]

    cached_client.get(SECRET)
    entry = await cache.get(cache_key(SECRET_TEMPLATE, {"service_name": "postgres"}, b""))

    assert entry is not None
    assert password not in entry.value
    assert "***" in entry.value


def test_a_cached_secret_expires_after_300_seconds(cached_client: TestClient, clock: Clock) -> None:
    cached_client.get(SECRET)
    clock.now += 299
    assert cached_client.get(SECRET).headers["X-Cache"] == "HIT"

    clock.now += 2
    assert cached_client.get(SECRET).headers["X-Cache"] == "MISS"


def test_routes_without_a_ttl_are_never_cached(cached_client: TestClient) -> None:
    cached_client.post("/examples/cache/k?value=v")

    responses = [cached_client.get("/examples/cache/k") for _ in range(2)]

    assert all("X-Cache" not in r.headers for r in responses)


async def test_only_200_responses_are_cached(
    cached_client: TestClient, cache: InMemoryCache
) -> None:
    responses = [cached_client.get("/examples/vault/secret/no-such-service") for _ in range(2)]

    assert [r.status_code for r in responses] == [404, 404]
    assert [r.headers["X-Cache"] for r in responses] == ["MISS", "MISS"]
    assert await cache.delete_matching("cache:*") == 0


def test_a_cache_outage_serves_the_request_uncached(
    make_client: Any, cached_services: Services, cache: InMemoryCache
) -> None:
    client: TestClient = make_client(cached_services)
    cache.failing = True

    responses = [client.get(SECRET) for _ in range(2)]

    assert [r.status_code for r in responses] == [200, 200]
    assert [r.headers["X-Cache"] for r in responses] == ["MISS", "MISS"]
    assert responses[0].json()["data"]["password"] == "***"


def test_disabled_response_caching_adds_no_header(
    make_client: Any, cached_services: Services
) -> None:
    client: TestClient = make_client(cached_services, {"RESPONSE_CACHE_ENABLED": "false"})

    assert "X-Cache" not in client.get(SECRET).headers


def test_the_key_ignores_query_order_and_is_namespaced_apart_from_user_keys() -> None:
    one = cache_key("/items/{name}", {"name": "a"}, b"b=2&a=1", {"a", "b"})
    other = cache_key("/items/{name}", {"name": "a"}, b"a=1&b=2", {"a", "b"})

    assert one == other == "cache:/items/{name}:name=a?a=1&b=2"


def test_the_key_holds_only_the_query_params_the_route_declares() -> None:
    declared = cache_key("/items/{name}", {"name": "a"}, b"junk=1&a=1&utm=x", {"a"})
    undeclared = cache_key("/items/{name}", {"name": "a"}, b"junk=1&a=1")

    assert declared == "cache:/items/{name}:name=a?a=1"
    assert undeclared == cache_key("/items/{name}", {"name": "a"}) == "cache:/items/{name}:name=a?"


async def test_junk_query_strings_make_no_new_entries_and_are_served_from_the_one(
    cached_client: TestClient, cache: InMemoryCache
) -> None:
    responses = [cached_client.get(SECRET, params={"junk": str(n), f"x{n}": ""}) for n in range(20)]

    assert [r.headers["X-Cache"] for r in responses] == ["MISS"] + ["HIT"] * 19
    assert {r.content for r in responses} == {responses[0].content}
    assert await cache.delete_matching("cache:*") == 1


def test_a_long_key_is_hashed_but_keeps_its_route_for_pattern_invalidation() -> None:
    key = cache_key("/items/{name}", {"name": "x" * 300}, b"")

    assert len(key) <= 200
    assert key.startswith("cache:/items/{name}:md5=")
    assert key != cache_key("/items/{name}", {"name": "y" * 300}, b"")


@attrs.define
class SlowItems:
    """An endpoint that takes a while and counts how often it ran."""

    calls: int = 0

    async def endpoint(self, request: Request) -> JSONResponse:
        self.calls += 1
        await asyncio.sleep(0.05)
        return JSONResponse({"name": request.path_params["name"], "call": self.calls})


@attrs.define
class Recorded:
    hits: list[str] = attrs.Factory(list)
    misses: list[str] = attrs.Factory(list)
    invalidated: list[str] = attrs.Factory(list)


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


@pytest.fixture
def items() -> SlowItems:
    return SlowItems()


def items_app(endpoint: Callable[[Request], Awaitable[Response]], **options: Any) -> Starlette:
    """An app with one cached route, ``/items/{name}``, built as create_app builds each route."""
    cached = Middleware(ResponseCacheMiddleware, ttls={"/items/{name}": 60}, **options)
    return Starlette(routes=[Route("/items/{name}", endpoint, middleware=[cached])])


@pytest.fixture
def responses(recorded: Recorded) -> CachedResponses:
    return CachedResponses(on_invalidated=recorded.invalidated.append)


@pytest.fixture
def app(items: SlowItems, recorded: Recorded) -> Starlette:
    return items_app(items.endpoint, on_hit=recorded.hits.append, on_miss=recorded.misses.append)


Call = Callable[[str], Any]


def get_scope(services: Services, path: str, query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": "",
        "query_string": query,
        "headers": [],
        "state": {"services": services},
    }


async def get_through(
    app: Starlette, services: Services, path: str, query: bytes = b""
) -> tuple[int, str | None, bytes]:
    """GET ``path`` straight through ``app``; returns (status, X-Cache, body)."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(get_scope(services, path, query), receive, send)
    headers = dict(sent[0]["headers"])
    x_cache = headers.get(b"x-cache")
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], x_cache.decode() if x_cache else None, body


@pytest.fixture
def call(app: Starlette, cached_services: Services) -> Callable[[str], Any]:
    """GET ``path`` straight through the app; returns (status, X-Cache, body)."""
    return functools.partial(get_through, app, cached_services)


async def test_concurrent_misses_for_one_key_compute_once(
    call: Call, items: SlowItems, recorded: Recorded
) -> None:
    results = await asyncio.gather(*(call("/items/a") for _ in range(5)))

    assert items.calls == 1
    assert {body for _, _, body in results} == {results[0][2]}
    assert sorted(x_cache for _, x_cache, _ in results) == ["HIT", "HIT", "HIT", "HIT", "MISS"]
    assert (recorded.hits, recorded.misses) == (["/items/{name}"] * 4, ["/items/{name}"])


async def test_different_keys_compute_separately(call: Call, items: SlowItems) -> None:
    await asyncio.gather(call("/items/a"), call("/items/b"))

    assert items.calls == 2


async def test_a_declared_query_param_keys_its_own_entries_and_junk_none(
    items: SlowItems, cache: InMemoryCache, cached_services: Services
) -> None:
    app = items_app(items.endpoint, query_params={"/items/{name}": ["page"]})
    for query in (b"page=1", b"page=1&junk=a", b"junk=b&page=1", b"page=2", b"page=2&x="):
        await get_through(app, cached_services, "/items/a", query)

    assert items.calls == 2
    assert await cache.delete_matching("cache:*") == 2


async def test_invalidation_deletes_matching_responses_and_is_counted_by_pattern(
    call: Call,
    responses: CachedResponses,
    cache: InMemoryCache,
    items: SlowItems,
    recorded: Recorded,
) -> None:
    await call("/items/a")
    await call("/items/b")
    await cache.set("user-key", "kept")

    responses.bind(cache)
    deleted = await responses.invalidate("cache:/items/*")
    _, x_cache, _ = await call("/items/a")

    assert deleted == 2
    assert recorded.invalidated == ["cache:/items/*"]
    assert x_cache == "MISS"
    assert items.calls == 3
    assert await cache.get("user-key") is not None


async def test_invalidation_during_a_cache_outage_deletes_nothing_and_does_not_raise(
    responses: CachedResponses, cache: InMemoryCache, recorded: Recorded
) -> None:
    responses.bind(cache)
    cache.failing = True

    assert await responses.invalidate("cache:*") == 0
    assert recorded.invalidated == []


async def test_a_value_this_cache_did_not_write_is_recomputed_not_replayed(
    call: Call, cache: InMemoryCache, items: SlowItems
) -> None:
    await cache.set(cache_key("/items/{name}", {"name": "a"}, b""), "not json")

    status, x_cache, _ = await call("/items/a")

    assert (status, x_cache, items.calls) == (200, "MISS", 1)


def _sample(client: TestClient, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_hits_and_misses_are_counted_by_route_template(cached_client: TestClient) -> None:
    labels = {"endpoint": SECRET_TEMPLATE}

    for service in ("postgres", "postgres", "postgres", "mysql"):
        cached_client.get(f"/examples/vault/secret/{service}")

    assert _sample(cached_client, "cache_hits_total", labels) == 2
    assert _sample(cached_client, "cache_misses_total", labels) == 2


async def test_a_hit_is_only_what_the_shared_cache_holds(
    call: Call, cache: InMemoryCache, items: SlowItems
) -> None:
    """No process keeps a copy of its own: another process's invalidation shows at once, and
    during a cache outage every answer is computed afresh."""
    await call("/items/a")
    cache.failing = True

    answers = [await call("/items/a") for _ in range(2)]

    assert [x_cache for _, x_cache, _ in answers] == ["MISS", "MISS"]
    assert items.calls == 3


def test_a_hit_carries_its_content_type_and_length_and_the_request_id(
    make_client: Any,
) -> None:
    client: TestClient = make_client(memory.services())
    client.get(SECRET)

    hit = client.get(SECRET)

    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["content-length"] == str(len(hit.content))
    assert "x-request-id" in hit.headers


async def test_overlapping_misses_answered_with_an_error_each_get_their_own(
    cached_services: Services, recorded: Recorded
) -> None:
    """An error body names its request, so it is never handed to another one."""
    calls = 0

    async def failing(request: Request) -> JSONResponse:
        nonlocal calls
        calls += 1
        number = calls
        await asyncio.sleep(0.05)
        return JSONResponse({"call": number}, status_code=503)

    app = items_app(failing, on_hit=recorded.hits.append, on_miss=recorded.misses.append)

    answers = await asyncio.gather(
        *(get_through(app, cached_services, "/items/a") for _ in range(3))
    )

    assert sorted(body for _, _, body in answers) == [b'{"call":1}', b'{"call":2}', b'{"call":3}']
    assert {(status, x_cache) for status, x_cache, _ in answers} == {(503, "MISS")}
    assert (recorded.hits, len(recorded.misses)) == ([], 3)


async def test_the_request_whose_miss_raised_gets_the_500_and_the_exception(
    cached_services: Services,
) -> None:
    async def broken(request: Request) -> JSONResponse:
        raise RuntimeError("a bug")

    app = items_app(broken)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(RuntimeError, match="a bug"):
        await app(get_scope(cached_services, "/items/a"), receive, send)

    assert sent[0]["status"] == 500


def test_the_app_drops_cached_vault_answers_on_request_and_counts_the_pattern(
    make_client: Any,
) -> None:
    services = memory.services()
    client: TestClient = make_client(services)
    client.get(SECRET)
    assert client.get(SECRET).headers["X-Cache"] == "HIT"
    store = services.secrets
    assert isinstance(store, InMemorySecretStore)
    store.put("postgres", {"user": "app_v2", "password": "rotated", "host": "db2"})

    deleted = client.portal.call(client.app.state.response_cache.invalidate, VAULT_RESPONSES)
    after = client.get(SECRET)

    assert deleted == 1
    assert after.headers["X-Cache"] == "MISS"
    assert after.json()["data"] == {"user": "app_v2", "password": "***", "host": "db2"}
    assert _sample(client, "cache_invalidations_total", {"pattern": VAULT_RESPONSES}) == 1
