"""How every live adapter logs in: with what its secret store holds now, reading it again once
when the server refuses the password it has, and never showing a password in an error."""

from __future__ import annotations

import time

import pytest
from live_support import CountingStore, every_text_of, free_port

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.domain.errors import VaultUnavailableError

from .conftest import WritableStore
from .live_adapters import LOGGING_IN, Account, LiveAdapter, marked

# What each adapter reports when the server refuses the password read afresh.
REFUSED = {
    "postgres": (
        "PostgreSQL refused the credentials from the secret store",
        {"service": "postgres", "cause": "OperationalError"},
    ),
    "mysql": (
        "MySQL refused the credentials from the secret store",
        {"service": "mysql", "cause": "OperationalError"},
    ),
    "mongodb": (
        "MongoDB refused the credentials from the secret store",
        {"service": "mongodb", "cause": "OperationFailure"},
    ),
    "redis": (
        "Redis refused the credentials from the secret store",
        {"service": "redis", "cause": "AuthenticationError"},
    ),
    "rabbitmq": (
        "RabbitMQ refused the credentials from the secret store",
        {"service": "rabbitmq", "cause": "ProbableAuthenticationError"},
    ),
}


@pytest.mark.parametrize("adapter", marked(LOGGING_IN))
async def test_a_password_rotated_in_the_server_and_the_store_is_used_by_the_next_call(
    adapter: LiveAdapter, account: Account, writable_store: WritableStore
) -> None:
    path, old = adapter.secret_path, account.password
    writable_store.put(path, account.secret())
    store = CountingStore(writable_store.store)
    credentials = CredentialSource(store)
    async with adapter.open(credentials, account.ports) as opened:
        first = await adapter.call(opened)
        before = await adapter.check(opened)
        rotated = account.new_password()
        await account.rotate(rotated)
        writable_store.put(path, account.secret(rotated))
        still_cached = (await credentials.get(path)).data["password"]

        second = await adapter.call(opened)
        after = await adapter.check(opened)

    assert adapter.answered(first)
    assert adapter.answered(second)
    assert still_cached == old
    assert await account.refuses(old)
    assert not await account.refuses(rotated)
    assert (await credentials.get(path)).data["password"] == rotated
    assert store.reads == 2
    assert after == before
    assert after.healthy


@pytest.mark.parametrize("adapter", marked(LOGGING_IN))
async def test_a_stale_cached_password_is_read_again_once_and_the_rotated_one_logs_in(
    adapter: LiveAdapter, account: Account
) -> None:
    path = adapter.secret_path
    memory = InMemorySecretStore(secrets={path: account.secret()})
    store = CountingStore(memory)
    credentials = CredentialSource(store)
    await credentials.get(path)  # cached before the rotation, as a running app would have it
    rotated = account.new_password()
    await account.rotate(rotated)
    memory.put(path, account.secret(rotated))

    async with adapter.open(credentials, account.ports) as opened:
        answer = await adapter.call(opened)
        health = await adapter.check(opened)

    assert adapter.answered(answer)
    assert health.healthy
    assert store.reads == 2


@pytest.mark.parametrize("adapter", marked(LOGGING_IN))
async def test_a_refused_password_is_read_again_once_then_reported_without_the_password(
    adapter: LiveAdapter, account: Account
) -> None:
    wrong = account.new_password()
    store = CountingStore(InMemorySecretStore(secrets={adapter.secret_path: account.secret(wrong)}))
    async with adapter.open(CredentialSource(store), account.ports) as opened:
        with pytest.raises(adapter.error) as caught:
            await adapter.call(opened)
        reads = store.reads
        started = time.monotonic()
        with pytest.raises(adapter.error):
            await adapter.check(opened)
        second_refusal = time.monotonic() - started

    assert (caught.value.message, caught.value.details) == REFUSED[adapter.service]
    assert reads == 2
    assert wrong not in every_text_of(caught.value)
    assert second_refusal < 1.0, "a refused client must not be reused"


@pytest.mark.parametrize("adapter", LOGGING_IN)
async def test_a_missing_secret_is_the_services_error_naming_the_path(
    adapter: LiveAdapter,
) -> None:
    credentials = CredentialSource(InMemorySecretStore(secrets={}))
    async with adapter.open(credentials, [free_port()]) as opened:
        with pytest.raises(adapter.error) as on_call:
            await adapter.call(opened)
        with pytest.raises(adapter.error) as on_check:
            await adapter.check(opened)

    expected = {"service": adapter.service, "secret_path": adapter.secret_path}
    assert on_call.value.details == on_check.value.details == expected


@pytest.mark.parametrize("adapter", LOGGING_IN)
async def test_an_unavailable_secret_store_is_reported_as_such(adapter: LiveAdapter) -> None:
    credentials = CredentialSource(InMemorySecretStore(failing=True))
    async with adapter.open(credentials, [free_port()]) as opened:
        with pytest.raises(VaultUnavailableError):
            await adapter.call(opened)
        with pytest.raises(VaultUnavailableError):
            await adapter.check(opened)
