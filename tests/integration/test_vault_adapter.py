"""VaultSecretStore against private OpenBao dev servers: auth, token lifecycle, sealing,
failures. A missing path, a closed port and a silent server are in the contract suite
(tests/contract/test_secret_store.py, test_outages.py).

Every server here is started by these tests on a free loopback port and stopped by them
(servers/vault.py), so sealing or killing one never disturbs the shared devstack on 8200.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
import requests
from servers.vault import POSTGRES, ROOT, AppRole, DevVault, make_approle, start_dev_vault
from structlog.testing import capture_logs

from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.domain.errors import (
    ConfigurationError,
    ResourceNotFoundError,
    VaultUnavailableError,
)
from colima_ref.domain.masking import mask_secrets

pytestmark = [pytest.mark.vault, pytest.mark.integration]


@pytest.fixture(scope="session")
def shared_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevVault]:
    """A server for the tests that leave it as they found it."""
    vault = start_dev_vault(tmp_path_factory.mktemp("bao"))
    yield vault
    vault.stop()


@pytest.fixture
def own_vault(tmp_path: Path) -> Iterator[DevVault]:
    """A server a test may seal or stop."""
    vault = start_dev_vault(tmp_path)
    yield vault
    vault.stop()


@pytest.fixture
async def root_store(shared_vault: DevVault) -> AsyncIterator[VaultSecretStore]:
    async with VaultSecretStore.open(addr=shared_vault.addr, token=ROOT) as store:
        yield store


def approle_token_accessors(vault: DevVault, role: AppRole) -> list[str]:
    """Accessors of the live tokens issued by logins as ``role``: one per login not revoked."""
    root = vault.root()
    accessors = root.auth.token.list_accessors()["data"]["keys"]
    mine = [
        accessor
        for accessor in accessors
        if (root.auth.token.lookup_accessor(accessor)["data"].get("meta") or {}).get("role_name")
        == role.name
    ]
    root.adapter.close()
    return mine


def token_is_alive(vault: DevVault, token: str) -> bool:
    client = hvac.Client(url=vault.addr, token=token, timeout=2)
    try:
        return bool(client.is_authenticated())
    finally:
        client.adapter.close()


async def test_reading_a_secret_returns_every_value_as_text(
    root_store: VaultSecretStore,
) -> None:
    secret = await root_store.read("postgres")

    assert secret.path == "postgres"
    assert secret.data == {"user": "app", "password": "vault-test-password", "port": "5432"}


async def test_mount_and_prefix_are_applied_to_every_read(shared_vault: DevVault) -> None:
    mount = f"kv-{uuid.uuid4().hex[:6]}"
    root = shared_vault.root()
    root.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    root.adapter.close()
    shared_vault.put("team/a/postgres", {"user": "prefixed"}, mount=mount)

    async with VaultSecretStore.open(
        addr=shared_vault.addr, token=ROOT, mount=mount, prefix="/team/a/"
    ) as store:
        secret = await store.read("postgres")

    assert secret.path == "postgres"
    assert secret.data == {"user": "prefixed"}


async def test_a_deleted_secret_raises_not_found(
    shared_vault: DevVault, root_store: VaultSecretStore
) -> None:
    shared_vault.put("short-lived", {"password": "gone-soon"})
    root = shared_vault.root()
    root.secrets.kv.v2.delete_latest_version_of_secret("short-lived", mount_point="secret")
    root.adapter.close()

    with pytest.raises(ResourceNotFoundError):
        await root_store.read("short-lived")


async def test_a_refused_token_is_vault_unavailable_without_the_token_in_the_error(
    shared_vault: DevVault,
) -> None:
    async with VaultSecretStore.open(addr=shared_vault.addr, token="not-a-real-token") as store:
        with pytest.raises(VaultUnavailableError) as caught:
            await store.read("postgres")

    error = caught.value
    assert error.status_code == 503
    assert error.details == {
        "service": "vault",
        "reason": "permission denied",
        "cause": "Forbidden",
    }
    assert "not-a-real-token" not in f"{error} {error.details} {error.__cause__!r}"


async def test_health_reports_initialized_sealed_standby_and_the_server_version(
    shared_vault: DevVault, root_store: VaultSecretStore
) -> None:
    response = await asyncio.to_thread(
        requests.get, f"{shared_vault.addr}/v1/sys/health", timeout=2
    )
    served = response.json()

    health = await root_store.check()

    assert health.healthy
    assert health.info == {
        "details": {"initialized": True, "sealed": False, "standby": False},
        "version": served["version"],
    }


async def test_a_server_that_never_answers_is_unavailable_after_the_timeout() -> None:
    with socket.socket() as silent:
        # Listening without accepting: the kernel completes the handshake, nobody ever replies.
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        addr = f"http://127.0.0.1:{silent.getsockname()[1]}"
        async with VaultSecretStore.open(addr=addr, token=ROOT, request_timeout=0.5) as store:
            started = time.monotonic()
            with pytest.raises(VaultUnavailableError) as caught:
                await store.read("postgres")
            elapsed = time.monotonic() - started

    assert caught.value.details["reason"] == "timeout"
    assert 0.4 < elapsed < 1.5


async def test_concurrent_health_checks_share_one_request_to_vault() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(32)
        addr = f"http://127.0.0.1:{silent.getsockname()[1]}"
        async with VaultSecretStore.open(addr=addr, token=ROOT, request_timeout=0.5) as store:
            answers = await asyncio.gather(
                *(store.check() for _ in range(20)), return_exceptions=True
            )
        silent.setblocking(False)
        connections = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                accepted, _ = silent.accept()
                accepted.close()
                connections += 1

    assert all(isinstance(answer, VaultUnavailableError) for answer in answers)
    # One health request, and the token look-up the store starts with.
    assert connections == 2


async def test_a_sealed_vault_is_unhealthy_and_reads_fail_until_it_is_unsealed(
    own_vault: DevVault,
) -> None:
    async with VaultSecretStore.open(addr=own_vault.addr, token=ROOT) as store:
        assert (await store.check()).healthy
        root = own_vault.root()
        root.sys.seal()

        sealed = await store.check()
        with pytest.raises(VaultUnavailableError) as caught:
            await store.read("postgres")
        root.sys.submit_unseal_key(own_vault.unseal_key)
        root.adapter.close()
        secret = await store.read("postgres")

    assert not sealed.healthy
    # A sealed server also calls itself a standby; what we pass on is what it says.
    assert sealed.info["details"]["initialized"] is True
    assert sealed.info["details"]["sealed"] is True
    assert sealed.error == "Vault is sealed"
    assert caught.value.details["reason"] == "sealed"
    assert secret.data["user"] == "app"


async def test_a_stopped_vault_fails_within_the_timeout_and_a_restarted_one_serves_again(
    own_vault: DevVault,
) -> None:
    async with VaultSecretStore.open(addr=own_vault.addr, token=ROOT, request_timeout=1) as store:
        await store.read("postgres")
        own_vault.stop()

        started = time.monotonic()
        with pytest.raises(VaultUnavailableError):
            await store.read("postgres")
        elapsed = time.monotonic() - started

        own_vault.start()
        own_vault.put("postgres", POSTGRES)
        secret = await store.read("postgres")

    assert elapsed < 1.5
    assert secret.data["password"] == "vault-test-password"


async def test_a_short_lived_token_is_renewed_so_reads_outlive_its_first_ttl(
    shared_vault: DevVault,
) -> None:
    root = shared_vault.root()
    create = {"policies": ["reader"], "ttl": "3s", "renewable": True, "explicit_max_ttl": "60s"}
    token = root.auth.token.create(**create)["auth"]["client_token"]
    unused = root.auth.token.create(**create)["auth"]["client_token"]
    root.adapter.close()

    # A transient look-up failure must not pause renewal past the token's 3 s life (default 5 s).
    async with VaultSecretStore.open(
        addr=shared_vault.addr, token=token, retry_interval=0.25
    ) as store:
        await store.read("postgres")
        await asyncio.sleep(5)
        secret = await store.read("postgres")

    assert secret.data["user"] == "app"
    assert not token_is_alive(shared_vault, unused), "a token nobody renews must have expired"


async def test_a_token_at_its_max_ttl_is_reported_as_expiring(shared_vault: DevVault) -> None:
    root = shared_vault.root()
    token = root.auth.token.create(
        policies=["reader"], ttl="3s", renewable=True, explicit_max_ttl="4s"
    )["auth"]["client_token"]
    root.adapter.close()

    with capture_logs() as logs:
        # A short retry interval: on a loaded machine one look-up can fail transiently, and the
        # default 5 s pause would outlast the token this test watches expire.
        async with VaultSecretStore.open(
            addr=shared_vault.addr, token=token, retry_interval=0.25
        ) as store:
            await asyncio.sleep(5.5)
            with pytest.raises(VaultUnavailableError) as caught:
                await store.read("postgres")

    assert "vault.token.expiring" in [entry["event"] for entry in logs], logs
    assert caught.value.details["reason"] == "permission denied"
    assert token not in repr(logs)


async def test_approle_logs_in_and_reads(shared_vault: DevVault) -> None:
    role = make_approle(shared_vault)

    async with VaultSecretStore.open(
        addr=shared_vault.addr, role_id=role.role_id, secret_id=role.secret_id
    ) as store:
        secret = await store.read("postgres")
        # The token the login gave: the store exposes it nowhere else.
        client_token = store._client.token

    assert secret.data["user"] == "app"
    assert role.secret_id not in repr(store)
    assert len(approle_token_accessors(shared_vault, role)) == 1
    assert client_token in store.secret_values()


async def test_twenty_concurrent_refusals_cause_one_approle_login(shared_vault: DevVault) -> None:
    role = make_approle(shared_vault)

    async with VaultSecretStore.open(
        addr=shared_vault.addr, role_id=role.role_id, secret_id=role.secret_id
    ) as store:
        await store.read("postgres")
        root = shared_vault.root()
        for accessor in approle_token_accessors(shared_vault, role):
            root.auth.token.revoke_accessor(accessor)
        root.adapter.close()

        secrets = await asyncio.gather(*(store.read("postgres") for _ in range(20)))

    assert {secret.data["user"] for secret in secrets} == {"app"}
    assert len(approle_token_accessors(shared_vault, role)) == 1


async def test_an_approle_token_that_expires_is_replaced_by_a_new_login(
    shared_vault: DevVault,
) -> None:
    role = make_approle(shared_vault, token_ttl="2s", token_max_ttl="2s")

    async with VaultSecretStore.open(
        addr=shared_vault.addr, role_id=role.role_id, secret_id=role.secret_id
    ) as store:
        await store.read("postgres")
        await asyncio.sleep(4)
        secret = await store.read("postgres")

    assert secret.data["user"] == "app"


async def test_approle_never_falls_back_to_the_token_in_the_environment(
    shared_vault: DevVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", ROOT)
    role = make_approle(shared_vault)

    async with VaultSecretStore.open(
        addr=shared_vault.addr, role_id=role.role_id, secret_id="wrong-secret-id"
    ) as store:
        with pytest.raises(VaultUnavailableError) as caught:
            await store.read("postgres")

    assert "wrong-secret-id" not in f"{caught.value} {caught.value.details}"


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param({}, id="none"),
        pytest.param({"token": ROOT, "role_id": "r", "secret_id": "s"}, id="both"),
        pytest.param({"role_id": "r"}, id="role-id-without-secret-id"),
        pytest.param({"secret_id": "s"}, id="secret-id-without-role-id"),
    ],
)
async def test_anything_but_exactly_one_auth_method_is_a_configuration_error(
    auth: dict[str, Any],
) -> None:
    with pytest.raises(ConfigurationError):
        async with VaultSecretStore.open(addr="http://127.0.0.1:1", **auth):
            pass


async def test_closing_the_store_stops_its_token_renewal(shared_vault: DevVault) -> None:
    root = shared_vault.root()
    token = root.auth.token.create(policies=["reader"], ttl="60s")["auth"]["client_token"]
    root.adapter.close()

    def renewals() -> list[asyncio.Task[Any]]:
        return [task for task in asyncio.all_tasks() if task.get_name() == "vault-token"]

    async with VaultSecretStore.open(addr=shared_vault.addr, token=token) as store:
        await store.read("postgres")
        while_open = [task for task in renewals() if not task.done()]

    assert len(while_open) == 1
    assert renewals() == []


async def test_a_nested_secret_gives_one_field_per_value_so_none_escapes_masking(
    shared_vault: DevVault, root_store: VaultSecretStore
) -> None:
    shared_vault.put(
        "nested",
        {"user": "app", "database": {"name": "x", "password": "NestedPw123"}, "hosts": ["a", "b"]},
    )

    secret = await root_store.read("nested")

    assert secret.data == {
        "user": "app",
        "database.name": "x",
        "database.password": "NestedPw123",
        "hosts.0": "a",
        "hosts.1": "b",
    }
    assert "NestedPw123" not in str(mask_secrets(secret.data))
