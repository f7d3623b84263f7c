"""Every path and query parameter is either refused with a 422 or used exactly as sent.

For each parameter a good value is bent: a control character before, inside or after it,
surrounding whitespace (ASCII and Unicode), an encoded slash, a byte that is not UTF-8. Each
bent value must come back as a 422 with the uniform body, or be echoed and stored byte for byte;
never quietly turned back into the good value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote

import attrs
import httpx2
import pytest
from starlette.testclient import TestClient

from colima_ref.adapters.memory import InMemoryMessageBroker
from colima_ref.ports.services import SERVICE_NAMES, Services

CONTROL_CHARACTERS = [chr(code) for code in range(0x20)] + ["\x7f"]
UNICODE_EDGES = ["\u00a0", "\u0085", "\u2028", "\u3000", "\u200b", "\ufeff"]
GOOD_KEY = "user:1"


def bent(good: str) -> list[tuple[str, str]]:
    """(id, value): ``good`` with a control character or whitespace around or inside it."""
    values: list[tuple[str, str]] = []
    for char in CONTROL_CHARACTERS:
        code = f"{ord(char):02x}"
        values += [
            (f"after-{code}", good + char),
            (f"before-{code}", char + good),
            (f"inside-{code}", good[:1] + char + good[1:]),
        ]
    values += [
        ("space-around", f" {good} "),
        ("space-after", f"{good} "),
        ("tab-before", f"\t{good}"),
        *((f"after-u{ord(char):04x}", good + char) for char in UNICODE_EDGES),
        *((f"before-u{ord(char):04x}", char + good) for char in UNICODE_EDGES),
    ]
    return values


@attrs.frozen
class Outcome:
    """What the app did with a value: refused it, or used it as ``used`` (None: not seen)."""

    response: httpx2.Response
    used: str | None = None


Try = Callable[[TestClient, Services, str], Outcome]


def _in_path(value: str) -> str:
    return quote(value, safe="")


def _cached(client: TestClient, key: str) -> str | None:
    value: str | None = client.get(f"/examples/cache/{_in_path(key)}").json()["value"]
    return value


def cache_key_set(client: TestClient, services: Services, key: str) -> Outcome:
    response = client.post(f"/examples/cache/{_in_path(key)}", params={"value": "x"})
    if response.status_code != 200:
        assert _cached(client, GOOD_KEY) is None
        return Outcome(response)
    assert _cached(client, key) == "x"
    return Outcome(response, response.json()["key"])


def cache_key_delete(client: TestClient, services: Services, key: str) -> Outcome:
    client.post(f"/examples/cache/{GOOD_KEY}", params={"value": "kept"})
    response = client.delete(f"/examples/cache/{_in_path(key)}")
    if key != GOOD_KEY:
        assert _cached(client, GOOD_KEY) == "kept"
    return Outcome(response, response.json()["key"] if response.status_code == 200 else None)


def cache_key_get(client: TestClient, services: Services, key: str) -> Outcome:
    response = client.get(f"/examples/cache/{_in_path(key)}")
    return Outcome(response, response.json()["key"] if response.status_code == 200 else None)


def cache_value(client: TestClient, services: Services, value: str) -> Outcome:
    response = client.post("/examples/cache/k", params={"value": value})
    if response.status_code != 200:
        assert _cached(client, "k") is None
        return Outcome(response)
    stored = _cached(client, "k")
    assert stored == response.json()["value"]
    return Outcome(response, stored)


def ttl(client: TestClient, services: Services, value: str) -> Outcome:
    response = client.post("/examples/cache/k", params={"value": "x", "ttl": value})
    return Outcome(response, str(response.json()["ttl"]) if response.status_code == 200 else None)


def queue_name_published(client: TestClient, services: Services, name: str) -> Outcome:
    response = client.post(
        "/examples/messaging/publish", params={"queue_name": name}, json={"type": "t"}
    )
    return Outcome(response, response.json()["queue"] if response.status_code == 200 else None)


def queue_name_info(client: TestClient, services: Services, name: str) -> Outcome:
    response = client.get(f"/examples/messaging/queue/{_in_path(name)}/info")
    return Outcome(response, response.json()["queue"] if response.status_code == 200 else None)


def message_field(client: TestClient, services: Services, value: str) -> Outcome:
    body = json.dumps({"type": value}).encode()
    response = client.post(
        "/examples/messaging/publish",
        params={"queue_name": "q"},
        content=body,
        headers={"Content-Type": "application/json"},
    )
    if response.status_code != 200:
        return Outcome(response)
    broker = services.broker
    assert isinstance(broker, InMemoryMessageBroker)
    assert broker.messages("q") == [body]
    return Outcome(response, response.json()["message"]["type"])


def _named_in_404(response: httpx2.Response, field: str) -> str | None:
    if response.status_code == 200:
        return None
    details: dict[str, str] = response.json()["details"]
    return details.get(field)


def vault_service_name(client: TestClient, services: Services, name: str) -> Outcome:
    response = client.get(f"/examples/vault/secret/{_in_path(name)}")
    if response.status_code == 200:
        return Outcome(response, response.json()["service"])
    return Outcome(response, _named_in_404(response, "service"))


def vault_key(client: TestClient, services: Services, key: str) -> Outcome:
    response = client.get(f"/examples/vault/secret/postgres/{_in_path(key)}")
    if response.status_code == 200:
        return Outcome(response, response.json()["key"])
    return Outcome(response, _named_in_404(response, "key"))


def redis_node_name(client: TestClient, services: Services, name: str) -> Outcome:
    response = client.get(f"/redis/nodes/{_in_path(name)}/info")
    if response.status_code == 200:
        return Outcome(response, response.json()["node"])
    return Outcome(response, _named_in_404(response, "node"))


def health_service_name(client: TestClient, services: Services, name: str) -> Outcome:
    # Each service has a route of its own: a 404 is a name that is no service's, an answer
    # is the report of the one service whose route it took.
    response = client.get(f"/health/{_in_path(name)}")
    if response.status_code == 404:
        return Outcome(response, name)
    return Outcome(response, "postgres")


PARAMETERS: list[tuple[str, Try, str]] = [
    ("cache-key-POST", cache_key_set, GOOD_KEY),
    ("cache-key-DELETE", cache_key_delete, GOOD_KEY),
    ("cache-key-GET", cache_key_get, GOOD_KEY),
    ("cache-value", cache_value, "v"),
    ("ttl", ttl, "60"),
    ("queue_name-publish", queue_name_published, "orders"),
    ("queue_name-info", queue_name_info, "orders"),
    ("message-field", message_field, "email"),
    ("vault-service_name", vault_service_name, "postgres"),
    ("vault-key", vault_key, "user"),
    ("redis-node_name", redis_node_name, "redis-1"),
    ("health-service", health_service_name, "postgres"),
]

CASES = [
    pytest.param(attempt, value, id=f"{name}-{variant}")
    for name, attempt, good in PARAMETERS
    for variant, value in [("as-is", good), *bent(good)]
]


@pytest.mark.parametrize(("attempt", "value"), CASES)
def test_a_parameter_is_refused_or_used_byte_for_byte(
    client: TestClient, services: Services, attempt: Try, value: str
) -> None:
    outcome = attempt(client, services, value)

    if outcome.response.status_code == 422:
        body = outcome.response.json()
        assert body["error"] == "ValidationError"
        assert body["details"]["field"]
        assert body["request_id"] == outcome.response.headers["X-Request-ID"]
    else:
        assert outcome.response.status_code < 500
        assert outcome.used == value, f"used {outcome.used!r} for {value!r}"


STATIC_GET_PATHS = [
    "/",
    "/health/",
    "/health/ready",
    "/health/all",
    *(f"/health/{name}" for name in SERVICE_NAMES),
    "/examples/database/postgres/query",
    "/examples/database/mysql/query",
    "/examples/database/mongodb/query",
    "/redis/cluster/nodes",
    "/redis/cluster/slots",
    "/redis/cluster/info",
    "/metrics",
    "/openapi.json",
]


@pytest.mark.parametrize("path", STATIC_GET_PATHS)
def test_a_route_is_not_served_for_its_path_plus_a_final_newline(
    client: TestClient, path: str
) -> None:
    """Starlette's route patterns end in ``$``, which also matches before a final newline."""
    response = client.get(path + "%0A")

    assert response.status_code == 422
    assert response.json()["details"] == {"field": "path"}


@pytest.mark.parametrize("suffix", ["%0D%0A", "%00", "%09", "%7F"])
@pytest.mark.parametrize("path", STATIC_GET_PATHS)
def test_a_route_is_not_served_for_its_path_plus_another_control_character(
    client: TestClient, path: str, suffix: str
) -> None:
    """No route has such a path: the router's 404, not the route's answer."""
    response = client.get(path + suffix)

    assert response.status_code == 404
    assert response.json()["error"] == "ResourceNotFoundError"


@pytest.mark.parametrize(
    "path",
    [
        "/examples/vault/secret/postgres%2Fuser",
        "/examples/vault/secret/postgres%2fuser",
        "/examples/messaging/queue/a%2Fb/info",
        "/health%2Fall",
    ],
)
def test_an_encoded_slash_is_refused_rather_than_read_as_a_separator(
    client: TestClient, path: str
) -> None:
    response = client.get(path)

    assert response.status_code == 422
    assert response.json()["details"] == {"field": "path"}


def test_a_value_whose_escapes_are_not_utf8_is_refused_not_replaced(client: TestClient) -> None:
    response = client.post("/examples/cache/k?value=caf%E9")

    assert response.status_code == 422
    assert response.json()["details"] == {"field": "query"}
    assert client.get("/examples/cache/k").json()["exists"] is False


def test_a_path_whose_escapes_are_not_utf8_is_refused(client: TestClient) -> None:
    response = client.get("/redis/nodes/redis-1%FF/info")

    assert response.status_code == 422
    assert response.json()["details"] == {"field": "path"}


@pytest.mark.parametrize(
    ("method", "url", "field"),
    [
        ("POST", "/examples/cache/k?value=a&value=b", "value"),
        ("POST", "/examples/cache/k?value=a&ttl=5&ttl=60", "ttl"),
        ("POST", "/examples/messaging/publish?queue_name=a&queue_name=b", "queue_name"),
    ],
)
def test_a_parameter_given_twice_is_refused_rather_than_one_value_picked(
    client: TestClient, method: str, url: str, field: str
) -> None:
    response = client.request(method, url, json={"type": "t"})

    assert response.status_code == 422
    assert response.json()["details"] == {"field": field}
    assert client.get("/examples/cache/k").json()["exists"] is False
