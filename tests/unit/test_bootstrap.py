from __future__ import annotations

import gc
import socket
import subprocess
import sys

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from colima_ref.bootstrap import build_app, open_services
from colima_ref.domain.errors import VaultUnavailableError
from colima_ref.ports.services import SERVICE_NAMES
from colima_ref.settings import BackendSettings, Settings, SettingsError


async def test_the_memory_backend_opens_in_memory_services() -> None:
    async with open_services(Settings.from_env({"COLIMA_BACKEND": "memory"})) as services:
        assert services.backend == "memory"
        assert set(services.probes) == set(SERVICE_NAMES)


async def test_the_chosen_backend_and_its_reason_are_logged_at_start_up() -> None:
    settings = Settings.from_env({"COLIMA_BACKEND": "memory"})

    with capture_logs() as logs:
        async with open_services(settings):
            pass

    assert {"event": "backend selected", "backend": "memory", "reason": "COLIMA_BACKEND"} in [
        {key: entry.get(key) for key in ("event", "backend", "reason")} for entry in logs
    ]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_the_live_backend_opens_degraded_while_every_service_is_down() -> None:
    """Nothing listens on the port: opening still succeeds, and no service falls back to memory."""
    port = str(closed_port())
    env = {"VAULT_ADDR": f"http://127.0.0.1:{port}", "VAULT_TOKEN": "t", "VAULT_TIMEOUT": "0.5"}
    for service in ("POSTGRES", "MYSQL", "MONGODB", "REDIS", "RABBITMQ"):
        env[f"{service}_PORT"] = port

    async with open_services(Settings.from_env(env)) as services:
        assert services.backend == "live"
        assert set(services.probes) == set(SERVICE_NAMES)
        with pytest.raises(VaultUnavailableError):
            await services.secrets.read("postgres")


@pytest.mark.parametrize(
    "login",
    [
        {},
        {
            "VAULT_TOKEN": "tok-canary",
            "VAULT_ROLE_ID": "role-canary",
            "VAULT_SECRET_ID": "id-canary",
        },
        {"VAULT_ROLE_ID": "role-canary"},
    ],
    ids=["none", "token-and-approle", "role-id-alone"],
)
def test_the_live_app_is_refused_before_start_unless_vault_has_exactly_one_login(
    login: dict[str, str],
) -> None:
    settings = Settings.from_env({"COLIMA_BACKEND": "live", **login})

    with pytest.raises(SettingsError, match="VAULT_TOKEN") as refused:
        build_app(settings)

    assert "\n" not in str(refused.value)
    assert "canary" not in str(refused.value)


@pytest.mark.parametrize(
    "login",
    [{"VAULT_TOKEN": "t"}, {"VAULT_ROLE_ID": "r", "VAULT_SECRET_ID": "s"}],
    ids=["token", "approle"],
)
def test_the_live_app_is_built_with_either_vault_login(login: dict[str, str]) -> None:
    assert build_app(Settings.from_env({"COLIMA_BACKEND": "live", **login})) is not None


def test_a_pool_maximum_below_its_minimum_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="DB_POOL_MAX"):
        Settings.from_env({"DB_POOL_MIN": "5", "DB_POOL_MAX": "2"})


def test_the_live_settings_read_timeouts_pools_and_vault_location() -> None:
    settings = Settings.from_env(
        {
            "CONNECT_TIMEOUT": "0.5",
            "OPERATION_TIMEOUT": "3",
            "DB_POOL_MIN": "2",
            "DB_POOL_MAX": "4",
            "CREDENTIAL_TTL": "60",
            "VAULT_MOUNT": "kv",
            "VAULT_PATH_PREFIX": "/team/app/",
            "RABBITMQ_VHOST": "other",
        }
    )

    assert settings.backends == BackendSettings(0.5, 3.0, 2, 4, 60.0)
    assert (settings.vault.mount, settings.vault.path_prefix) == ("kv", "team/app")
    assert settings.rabbitmq_vhost == "other"


def test_the_redis_pool_is_sized_apart_from_the_sql_pools() -> None:
    default = Settings.from_env({"DB_POOL_MAX": "4"}).backends
    chosen = Settings.from_env({"DB_POOL_MAX": "4", "REDIS_POOL_MAX": "128"}).backends

    assert (default.pool_max, default.redis_pool_max) == (4, 64)
    assert (chosen.pool_max, chosen.redis_pool_max) == (4, 128)


def test_a_redis_pool_of_zero_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="REDIS_POOL_MAX"):
        Settings.from_env({"REDIS_POOL_MAX": "0"})


def test_the_approle_secret_id_never_appears_in_the_settings_repr() -> None:
    settings = Settings.from_env({"VAULT_ROLE_ID": "role-canary", "VAULT_SECRET_ID": "id-canary"})

    assert "canary" not in repr(settings)


def test_the_built_app_answers_health_on_the_memory_backend() -> None:
    app = build_app(Settings.from_env({"COLIMA_BACKEND": "memory"}))

    with TestClient(app) as client:
        response = client.get("/health/")

    assert response.status_code == 200


def test_a_serving_app_keeps_its_start_up_objects_out_of_full_collections_until_it_closes() -> None:
    app = build_app(Settings.from_env({"COLIMA_BACKEND": "memory"}))
    assert gc.get_freeze_count() == 0

    with TestClient(app) as client:
        frozen_while_serving = gc.get_freeze_count()
        assert client.get("/health/").status_code == 200

    assert frozen_while_serving > 10_000
    assert gc.get_freeze_count() == 0


LIVE_DRIVERS = ("psycopg", "psycopg_pool", "pymongo", "hvac", "requests", "asyncmy", "aiormq")

# Serves /health/ on the backend named by argv[1], then prints which live drivers got loaded.
_SERVE_AND_LIST_DRIVERS = f"""
import sys
from starlette.testclient import TestClient
from colima_ref.bootstrap import build_app
from colima_ref.settings import Settings

env = {{"COLIMA_BACKEND": sys.argv[1], "VAULT_TOKEN": "t"}}
with TestClient(build_app(Settings.from_env(env))) as client:
    assert client.get("/health/").status_code == 200
print("loaded:", *(name for name in {LIVE_DRIVERS!r} if name in sys.modules))
"""


def live_drivers_loaded_serving(backend: str) -> set[str]:
    # A fresh interpreter: this one has imported every adapter for other tests.
    result = subprocess.run(
        [sys.executable, "-c", _SERVE_AND_LIST_DRIVERS, backend],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    [line] = [line for line in result.stdout.splitlines() if line.startswith("loaded:")]
    return set(line.split()[1:])


def test_a_memory_backend_server_never_loads_the_live_drivers() -> None:
    """They would cost a demo process about 15 MB of memory it never uses."""
    assert live_drivers_loaded_serving("memory") == set()


def test_a_live_backend_server_loads_its_drivers() -> None:
    assert live_drivers_loaded_serving("live") == set(LIVE_DRIVERS)
