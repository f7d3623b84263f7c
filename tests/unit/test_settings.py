from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colima_ref.domain.errors import BaseAPIException
from colima_ref.settings import ENVIRONMENT, Endpoint, RedisSettings, Settings, SettingsError

PORT_VARIABLES = ["POSTGRES_PORT", "MYSQL_PORT", "MONGODB_PORT", "REDIS_PORT", "RABBITMQ_PORT"]
HOST_VARIABLES = ["POSTGRES_HOST", "MYSQL_HOST", "MONGODB_HOST", "REDIS_HOST", "RABBITMQ_HOST"]
token_text = st.text(
    st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40
).map(lambda s: "hvs.canary-" + s)


class RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers which variables were asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.app_name == "Colima Services Reference API"
    assert settings.debug is False
    assert (settings.backend, settings.backend_source) == ("memory", "default")
    assert settings.cors_origins == (
        "http://localhost:3000",
        "http://localhost:8000",
        "http://localhost:8080",
    )
    assert settings.log_level == "INFO"
    assert settings.vault.addr == "http://127.0.0.1:8200"
    assert settings.vault.token is None
    assert settings.postgres == Endpoint("127.0.0.1", 5432)
    assert settings.mysql == Endpoint("127.0.0.1", 3306)
    assert settings.mongodb == Endpoint("127.0.0.1", 27017)
    assert settings.redis == RedisSettings("127.0.0.1", 6379, nodes=())
    assert settings.rabbitmq == Endpoint("127.0.0.1", 5672)


def test_every_variable_is_read_into_its_field() -> None:
    settings = Settings.from_env(
        {
            "VAULT_ADDR": "https://vault.internal:8201",
            "VAULT_TOKEN": "hvs.example",
            "POSTGRES_HOST": "pg",
            "POSTGRES_PORT": "6432",
            "MYSQL_HOST": "my",
            "MYSQL_PORT": "3307",
            "MONGODB_HOST": "mongo",
            "MONGODB_PORT": "27018",
            "REDIS_HOST": "redis-1",
            "REDIS_PORT": "6380",
            "REDIS_NODES": "redis-1:7001, redis-2:7002,[::1]:7003",
            "RABBITMQ_HOST": "rabbit",
            "RABBITMQ_PORT": "5673",
            "DEBUG": "Yes",
            "APP_NAME": "Demo",
            "COLIMA_BACKEND": "memory",
            "CORS_ORIGINS": "https://a.example, http://b.example:9000",
            "LOG_LEVEL": "warning",
        }
    )

    assert settings.vault.addr == "https://vault.internal:8201"
    assert settings.vault.token == "hvs.example"
    assert settings.postgres == Endpoint("pg", 6432)
    assert settings.mysql == Endpoint("my", 3307)
    assert settings.mongodb == Endpoint("mongo", 27018)
    assert (settings.redis.host, settings.redis.port) == ("redis-1", 6380)
    assert settings.redis.nodes == (("redis-1", 7001), ("redis-2", 7002), ("::1", 7003))
    assert settings.rabbitmq == Endpoint("rabbit", 5673)
    assert settings.debug is True
    assert settings.app_name == "Demo"
    assert (settings.backend, settings.backend_source) == ("memory", "COLIMA_BACKEND")
    assert settings.cors_origins == ("https://a.example", "http://b.example:9000")
    assert settings.log_level == "WARNING"


def test_redis_seeds_fall_back_to_the_single_node_when_redis_nodes_is_empty() -> None:
    single = Settings.from_env({"REDIS_HOST": "cache", "REDIS_PORT": "6390"})
    cluster = Settings.from_env({"REDIS_NODES": "a:1,b:2"})

    assert single.redis.seeds == (("cache", 6390),)
    assert cluster.redis.seeds == (("a", 1), ("b", 2))


def test_an_empty_value_counts_as_unset() -> None:
    assert Settings.from_env(dict.fromkeys((v.name for v in ENVIRONMENT), "  ")) == Settings()


def test_every_variable_read_is_documented_and_every_documented_one_is_read() -> None:
    env = RecordingEnv()
    Settings.from_env(env)

    assert env.asked == {variable.name for variable in ENVIRONMENT}


@pytest.mark.parametrize("variable", PORT_VARIABLES)
@given(port=st.integers(min_value=1, max_value=65535))
def test_any_port_in_range_is_accepted(variable: str, port: int) -> None:
    settings = Settings.from_env({variable: str(port)})

    service = variable.removesuffix("_PORT").lower()
    assert getattr(settings, service).port == port


@pytest.mark.parametrize("variable", PORT_VARIABLES)
@given(
    value=st.one_of(
        st.integers(max_value=0).map(str),
        st.integers(min_value=65536).map(str),
        st.text(min_size=1).filter(lambda s: not s.strip().isdigit()),
        st.sampled_from(["+80", "8_0", "٣٣", "0x50", "80.0"]),
    ).filter(lambda s: s.strip())
)
def test_any_value_that_is_not_a_port_is_rejected_naming_the_variable(
    variable: str, value: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})

    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable} must be a port number 1-65535, got ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("POSTGRES_PORT", "abc", "POSTGRES_PORT must be a port number 1-65535, got 'abc'"),
        ("REDIS_NODES", "host:", "REDIS_NODES must be host:port[,host:port...], got 'host:'"),
        ("REDIS_NODES", ":6379", "REDIS_NODES must be host:port[,host:port...], got ':6379'"),
        ("REDIS_NODES", "a:1,,b:2", "REDIS_NODES must be host:port[,host:port...], got 'a:1,,b:2'"),
        ("REDIS_NODES", "redis-1", "REDIS_NODES must be host:port[,host:port...], got 'redis-1'"),
        ("REDIS_NODES", "a:70000", "REDIS_NODES must be host:port[,host:port...], got 'a:70000'"),
        ("COLIMA_BACKEND", "postgres", "COLIMA_BACKEND must be memory or live, got 'postgres'"),
        ("DEBUG", "maybe", "DEBUG must be one of true/false/1/0/yes/no, got 'maybe'"),
        (
            "LOG_LEVEL",
            "verbose",
            "LOG_LEVEL must be one of DEBUG/INFO/WARNING/ERROR/CRITICAL, got 'verbose'",
        ),
    ],
)
def test_a_malformed_value_gives_one_line_naming_the_variable_and_the_form(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})

    assert str(caught.value) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_NODES", "::1:6379"),
        ("REDIS_NODES", "a b:6379"),
        ("VAULT_ADDR", "vault:8200"),
        ("VAULT_ADDR", "ftp://vault"),
        ("CORS_ORIGINS", "localhost:3000"),
        ("CORS_ORIGINS", "http://a.example/"),
        ("CORS_ORIGINS", "http://a.example,"),
        ("CORS_ORIGINS", "*"),
        ("POSTGRES_HOST", "db host"),
        ("MYSQL_HOST", "user@db"),
        ("MONGODB_HOST", "mongodb://db"),
        ("REDIS_HOST", "a/b"),
        ("RABBITMQ_HOST", "amqp://rabbit"),
    ],
)
def test_every_malformed_form_is_rejected_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})

    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable} must be ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(v, True) for v in ("true", "TRUE", "1", "yes", "Yes")]
    + [(v, False) for v in ("false", "False", "0", "no", "NO")],
)
def test_debug_accepts_the_usual_spellings_in_any_case(value: str, expected: bool) -> None:
    assert Settings.from_env({"DEBUG": value}).debug is expected


@pytest.mark.parametrize(
    ("env", "backend", "source"),
    [
        ({}, "memory", "default"),
        ({"VAULT_ADDR": ""}, "memory", "default"),
        ({"VAULT_ADDR": "http://vault:8200"}, "live", "VAULT_ADDR set"),
        (
            {"VAULT_ADDR": "http://vault:8200", "COLIMA_BACKEND": "memory"},
            "memory",
            "COLIMA_BACKEND",
        ),
        ({"COLIMA_BACKEND": "LIVE"}, "live", "COLIMA_BACKEND"),
        ({"COLIMA_BACKEND": "", "VAULT_ADDR": "http://vault:8200"}, "live", "VAULT_ADDR set"),
    ],
)
def test_backend_is_chosen_by_colima_backend_then_vault_addr_then_default(
    env: dict[str, str], backend: str, source: str
) -> None:
    settings = Settings.from_env(env)

    assert (settings.backend, settings.backend_source) == (backend, source)


@given(token=token_text)
def test_the_vault_token_never_appears_in_the_settings_repr(token: str) -> None:
    settings = Settings.from_env({"VAULT_TOKEN": token})

    assert settings.vault.token == token
    assert token not in repr(settings)
    assert token not in repr(settings.vault)


@given(token=token_text, gap=st.sampled_from([" ", "\t", "\x00", "\x7f"]))
def test_a_malformed_vault_token_is_rejected_without_echoing_it(token: str, gap: str) -> None:
    bad = token + gap + token
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"VAULT_TOKEN": bad})

    assert caught.value.variable == "VAULT_TOKEN"
    assert token not in str(caught.value)
    assert all(token not in str(arg) for arg in caught.value.args)


def test_a_settings_error_is_a_value_error_and_not_an_api_error() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"REDIS_PORT": "0"})

    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, BaseAPIException)


def test_a_long_malformed_value_is_shortened_in_the_message() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"APP_NAME": "ok", "MYSQL_PORT": "9" * 500})

    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CORS_ORIGINS", "http://admin:CorsPw123@localhost:3000"),
        ("POSTGRES_HOST", "app:PgPw123@db"),
        ("VAULT_ADDR", "ftp://admin:AddrPw123@vault"),
    ],
)
def test_a_refused_value_is_quoted_without_the_password_of_its_login(
    variable: str, value: str
) -> None:
    password = value.partition("@")[0].rpartition(":")[2]
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})

    assert caught.value.variable == variable
    assert ":***@" in str(caught.value)
    assert password not in str(caught.value)
    assert all(password not in str(arg) for arg in caught.value.args)


def test_the_password_in_an_accepted_vault_address_stays_out_of_the_settings_repr() -> None:
    settings = Settings.from_env({"VAULT_ADDR": "https://admin:AddrPw123@vault:8200"})

    assert settings.vault.addr == "https://admin:AddrPw123@vault:8200"
    assert "AddrPw123" not in repr(settings)
    assert "https://admin:***@vault:8200" in repr(settings.vault)


@pytest.mark.parametrize(
    "variable", ["VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID", "RATE_LIMIT_STORAGE_URL"]
)
def test_a_secret_variable_is_neither_in_the_repr_nor_quoted_when_refused(variable: str) -> None:
    accepted = Settings.from_env({variable: "redis://:canary-pw@cache:6379/0"})
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: "not a canary-pw"})

    assert "canary" not in repr(accepted)
    assert refused.value.variable == variable
    assert "canary" not in str(refused.value)
    assert all("canary" not in str(arg) for arg in refused.value.args)
