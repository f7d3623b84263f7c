"""A password rotated in the database and in Vault while the live server runs is used by the
very next request, with no restart.

The shared PostgreSQL trusts local logins, so PostgreSQL runs as a private scram-sha-256 server
(`servers.postgres.PrivateServer`); MariaDB checks passwords, so it gets a dedicated user.
The server reads both secrets from a Vault folder of copies (VAULT_PATH_PREFIX), so the shared
``secret/postgres`` and ``secret/mysql`` stay intact. Everything is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections.abc import Iterator

import attrs
import hvac
import pytest
from live_support import (
    QUIET,
    LiveServer,
    VaultFolder,
    assert_clean_shutdown,
)
from servers.postgres import Account, PrivateServer

pytestmark = [pytest.mark.integration, pytest.mark.vault, pytest.mark.postgres, pytest.mark.mysql]


@pytest.fixture(scope="module")
def postgres_account(private_postgres_server: PrivateServer) -> Iterator[Account]:
    # Module-wide, while pytest-asyncio gives each test a loop of its own. One loop for both
    # steps: asyncio.run would finalise the generator (dropping the role) as soon as it returns.
    loop = asyncio.new_event_loop()
    created = private_postgres_server.account()
    try:
        yield loop.run_until_complete(created.__aenter__())
        loop.run_until_complete(created.__aexit__(None, None, None))
    finally:
        loop.close()


def mariadb(statement: str) -> str:
    done = subprocess.run(
        ["mariadb", "-u", "root", "-N", "-B", "-e", statement],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


@attrs.frozen
class MariaDbUser:
    name: str
    password: str = attrs.field(repr=False)

    def secret(self, password: str | None = None) -> dict[str, str]:
        return {
            "user": self.name,
            "password": password or self.password,
            "database": "dev_database",
        }

    def rotate(self, password: str) -> None:
        """New password, and every session of the user ended, as a rotation job would."""
        mariadb(f"ALTER USER '{self.name}'@'%' IDENTIFIED BY '{password}'")
        for session in mariadb(
            f"SELECT id FROM information_schema.processlist WHERE user = '{self.name}'"
        ).split():
            mariadb(f"KILL {int(session)}")


@pytest.fixture(scope="module")
def mysql_user() -> Iterator[MariaDbUser]:
    user = MariaDbUser(f"colima_rot_{secrets.token_hex(4)}", secrets.token_urlsafe(18))
    mariadb(f"CREATE USER '{user.name}'@'%' IDENTIFIED BY '{user.password}'")
    mariadb(f"GRANT SELECT ON dev_database.* TO '{user.name}'@'%'")
    try:
        yield user
    finally:
        mariadb(f"DROP USER IF EXISTS '{user.name}'@'%'")


@attrs.frozen
class Rotation:
    server: LiveServer
    folder: VaultFolder


@pytest.fixture(scope="module")
def rotation(
    devstack: dict[str, str],
    vault_admin: hvac.Client,
    private_postgres_server: PrivateServer,
    postgres_account: Account,
    mysql_user: MariaDbUser,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Rotation]:
    folder = VaultFolder(vault_admin)
    folder.copy_devstack()
    folder.write("postgres", postgres_account.secret())
    folder.write(
        "mysql",
        {"user": mysql_user.name, "password": mysql_user.password, "database": "dev_database"},
    )
    env = {
        **devstack,
        **QUIET,
        # On, so that a rotation is seen to drop the cached Vault answers.
        "RESPONSE_CACHE_ENABLED": "true",
        "VAULT_PATH_PREFIX": folder.prefix,
        "POSTGRES_PORT": str(private_postgres_server.port),
    }
    server = LiveServer(env, tmp_path_factory.mktemp("live-rotation"))
    try:
        server.start()
        yield Rotation(server, folder)
        assert_clean_shutdown(server, server.stop())
    finally:
        server.stop_if_running()
        folder.delete()


async def test_a_postgres_password_rotated_in_the_server_and_vault_serves_the_next_request(
    rotation: Rotation, private_postgres_server: PrivateServer, postgres_account: Account
) -> None:
    path = "/examples/database/postgres/query"
    first = rotation.server.get(path)
    assert first.status_code == 200, first.text
    new_password = secrets.token_urlsafe(18)

    await private_postgres_server.rotate(postgres_account, new_password)
    rotation.folder.write("postgres", postgres_account.secret(new_password))

    assert await private_postgres_server.refuses(postgres_account, postgres_account.password)
    response = rotation.server.get(path)
    assert response.status_code == 200, response.text
    assert new_password not in rotation.server.stdout + rotation.server.stderr


def test_a_mariadb_password_rotated_in_the_server_and_vault_serves_the_next_request(
    rotation: Rotation, mysql_user: MariaDbUser
) -> None:
    path = "/examples/database/mysql/query"
    assert rotation.server.get(path).status_code == 200
    new_password = secrets.token_urlsafe(18)

    mysql_user.rotate(new_password)
    rotation.folder.write("mysql", mysql_user.secret(new_password))

    response = rotation.server.get(path)
    assert response.status_code == 200, response.text
    assert new_password not in rotation.server.stdout + rotation.server.stderr


def test_a_rotation_found_by_a_login_drops_the_cached_vault_answers(
    rotation: Rotation, mysql_user: MariaDbUser
) -> None:
    path = "/examples/vault/secret/mysql"
    rotation.server.get(path)
    assert rotation.server.get(path).headers["X-Cache"] == "HIT"
    new_password = secrets.token_urlsafe(18)

    mysql_user.rotate(new_password)
    rotation.folder.write("mysql", {**mysql_user.secret(new_password), "host": "mariadb-2"})
    assert rotation.server.get("/examples/database/mysql/query").status_code == 200

    # The login that found the rotation invalidates in a task of its own: give it a moment.
    deadline = time.monotonic() + 5
    while (answer := rotation.server.get(path)).headers["X-Cache"] == "HIT":
        assert time.monotonic() < deadline, "the cached answer outlived the rotation"
        time.sleep(0.05)
    assert answer.json()["data"]["host"] == "mariadb-2"
    assert answer.json()["data"]["password"] == "***"
    metrics = rotation.server.get("/metrics").text
    assert 'cache_invalidations_total{pattern="cache:/examples/vault/*"}' in metrics
