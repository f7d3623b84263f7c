"""What the Vault store logs in with is hidden from the log lines written while it is open."""

from __future__ import annotations

import uuid

from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.observability.redaction import hiding_secrets_of, redact_text

# Nothing listens here: opening the store makes no request.
UNREACHABLE = "http://127.0.0.1:9"


async def test_the_token_is_hidden_once_the_store_is_open() -> None:
    token = f"hvs.{uuid.uuid4().hex}"

    async with VaultSecretStore.open(addr=UNREACHABLE, token=token) as store:
        with hiding_secrets_of(store):
            assert redact_text(f"request failed with X-Vault-Token: {token}") == (
                "request failed with X-Vault-Token: ***"
            )


async def test_the_approle_role_id_and_secret_id_are_hidden_once_the_store_is_open() -> None:
    role_id, secret_id = str(uuid.uuid4()), str(uuid.uuid4())

    async with VaultSecretStore.open(
        addr=UNREACHABLE, role_id=role_id, secret_id=secret_id
    ) as store:
        with hiding_secrets_of(store):
            assert redact_text(f"login {role_id} {secret_id}") == "login *** ***"
