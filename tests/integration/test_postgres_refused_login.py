"""After PostgreSQL refuses the login twice, the adapter keeps no pool of the refused password:
the call after the secret is fixed reads it at once instead of waiting out a pool checkout.

The shared PostgreSQL trusts local logins, so this runs on a private scram-sha-256 server
(`servers.postgres.PrivateServer`).
"""

from __future__ import annotations

import time

import pytest
from servers.postgres import PrivateServer

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.adapters.postgres import PostgresDatabase
from colima_ref.domain import errors

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

CONNECT_TIMEOUT = 1.0


async def test_the_call_after_the_secret_is_fixed_is_served_without_a_pool_wait(
    private_postgres_server: PrivateServer,
) -> None:
    right = {
        "user": "postgres",
        "password": str(private_postgres_server.admin_password),
        "database": "postgres",
    }
    store = InMemorySecretStore(secrets={"postgres": {**right, "password": "wrong"}})
    async with PostgresDatabase.open(
        host="127.0.0.1",
        port=private_postgres_server.port,
        credentials=CredentialSource(store),
        connect_timeout=CONNECT_TIMEOUT,
    ) as database:
        with pytest.raises(errors.DatabaseConnectionError) as refused:
            await database.current_timestamp()
        store.put("postgres", right)
        started = time.monotonic()
        result = await database.current_timestamp()
        served_in = time.monotonic() - started

    assert "refused the credentials" in refused.value.message
    assert result.query == "SELECT current_timestamp"
    assert served_in < CONNECT_TIMEOUT / 2
