from __future__ import annotations

import asyncio
from collections.abc import Mapping

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.domain.errors import ResourceNotFoundError, VaultUnavailableError
from colima_ref.domain.masking import is_sensitive
from colima_ref.domain.models import Secret

POSTGRES = {"user": "app", "password": "first-password", "host": "db", "port": "5432"}


@attrs.define
class ManualClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@attrs.define
class GatedStore:
    """Counts reads and, while ``gate`` is clear, holds every read until it is set."""

    inner: InMemorySecretStore
    gate: asyncio.Event = attrs.field(factory=asyncio.Event)
    reads: int = 0

    def __attrs_post_init__(self) -> None:
        self.gate.set()

    async def read(self, path: str) -> Secret:
        self.reads += 1
        await self.gate.wait()
        return await self.inner.read(path)


def gated_store(secrets: Mapping[str, Mapping[str, str]] | None = None) -> GatedStore:
    return GatedStore(InMemorySecretStore(secrets={"postgres": POSTGRES, **(secrets or {})}))


async def test_a_fresh_secret_is_served_from_the_cache_without_another_read() -> None:
    store = gated_store()
    source = CredentialSource(store, ttl=300, clock=ManualClock())

    first = await source.get("postgres")
    second = await source.get("postgres")

    assert first.data["password"] == "first-password"
    assert second == first
    assert store.reads == 1


async def test_a_secret_is_read_again_once_its_ttl_has_passed() -> None:
    store = gated_store()
    clock = ManualClock()
    source = CredentialSource(store, ttl=300, clock=clock)
    await source.get("postgres")

    clock.now += 299.9
    await source.get("postgres")
    assert store.reads == 1

    clock.now += 0.1
    await source.get("postgres")
    assert store.reads == 2


async def test_concurrent_misses_for_one_path_read_the_store_once() -> None:
    store = gated_store()
    store.gate.clear()
    source = CredentialSource(store, clock=ManualClock())

    waiters = [asyncio.create_task(source.get("postgres")) for _ in range(20)]
    await asyncio.sleep(0)
    store.gate.set()
    secrets = await asyncio.gather(*waiters)

    assert store.reads == 1
    assert {secret.data["password"] for secret in secrets} == {"first-password"}


async def test_different_paths_are_read_and_cached_separately() -> None:
    store = gated_store({"mysql": {"user": "m", "password": "mysql-password"}})
    source = CredentialSource(store, clock=ManualClock())

    postgres, mysql = await asyncio.gather(source.get("postgres"), source.get("mysql"))
    await source.get("postgres")
    await source.get("mysql")

    assert (postgres.path, mysql.path) == ("postgres", "mysql")
    assert mysql.data["password"] == "mysql-password"
    assert store.reads == 2


async def test_a_failed_read_reaches_every_waiter_and_is_not_cached() -> None:
    store = gated_store()
    store.inner.failing = True
    store.gate.clear()
    source = CredentialSource(store, clock=ManualClock())

    waiters = [asyncio.create_task(source.get("postgres")) for _ in range(5)]
    await asyncio.sleep(0)
    store.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)

    assert store.reads == 1
    assert all(isinstance(result, VaultUnavailableError) for result in results)
    store.inner.failing = False
    assert (await source.get("postgres")).data["password"] == "first-password"
    assert store.reads == 2


async def test_a_missing_path_raises_not_found() -> None:
    source = CredentialSource(gated_store(), clock=ManualClock())

    with pytest.raises(ResourceNotFoundError):
        await source.get("no-such-service")


async def test_invalidate_makes_the_next_get_see_a_rotated_password() -> None:
    store = gated_store()
    source = CredentialSource(store, clock=ManualClock())
    await source.get("postgres")
    store.inner.put("postgres", {**POSTGRES, "password": "rotated-password"})

    assert (await source.get("postgres")).data["password"] == "first-password"
    source.invalidate("postgres")
    assert (await source.get("postgres")).data["password"] == "rotated-password"


async def test_only_a_read_that_differs_from_the_one_before_is_reported_as_a_rotation() -> None:
    store = gated_store({"mysql": POSTGRES})
    clock = ManualClock()
    rotated: list[str] = []
    source = CredentialSource(store, ttl=300, clock=clock, on_rotated=rotated.append)
    await source.get("postgres")
    await source.get("mysql")
    source.invalidate("postgres")
    await source.get("postgres")
    assert rotated == []

    store.inner.put("postgres", {**POSTGRES, "user": "app_v2", "password": "rotated-password"})
    source.invalidate("postgres")
    await source.get("postgres")
    assert rotated == ["postgres"]

    # A rotation found when the TTL runs out, with no refused login, counts too.
    store.inner.put("mysql", {**POSTGRES, "host": "db2"})
    clock.now += 300
    await source.get("mysql")
    await source.get("postgres")
    assert rotated == ["postgres", "mysql"]


async def test_a_read_invalidated_in_flight_is_answered_but_not_cached() -> None:
    """A read that began before a rotation must not pin the old password for a whole TTL."""
    store = gated_store()
    store.gate.clear()
    source = CredentialSource(store, clock=ManualClock())

    early = asyncio.create_task(source.get("postgres"))
    await asyncio.sleep(0)
    source.invalidate("postgres")
    store.gate.set()
    assert (await early).data["password"] == "first-password"
    await source.get("postgres")

    assert store.reads == 2


async def test_a_caller_that_gives_up_does_not_cancel_the_read_others_wait_for() -> None:
    store = gated_store()
    store.gate.clear()
    source = CredentialSource(store, clock=ManualClock())

    impatient = asyncio.create_task(source.get("postgres"))
    patient = asyncio.create_task(source.get("postgres"))
    await asyncio.sleep(0)
    impatient.cancel()
    store.gate.set()

    assert (await patient).data["password"] == "first-password"
    assert impatient.cancelled()
    assert store.reads == 1


@given(
    st.dictionaries(
        st.sampled_from(["user", "password", "host", "api_key", "Token", "port", "dsn"]),
        st.text(min_size=1, max_size=8),
    )
)
async def test_secret_values_holds_exactly_the_sensitive_values(data: dict[str, str]) -> None:
    source = CredentialSource(gated_store({"svc": data}), clock=ManualClock())
    await source.get("svc")

    assert source.secret_values() == {v for k, v in data.items() if v and is_sensitive(k)}


async def test_secret_values_keeps_every_password_read_even_after_a_rotation() -> None:
    """An adapter may still hold a login made with the old password: logs keep hiding it."""
    store = gated_store({"rabbitmq": {"user": "guest", "password": "mq-password", "token": ""}})
    source = CredentialSource(store, clock=ManualClock())
    assert source.secret_values() == frozenset()

    await source.get("postgres")
    await source.get("rabbitmq")
    store.inner.put("postgres", {**POSTGRES, "password": "rotated-password"})
    source.invalidate("postgres")
    await source.get("postgres")

    assert source.secret_values() == {"first-password", "mq-password", "rotated-password"}
