"""A login a backend refuses answers 503 naming the service, never opens its circuit breaker,
and the request after the credential is fixed in Vault is served.

One live server with ``CIRCUIT_BREAKER_FAIL_MAX=3`` and a 60 s reset reads its secrets from a
Vault folder of copies (VAULT_PATH_PREFIX) in which every password starts out wrong; each test
sends more requests than the breaker allows outages, then writes the right password into the
folder. The shared accounts keep their passwords: only the folder's copies change. The shared
PostgreSQL trusts local logins, so PostgreSQL runs as a private scram-sha-256 server
(`servers.postgres.PrivateServer`).

Vault's own refusals (a revoked token, an AppRole login with a wrong secret_id) are checked on
the store itself, the AppRole one on a private dev server.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import attrs
import hvac
import pytest
from live_support import (
    QUIET,
    SECRET_PATHS,
    WHOLE_STACK,
    LiveServer,
    VaultFolder,
    read_secret,
)
from servers.postgres import PrivateServer
from servers.vault import DevVault, make_approle, start_dev_vault

from colima_ref.adapters.breaker import ServiceBreaker
from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.domain.errors import VaultUnavailableError

pytestmark = WHOLE_STACK

FAIL_MAX = 3
REFUSED_REQUESTS = FAIL_MAX + 2
WRONG_PASSWORD = f"wrong-{secrets.token_hex(8)}"


@attrs.frozen
class Login:
    """How one service is reached through the app, and where its credential is in Vault."""

    service: str
    secret_path: str
    route: str
    error: str


LOGINS = [
    Login("postgres", "postgres", "/examples/database/postgres/query", "DatabaseConnectionError"),
    Login("mysql", "mysql", "/examples/database/mysql/query", "DatabaseConnectionError"),
    Login("mongodb", "mongodb", "/examples/database/mongodb/query", "DatabaseConnectionError"),
    Login("redis", "redis-1", "/examples/cache/colima-test-login", "CacheConnectionError"),
    Login(
        "rabbitmq",
        "rabbitmq",
        "/examples/messaging/queue/colima-test-login/info",
        "MessageQueueError",
    ),
]


@attrs.frozen
class Stack:
    server: LiveServer
    folder: VaultFolder
    right: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def stack(
    devstack: dict[str, str],
    vault_admin: hvac.Client,
    private_postgres_server: PrivateServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    right = {path: read_secret(vault_admin, path) for path in SECRET_PATHS}
    right["postgres"] = {
        "user": "postgres",
        "password": str(private_postgres_server.admin_password),
        "database": "postgres",
    }
    folder = VaultFolder(vault_admin)
    for path, secret in right.items():
        folder.write(path, {**secret, "password": WRONG_PASSWORD})
    env = {
        **devstack,
        **QUIET,
        "CIRCUIT_BREAKER_FAIL_MAX": str(FAIL_MAX),
        # Long enough that a breaker opened by the refused logins is still open afterwards.
        "CIRCUIT_BREAKER_RESET_TIMEOUT": "60",
        "CONNECT_TIMEOUT": "1",
        "VAULT_PATH_PREFIX": folder.prefix,
        "POSTGRES_PORT": str(private_postgres_server.port),
    }
    server = LiveServer(env, tmp_path_factory.mktemp("refused-logins"))
    try:
        server.start()
        yield Stack(server, folder, right)
    finally:
        server.stop_if_running()
        folder.delete()


@pytest.mark.parametrize("login", LOGINS, ids=[login.service for login in LOGINS])
def test_a_refused_login_answers_503_without_tripping_and_the_fixed_one_serves_at_once(
    stack: Stack, login: Login
) -> None:
    answers = [stack.server.get(login.route) for _ in range(REFUSED_REQUESTS)]

    assert [answer.status_code for answer in answers] == [503] * REFUSED_REQUESTS, [
        answer.text for answer in answers
    ]
    for answer in answers:
        body = answer.json()
        assert body["error"] == login.error
        assert body["details"]["service"] == login.service
        assert "refused the credentials" in body["message"]
        assert WRONG_PASSWORD not in answer.text
    breaker = stack.server.get(f"/health/{login.service}").json()["circuit_breaker"]
    assert breaker["state"] == "closed"

    stack.folder.write(login.secret_path, stack.right[login.secret_path])
    started = time.monotonic()
    fixed = stack.server.get(login.route)

    assert fixed.status_code == 200, fixed.text
    print(f"{login.service}: served {time.monotonic() - started:.2f} s after the fix")
    logs = stack.server.stdout + stack.server.stderr
    assert WRONG_PASSWORD not in logs
    assert stack.right[login.secret_path]["password"] not in logs


async def test_a_token_vault_refuses_answers_503_without_tripping_the_vault_breaker(
    devstack: dict[str, str], vault_admin: hvac.Client
) -> None:
    token = vault_admin.auth.token.create(ttl="5m")["auth"]["client_token"]
    vault_admin.auth.token.revoke(token)
    breaker = ServiceBreaker("vault", fail_max=FAIL_MAX, reset_timeout=60)

    async with VaultSecretStore.open(
        addr=devstack["VAULT_ADDR"], token=token, breaker=breaker
    ) as store:
        for _ in range(REFUSED_REQUESTS):
            with pytest.raises(VaultUnavailableError) as caught:
                await store.read("postgres")
            assert caught.value.details["reason"] == "permission denied"
            assert token not in str(caught.value) + repr(caught.value.details)

    assert breaker.state == "closed"


@pytest.fixture(scope="module")
def private_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevVault]:
    """A dev server of our own with AppRole enabled, which the shared one may not have."""
    vault = start_dev_vault(tmp_path_factory.mktemp("bao"))
    yield vault
    vault.stop()


async def test_an_approle_login_vault_refuses_answers_503_without_tripping_the_vault_breaker(
    private_vault: DevVault,
) -> None:
    role = make_approle(private_vault)
    breaker = ServiceBreaker("vault", fail_max=FAIL_MAX, reset_timeout=60)

    async with VaultSecretStore.open(
        addr=private_vault.addr, role_id=role.role_id, secret_id=WRONG_PASSWORD, breaker=breaker
    ) as store:
        for _ in range(REFUSED_REQUESTS):
            with pytest.raises(VaultUnavailableError) as caught:
                await store.read("postgres")
            assert WRONG_PASSWORD not in str(caught.value) + repr(caught.value.details)

    assert breaker.state == "closed"
