"""Login: a client built from the store's secret, rebuilt once when the service refuses it."""

from __future__ import annotations

import asyncio

import attrs
import pytest

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.login import Login, LoginRefusedError, Service
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.domain.errors import DatabaseConnectionError, OperationTimeoutError
from colima_ref.domain.models import Secret

SERVICE = Service("db", "TheDB", DatabaseConnectionError, "db")


class DriverAuthError(Exception):
    """What a driver raises for a refused login."""


@attrs.define
class FakeServer:
    """Accepts one password; counts the clients built against it."""

    password: str
    built: list[str] = attrs.field(factory=list)
    closed: list[str] = attrs.field(factory=list)

    async def build(self, secret: Secret) -> str:
        self.built.append(secret.data["password"])
        return secret.data["password"]

    async def close(self, client: str) -> None:
        self.closed.append(client)

    async def query(self, client: str) -> str:
        await asyncio.sleep(0)
        if client != self.password:
            raise LoginRefusedError from DriverAuthError()
        return "answer"


def login_to(server: FakeServer, store: InMemorySecretStore, **options: float) -> Login[str]:
    return Login(
        service=SERVICE,
        build=server.build,
        close_client=server.close,
        credentials=CredentialSource(store),
        **options,
    )


async def test_a_rotated_password_is_used_by_the_next_call() -> None:
    store = InMemorySecretStore({"db": {"password": "old"}})
    server = FakeServer("old")
    login = login_to(server, store)
    assert await login.run(server.query, operation="q") == "answer"

    server.password = "new"
    store.put("db", {"password": "new"})

    assert await login.run(server.query, operation="q") == "answer"
    assert server.built == ["old", "new"]
    assert server.closed == ["old"]


async def test_twenty_concurrent_refusals_cause_one_rebuild() -> None:
    store = InMemorySecretStore({"db": {"password": "old"}})
    server = FakeServer("old")
    login = login_to(server, store)
    await login.run(server.query, operation="q")
    server.password = "new"
    store.put("db", {"password": "new"})

    answers = await asyncio.gather(*(login.run(server.query, operation="q") for _ in range(20)))

    assert answers == ["answer"] * 20
    assert server.built == ["old", "new"]


async def test_a_login_refused_twice_is_an_answer_and_the_next_call_reads_again() -> None:
    store = InMemorySecretStore({"db": {"password": "wrong"}})
    server = FakeServer("right")
    login = login_to(server, store)

    with pytest.raises(DatabaseConnectionError) as caught:
        await login.run(server.query, operation="q")
    store.put("db", {"password": "right"})
    answer = await login.run(server.query, operation="q")

    assert caught.value.message == "TheDB refused the credentials from the secret store"
    assert caught.value.details == {"service": "db", "cause": "DriverAuthError"}
    assert caught.value.outage is False
    assert "wrong" not in str(caught.value.details)
    assert answer == "answer"
    assert server.built == ["wrong", "wrong", "right"]


async def test_a_missing_secret_is_an_answer_naming_its_path() -> None:
    login = login_to(FakeServer("any"), InMemorySecretStore({}))

    with pytest.raises(DatabaseConnectionError) as caught:
        await login.run(FakeServer("any").query, operation="q")

    assert caught.value.details == {"service": "db", "secret_path": "db"}
    assert caught.value.outage is False


async def test_a_call_past_the_operation_timeout_is_an_operation_timeout() -> None:
    server = FakeServer("pw")
    login = login_to(
        server, InMemorySecretStore({"db": {"password": "pw"}}), operation_timeout=0.05
    )

    async def silent(_client: str) -> str:
        await asyncio.sleep(3600)
        return "never"

    with pytest.raises(OperationTimeoutError) as caught:
        await login.run(silent, operation="q")

    assert caught.value.details == {"service": "db"}
    assert caught.value.message == "TheDB did not answer within 0.05 s"
