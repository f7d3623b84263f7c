"""Secret masking: deny by default, only exact allowlisted keys in clear."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colima_ref.domain.masking import (
    MASK,
    NON_SENSITIVE_KEYS,
    hide_userinfo_passwords,
    is_sensitive,
    mask_secrets,
    mask_value,
)

# Sensitive values carry a marker no clear value or MASK can contain, so "this secret appears
# in the output" can only mean a leak, never a coincidental substring.
_MARKER = "\x00secret:"
_clear_text = st.text(alphabet=st.characters(blacklist_characters="\x00"))
_secret_values = st.text().map(lambda text: _MARKER + text)
_unknown_keys = st.text().filter(lambda key: key.strip().lower() not in NON_SENSITIVE_KEYS)


@st.composite
def _allowlisted_keys(draw: st.DrawFn) -> str:
    """An allowlisted name in random letter case, padded with random whitespace."""
    name = draw(st.sampled_from(sorted(NON_SENSITIVE_KEYS)))
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    cased = "".join(c.upper() if flip else c for c, flip in zip(name, flips, strict=True))
    padding = st.text(alphabet=" \t\n", max_size=3)
    return draw(padding) + cased + draw(padding)


@given(
    secrets=st.dictionaries(_unknown_keys, _secret_values),
    clear=st.dictionaries(_allowlisted_keys(), _clear_text),
)
def test_no_masked_output_contains_a_sensitive_input_value(
    secrets: dict[str, str], clear: dict[str, str]
) -> None:
    masked = mask_secrets({**clear, **secrets})

    for secret in secrets.values():
        assert not any(secret in shown for shown in masked.values())


@given(data=st.dictionaries(st.text(), st.one_of(st.text(), st.integers(), st.none())))
def test_masking_keeps_every_key_in_order(data: dict[str, object]) -> None:
    assert list(mask_secrets(data)) == list(data)


@given(key=_unknown_keys, value=st.one_of(st.text(), st.integers(), st.floats(), st.none()))
def test_a_key_outside_the_allowlist_shows_exactly_the_mask(key: str, value: object) -> None:
    assert mask_value(key, value) == MASK


@given(key=_allowlisted_keys(), value=st.one_of(st.text(), st.integers()))
def test_an_allowlisted_key_shows_its_value_in_any_case_and_padding(
    key: str, value: object
) -> None:
    assert mask_value(key, value) == str(value)


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "PASSWORD ",
        "db_password",
        "token",
        "",
        "   ",
        "secret",
        "api_key",
        "url",
        "dsn",
        "connection_string",
        "private_key",
        "user_password",
        "username2",
    ],
)
def test_credential_like_and_unknown_keys_are_sensitive(key: str) -> None:
    assert is_sensitive(key)


@pytest.mark.parametrize(
    "key", ["u\u017fer", "\uff35\uff33\uff25\uff32", "ho\u0455t", "\u0455ervice"]
)
def test_non_ascii_look_alikes_of_allowlisted_keys_are_sensitive(key: str) -> None:
    """Unicode case folding or homoglyphs must not unmask a value."""
    assert is_sensitive(key)


def test_the_allowlist_is_lowercase_so_lookups_can_be_case_insensitive() -> None:
    assert all(key == key.lower().strip() and key.isascii() for key in NON_SENSITIVE_KEYS)


def test_the_documented_postgres_secret_shows_everything_but_the_password() -> None:
    secret = {
        "user": "dev_admin",
        "password": "s3cr3t!",
        "database": "dev_database",
        "host": "postgres",
        "port": 5432,
    }

    assert mask_secrets(secret) == {
        "user": "dev_admin",
        "password": "***",
        "database": "dev_database",
        "host": "postgres",
        "port": "5432",
    }


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:RlPw12345@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://app:pw@db/x", "postgresql://app:***@db/x"),
        (
            "Unable to parse storage uri amqp://guest:guest@mq:5672/",
            "Unable to parse storage uri amqp://guest:***@mq:5672/",
        ),
        ("app:PgPw123@db", "app:***@db"),
        ("got 'http://admin:CorsPw123@localhost:3000'", "got 'http://admin:***@localhost:3000'"),
        (
            "a password with @ and / in it: u:p@s/s@host",
            "a password with @ and / in it: u:***@host",
        ),
        ("dsn=mongodb://u:one@h,url=redis://:two@r", "dsn=mongodb://u:***@r"),
    ],
)
def test_the_password_of_a_login_in_a_text_is_hidden(text: str, shown: str) -> None:
    assert hide_userinfo_passwords(text) == shown


@pytest.mark.parametrize(
    "text",
    ["redis://cache:6379/0", "mail dev@example.com", "http://vault:8200/v1/sys/health", "no login"],
)
def test_a_text_without_a_login_is_left_as_it_is(text: str) -> None:
    assert hide_userinfo_passwords(text) == text


@given(
    user=st.text(alphabet="abcdefghij_-.", max_size=8),
    password=st.text(
        alphabet=st.characters(
            blacklist_categories=("Zs", "Cc"), blacklist_characters="'\"\\x85\\u2028\\u2029"
        ),
        min_size=1,
    ).map(lambda text: "\x01" + text),
    scheme=st.sampled_from(["redis://", "postgresql://", "amqp://", "mongodb+srv://", ""]),
)
def test_no_password_survives_in_a_login(user: str, password: str, scheme: str) -> None:
    text = f"error: {scheme}{user}:{password}@host:1/x"
    assert "\x01" not in hide_userinfo_passwords(text)
