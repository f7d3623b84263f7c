"""The redaction processor: credential-keyed fields and held secret values never reach a line."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.domain.masking import MASK, hide_userinfo_passwords
from colima_ref.observability.redaction import (
    hiding_secrets_of,
    looks_like_credential,
    redact_secrets,
)


@attrs.frozen
class Holder:
    """An object that loaded secrets, as the Vault login and the credential cache are."""

    values: frozenset[str]

    def secret_values(self) -> frozenset[str]:
        return self.values


@contextmanager
def holding(*values: str) -> Iterator[None]:
    with hiding_secrets_of(Holder(frozenset(values))):
        yield


@pytest.fixture
def secret() -> Iterator[str]:
    """A secret value hidden while the test runs."""
    value = f"s3cr3t-{uuid.uuid4().hex}"
    with holding(value):
        yield value


def redact(**fields: Any) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", dict(fields)))


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "PASSWD",
        "pwd",
        "client_secret",
        "token",
        "X-Api-Key",
        "api_key",
        "Authorization",
        "private_key",
        "access-key",
        "cookie",
        "credentials",
    ],
)
def test_a_credential_looking_key_has_its_value_masked(key: str) -> None:
    assert redact(**{key: "hunter2"})[key] == MASK


@pytest.mark.parametrize(
    "key",
    [
        "path",
        "method",
        "status_code",
        "request_id",
        "key",
        "user",
        "host",
        "duration_ms",
        "client_ip",
        "error_type",
        "exception",
        "event",
    ],
)
def test_ordinary_keys_are_left_alone(key: str) -> None:
    assert not looks_like_credential(key)
    assert redact(**{key: "hunter2"})[key] == "hunter2"


def test_a_value_equal_to_a_loaded_secret_is_masked_under_any_key(secret: str) -> None:
    assert redact(note=secret)["note"] == MASK


def test_a_secret_inside_a_longer_value_is_cut_out(secret: str) -> None:
    line = redact(event=f"connecting to postgres://app:{secret}@db:5432/app")

    assert line["event"] == f"connecting to postgres://app:{MASK}@db:5432/app"


def test_secrets_in_nested_values_and_reprs_are_masked(secret: str) -> None:
    @attrs.define
    class Dsn:
        password: str

    line = redact(
        config={"login": {"pass_phrase": "x", "note": secret}},
        hops=[secret, ("ok", secret)],
        dsn=Dsn(secret),
    )

    assert line["config"] == {"login": {"pass_phrase": MASK, "note": MASK}}
    assert line["hops"] == [MASK, ["ok", MASK]]
    assert secret not in str(line)


TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
# Held for the one property below: Hypothesis reruns a test body, not its fixtures.
PROPERTY_SECRET = f"s3cr3t-{uuid.uuid4().hex}"


@example(before=[], after=[], around=":@")
@given(before=st.lists(TEXT, max_size=4), after=st.lists(TEXT, max_size=4), around=TEXT)
def test_a_secret_in_any_one_of_many_text_fields_is_cut_out_and_the_others_kept(
    before: list[str], after: list[str], around: str
) -> None:
    texts = [*before, f"{around}{PROPERTY_SECRET}{around}", *after]
    with holding(PROPERTY_SECRET):
        line = redact(**{f"field_{n}": text for n, text in enumerate(texts)})

    assert PROPERTY_SECRET not in str(line)
    # A text that reads as a ``user:password@`` login loses that password too, secret or not.
    assert line == {
        f"field_{n}": hide_userinfo_passwords(text.replace(PROPERTY_SECRET, MASK))
        for n, text in enumerate(texts)
    }


def test_fields_that_hold_a_secret_only_when_joined_are_left_alone(secret: str) -> None:
    half = len(secret) // 2
    line = redact(first=secret[:half], second=secret[half:], third=f"\x00{secret[half:]}")

    assert line == {
        "first": secret[:half],
        "second": secret[half:],
        "third": f"\x00{secret[half:]}",
    }


def test_a_short_secret_is_masked_only_where_a_whole_value_equals_it() -> None:
    with holding("1"):
        line = redact(flag="1", status="HTTP/1.1 201")

    assert line == {"flag": MASK, "status": "HTTP/1.1 201"}


def test_a_secret_a_holder_adds_later_is_hidden_from_the_next_line() -> None:
    source = CredentialSource(InMemorySecretStore(secrets={"pg": {"password": "late-secret"}}))

    async def load() -> None:
        await source.get("pg")

    with hiding_secrets_of(source):
        assert redact(note="late-secret")["note"] == "late-secret"
        asyncio.run(load())
        assert redact(note="late-secret")["note"] == MASK


async def test_credential_source_hides_the_sensitive_values_it_loads() -> None:
    password = f"pw-{uuid.uuid4().hex}"
    user = f"user-{uuid.uuid4().hex}"
    source = CredentialSource(
        InMemorySecretStore(secrets={"pg": {"user": user, "password": password}})
    )
    await source.get("pg")

    with hiding_secrets_of(source):
        assert redact(event=f"login {user}:{password}")["event"] == f"login {user}:{MASK}"


def test_the_password_of_a_login_nobody_holds_in_any_text_field_is_hidden() -> None:
    line = redact(
        request_id="abc",
        detail="could not connect to postgresql://app:Unregistered9@db:5432/x",
        nested={"urls": ["redis://:AlsoUnregistered@cache:6379/0"]},
    )

    assert line == {
        "request_id": "abc",
        "detail": "could not connect to postgresql://app:***@db:5432/x",
        "nested": {"urls": ["redis://:***@cache:6379/0"]},
    }
