"""Behaviour every SecretStore shares, whatever holds the secrets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from colima_ref.domain.errors import ResourceNotFoundError
from colima_ref.ports.secrets import SecretStore

from .conftest import open_adapter


@pytest.fixture(params=["memory", pytest.param("vault", marks=pytest.mark.vault)])
async def secret_store(request: pytest.FixtureRequest) -> AsyncIterator[SecretStore]:
    async with open_adapter(SecretStore, request.param) as store:
        yield store


async def test_reading_postgres_returns_its_user_and_password(secret_store: SecretStore) -> None:
    secret = await secret_store.read("postgres")

    assert secret.path == "postgres"
    assert {"user", "password"} <= secret.data.keys()


async def test_every_secret_value_is_text(secret_store: SecretStore) -> None:
    secret = await secret_store.read("postgres")

    assert all(isinstance(value, str) for value in secret.data.values())


async def test_reading_a_missing_path_raises_not_found_naming_the_path(
    secret_store: SecretStore,
) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        await secret_store.read("no-such-service")

    assert caught.value.status_code == 404
    assert caught.value.details == {"secret_path": "no-such-service"}


async def test_a_secret_never_shows_its_values_in_its_repr(secret_store: SecretStore) -> None:
    secret = await secret_store.read("postgres")

    assert secret.data["password"] not in repr(secret)
