"""The example of each error response in /openapi.json, and of GET /, is the body the app sends.

Each case is driven through the code that answers it (the middleware, a route, the live Vault
and PostgreSQL adapters against ports where nothing or a silent server listens) and its body,
request id aside, is compared with the example in the document the app serves.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import httpx2
import pytest
from starlette.testclient import TestClient

from colima_ref.adapters import memory
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.adapters.postgres import PostgresDatabase
from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.domain.models import QueryResult
from colima_ref.http.app import create_app
from colima_ref.http.docs import openapi_document
from colima_ref.http.error_examples import EXAMPLE_REQUEST_ID, error_examples
from colima_ref.http.middleware.request_validation import MAX_BODY_BYTES
from colima_ref.ports.services import Services
from colima_ref.settings import Settings
from served import free_port

MakeClient = Callable[..., TestClient]
PUBLISH = "/examples/messaging/publish?queue_name=q"
# The examples of the document /openapi.json serves.
EXAMPLES: dict[str, Any] = {
    name: response["content"]["application/json"]["example"]
    for name, response in json.loads(openapi_document())["components"]["responses"].items()
}


def _as_example(response: httpx2.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert body["request_id"] == response.headers["X-Request-ID"]
    return {**body, "request_id": EXAMPLE_REQUEST_ID}


@pytest.fixture
def closed_port() -> int:
    return free_port()  # free: nothing listens on it


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


class BrokenDatabase:
    async def current_timestamp(self) -> QueryResult:
        raise RuntimeError("a bug")


def test_the_served_document_shows_the_examples_rendered_from_our_error_classes(
    client: TestClient,
) -> None:
    served = client.get("/openapi.json").json()["components"]["responses"]

    assert {
        name: response["content"]["application/json"]["example"]
        for name, response in served.items()
    } == error_examples(Settings().http, Settings().backends.operation_timeout)


@pytest.mark.parametrize(
    ("example", "method", "url", "options"),
    [
        ("BadRequest", "POST", PUBLISH, {"content": b"{}"}),
        (
            "UnsupportedMediaType",
            "POST",
            PUBLISH,
            {"content": b"{}", "headers": {"Content-Type": "application/xml"}},
        ),
        (
            "PayloadTooLarge",
            "POST",
            PUBLISH,
            {
                "headers": {
                    "Content-Type": "application/json",
                    "Content-Length": str(MAX_BODY_BYTES + 1),
                }
            },
        ),
        ("ValidationFailed", "POST", "/examples/cache/k?value=v&ttl=0", {}),
        ("NotFound", "GET", "/examples/vault/secret/nosuch", {}),
    ],
)
def test_a_refused_request_gets_the_documented_body(
    client: TestClient, example: str, method: str, url: str, options: dict[str, Any]
) -> None:
    response = client.request(method, url, **options)

    assert _as_example(response) == EXAMPLES[example]


def test_a_spent_rate_limit_gets_the_documented_body(client: TestClient) -> None:
    answers = [client.get("/examples/cache/k") for _ in range(101)]

    assert [a.status_code for a in answers[:100]] == [200] * 100
    assert _as_example(answers[100]) == EXAMPLES["TooManyRequests"]


def test_a_bug_gets_the_documented_body(make_client: MakeClient, services: Services) -> None:
    client = make_client(attrs.evolve(services, postgres=BrokenDatabase()))

    response = client.get("/examples/database/postgres/query")

    assert _as_example(response) == EXAMPLES["InternalError"]


def _served_with(
    replace: Callable[[], AbstractAsyncContextManager[Any]], field: str, env: dict[str, str]
) -> TestClient:
    """A client of the app whose ``field`` service is the live adapter ``replace`` opens, in the
    app's lifespan (on the loop that serves the requests)."""

    @asynccontextmanager
    async def open_services() -> AsyncIterator[Services]:
        async with replace() as adapter:
            yield attrs.evolve(memory.services(), **{field: adapter})

    return TestClient(create_app(open_services, Settings.from_env(env).http))


def test_an_unreachable_vault_gets_the_documented_body_from_the_live_adapter(
    closed_port: int,
) -> None:
    def vault() -> AbstractAsyncContextManager[Any]:
        return VaultSecretStore.open(addr=f"http://127.0.0.1:{closed_port}", token="t")

    with _served_with(vault, "secrets", {}) as client:
        response = client.get("/examples/vault/secret/postgres")

    assert _as_example(response) == EXAMPLES["ServiceUnavailable"]


def test_a_silent_postgres_gets_the_documented_body_from_the_live_adapter(
    silent_port: int,
) -> None:
    env = {"OPERATION_TIMEOUT": "0.5"}
    configured = Settings.from_env(env)
    secrets = InMemorySecretStore(secrets={"postgres": {"user": "u", "password": "p"}})

    def postgres() -> AbstractAsyncContextManager[Any]:
        return PostgresDatabase.open(
            host="127.0.0.1",
            port=silent_port,
            credentials=CredentialSource(secrets),
            operation_timeout=configured.backends.operation_timeout,
        )

    with _served_with(postgres, "postgres", env) as client:
        response = client.get("/examples/database/postgres/query")

    assert (
        _as_example(response)
        == error_examples(configured.http, configured.backends.operation_timeout)["GatewayTimeout"]
    )


def test_the_index_example_is_what_a_default_app_answers(client: TestClient) -> None:
    document = json.loads(openapi_document())
    example = document["paths"]["/"]["get"]["responses"]["200"]["content"]["application/json"]

    assert client.get("/").json() == example["example"]
