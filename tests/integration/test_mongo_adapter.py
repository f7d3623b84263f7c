"""MongoDocumentDatabase against private SecantusDB servers: logins, rotation, outages, errors.

Each server here is started by these tests on a free loopback port with test commands enabled
(``configureFailPoint`` makes the server fail on cue), so nothing touches the devstack's 27017.
The rotation test also writes a throwaway secret to the devstack's Vault.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import hvac
import pytest
import requests
from live_support import free_port
from pymongo import MongoClient

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.adapters.mongo import MongoDocumentDatabase
from colima_ref.adapters.vault import VaultSecretStore
from colima_ref.domain.errors import DatabaseConnectionError, OperationTimeoutError

pytestmark = [pytest.mark.mongodb, pytest.mark.integration]

SECANTUSD = Path(sys.executable).with_name("secantusd-py")
USER = "app_user"
DATABASE = "app_db"
COLLECTIONS = ("zebras", "apples", "mangos")
APP_NAME = "colima-ref"  # the adapter's appname; fail points match on it


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}. CI=true requires every service", pytrace=False)
    pytest.skip(reason)


@attrs.define
class Secantus:
    """One ``secantusd-py`` on 127.0.0.1 with test commands, startable on a chosen port."""

    port: int = attrs.field(factory=free_port)
    password: str = attrs.field(factory=lambda: secrets.token_urlsafe(16), repr=False)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(SECANTUSD),
                "--host=127.0.0.1",
                f"--port={self.port}",
                "--storage-path=:memory:",
                "--log-level=WARNING",
                "--enable-test-commands",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"secantusd-py did not listen on {self.port} within 20 s")

    def provision(self) -> None:
        with self.admin() as client:
            client[DATABASE].command(
                "createUser", USER, pwd=self.password, roles=[{"role": "dbOwner", "db": DATABASE}]
            )
            for name in COLLECTIONS:
                client[DATABASE].create_collection(name)

    def rotate(self) -> str:
        self.password = secrets.token_urlsafe(16)
        with self.admin() as client:
            client[DATABASE].command("updateUser", USER, pwd=self.password)
        return self.password

    def fail_next(self, commands: list[str], times: int = 1, **data: Any) -> None:
        """Make the server fail the adapter's next ``times`` matching commands as ``data`` says."""
        with self.admin() as client:
            client.admin.command(
                "configureFailPoint",
                "failCommand",
                mode={"times": times},
                data={"failCommands": commands, "appName": APP_NAME, **data},
            )

    def admin(self) -> MongoClient[dict[str, Any]]:
        return MongoClient(
            "127.0.0.1", self.port, directConnection=True, serverSelectionTimeoutMS=5000
        )

    def secret(self, password: str | None = None) -> dict[str, str]:
        return {"user": USER, "password": password or self.password, "database": DATABASE}

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="module")
def server() -> Iterator[Secantus]:
    if not SECANTUSD.exists():
        skip_or_fail(f"{SECANTUSD.name} is not installed in this environment (uv sync)")
    server = Secantus()
    server.start()
    server.provision()
    yield server
    server.stop()


@asynccontextmanager
async def mongo_on(
    port: int, store: InMemorySecretStore, **options: Any
) -> AsyncIterator[MongoDocumentDatabase]:
    credentials = CredentialSource(store)
    async with MongoDocumentDatabase.open(
        host="127.0.0.1", port=port, credentials=credentials, **options
    ) as database:
        yield database


async def test_collection_names_are_the_secret_databases_collections_sorted(
    server: Secantus,
) -> None:
    async with mongo_on(server.port, InMemorySecretStore({"mongodb": server.secret()})) as mongo:
        names = await mongo.collection_names()

    assert names == sorted(COLLECTIONS)


async def test_health_reports_the_version_the_server_builds_as(server: Secantus) -> None:
    with server.admin() as client:
        expected = client.admin.command("buildInfo")["version"]

    async with mongo_on(server.port, InMemorySecretStore({"mongodb": server.secret()})) as mongo:
        health = await mongo.check()

    assert (health.healthy, health.info) == (True, {"version": expected})


async def test_a_stale_cached_password_is_replaced_by_the_rotated_one_and_the_call_succeeds(
    server: Secantus,
) -> None:
    store = InMemorySecretStore({"mongodb": server.secret()})
    credentials = CredentialSource(store)
    await credentials.get("mongodb")  # cached before the rotation, as a running app would have it
    store.put("mongodb", server.secret(server.rotate()))

    async with MongoDocumentDatabase.open(
        host="127.0.0.1", port=server.port, credentials=credentials
    ) as mongo:
        names = await mongo.collection_names()

    assert names == sorted(COLLECTIONS)


async def test_a_password_rotated_in_the_server_and_in_vault_is_used_after_connections_drop(
    server: Secantus,
) -> None:
    """Pooled connections outlive a rotation; the first one opened afterwards must log in anew."""
    addr = os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200")
    token = os.environ.get("VAULT_TOKEN", "root")
    vault = hvac.Client(url=addr, token=token, timeout=2)
    path = f"colima-test/mongodb-{uuid.uuid4().hex}"
    try:
        vault.secrets.kv.v2.create_or_update_secret(
            path=path, secret=server.secret(), mount_point="secret"
        )
    except (requests.RequestException, hvac.exceptions.VaultError) as exc:
        vault.adapter.close()
        skip_or_fail(f"Vault at {addr} is unavailable ({type(exc).__name__}); make devstack-up")
    try:
        async with (
            VaultSecretStore.open(addr=addr, token=token) as store,
            MongoDocumentDatabase.open(
                host="127.0.0.1",
                port=server.port,
                credentials=CredentialSource(store),
                secret_path=path,
            ) as mongo,
        ):
            assert await mongo.collection_names() == sorted(COLLECTIONS)
            vault.secrets.kv.v2.create_or_update_secret(
                path=path, secret=server.secret(server.rotate()), mount_point="secret"
            )
            # The pooled connection is dropped: pymongo's retry must open one and log in anew.
            server.fail_next(["listCollections"], closeConnection=True)
            names = await mongo.collection_names()
    finally:
        vault.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point="secret")
        vault.adapter.close()

    assert names == sorted(COLLECTIONS)


async def test_a_login_refused_after_a_fresh_read_is_a_connection_error_without_the_password(
    server: Secantus,
) -> None:
    wrong = secrets.token_urlsafe(16)
    store = InMemorySecretStore({"mongodb": server.secret(password=wrong)})

    async with mongo_on(server.port, store) as mongo:
        with pytest.raises(DatabaseConnectionError) as caught:
            await mongo.collection_names()
        started = time.monotonic()
        with pytest.raises(DatabaseConnectionError):
            await mongo.check()
        second_refusal = time.monotonic() - started

    assert caught.value.details == {"service": "mongodb", "cause": "OperationFailure"}
    assert wrong not in f"{caught.value!s} {caught.value!r} {caught.value.details}"
    assert second_refusal < 1.0, "a refused client must not be reused (2 s server selection)"


async def test_an_unreachable_server_is_a_connection_error_within_the_connect_timeout() -> None:
    store = InMemorySecretStore({"mongodb": {"user": USER, "password": "x", "database": DATABASE}})
    started = time.monotonic()

    async with mongo_on(free_port(), store, connect_timeout=0.5) as mongo:
        with pytest.raises(DatabaseConnectionError) as caught:
            await mongo.collection_names()

    assert time.monotonic() - started < 2.0
    assert caught.value.details["cause"] == "ServerSelectionTimeoutError"


async def test_opening_succeeds_with_the_server_down_and_calls_recover_once_it_is_up() -> None:
    late = Secantus()
    store = InMemorySecretStore({"mongodb": late.secret()})

    async with mongo_on(late.port, store, connect_timeout=0.5) as mongo:
        with pytest.raises(DatabaseConnectionError):
            await mongo.check()
        late.start()
        try:
            late.provision()
            started = time.monotonic()
            names = await _first_answer(mongo, within=10.0)
        finally:
            late.stop()

    assert names == sorted(COLLECTIONS)
    assert time.monotonic() - started < 10


async def _first_answer(mongo: MongoDocumentDatabase, *, within: float) -> list[str]:
    # pymongo's monitor re-checks a server it failed to reach every 0.5 s at the soonest, so with
    # a 0.5 s selection timeout the first call can still miss the server that just came back.
    deadline = time.monotonic() + within
    while True:
        try:
            return await mongo.collection_names()
        except DatabaseConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (2, "MongoDB failed the command"),
        (13, "MongoDB does not let our user run the command"),
    ],
)
async def test_a_command_the_server_fails_is_a_connection_error_naming_the_code(
    server: Secantus, code: int, message: str
) -> None:
    server.fail_next(["listCollections"], errorCode=code)

    async with mongo_on(server.port, InMemorySecretStore({"mongodb": server.secret()})) as mongo:
        with pytest.raises(DatabaseConnectionError) as caught:
            await mongo.collection_names()

    assert caught.value.message == message
    assert caught.value.details == {"service": "mongodb", "cause": "OperationFailure", "code": code}


async def test_a_connection_dropped_on_every_try_is_a_connection_error(server: Secantus) -> None:
    server.fail_next(["listCollections"], times=2, closeConnection=True)

    async with mongo_on(server.port, InMemorySecretStore({"mongodb": server.secret()})) as mongo:
        with pytest.raises(DatabaseConnectionError) as caught:
            await mongo.collection_names()
        names = await mongo.collection_names()

    assert caught.value.message == "MongoDB dropped the connection"
    assert names == sorted(COLLECTIONS)


async def test_a_command_slower_than_the_operation_timeout_is_a_gateway_timeout(
    server: Secantus,
) -> None:
    server.fail_next(["listCollections"], times=2, blockConnection=True, blockTimeMS=3000)
    started = time.monotonic()

    async with mongo_on(
        server.port, InMemorySecretStore({"mongodb": server.secret()}), operation_timeout=0.5
    ) as mongo:
        with pytest.raises(OperationTimeoutError) as caught:
            await mongo.collection_names()

    assert caught.value.details["service"] == "mongodb"
    assert time.monotonic() - started < 2.0


async def test_a_missing_secret_is_a_connection_error_naming_the_path(server: Secantus) -> None:
    async with mongo_on(server.port, InMemorySecretStore({})) as mongo:
        with pytest.raises(DatabaseConnectionError) as caught:
            await mongo.check()

    assert caught.value.details == {"service": "mongodb", "secret_path": "mongodb"}


async def test_a_closed_database_connects_again_on_the_next_call(server: Secantus) -> None:
    async with mongo_on(server.port, InMemorySecretStore({"mongodb": server.secret()})) as mongo:
        await mongo.check()
        await mongo.close()

        names = await mongo.collection_names()

    assert names == sorted(COLLECTIONS)
