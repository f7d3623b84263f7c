"""SecantusDB servers of the tests' own on free loopback ports, with test commands enabled
(``configureFailPoint`` makes the server fail on cue), so nothing touches the devstack's 27017."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
from live_support import free_port, skip_or_fail
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from servers import OwnDatabase

SECANTUSD = Path(sys.executable).with_name("secantusd-py")
COLLECTIONS = ("zebras", "apples", "mangos")
APP_NAME = "colima-ref"  # the adapter's appname; fail points match on it
AUTHENTICATION_FAILED = 18


@attrs.define
class Secantus:
    """One ``secantusd-py`` on 127.0.0.1 with test commands, startable on a chosen port."""

    port: int = attrs.field(factory=free_port)
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

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def admin(self) -> MongoClient[dict[str, Any]]:
        return MongoClient(
            "127.0.0.1", self.port, directConnection=True, serverSelectionTimeoutMS=5000
        )

    def fail_next(self, commands: list[str], times: int = 1, **data: Any) -> None:
        """Make the server fail the adapter's next ``times`` matching commands as ``data`` says."""
        with self.admin() as client:
            client.admin.command(
                "configureFailPoint",
                "failCommand",
                mode={"times": times},
                data={"failCommands": commands, "appName": APP_NAME, **data},
            )

    def clear_fail_points(self) -> None:
        with self.admin() as client:
            client.admin.command("configureFailPoint", "failCommand", mode="off")


@attrs.define
class Account(OwnDatabase):
    """A user owning a database of its own, holding COLLECTIONS, on ``server``."""

    server: Secantus
    user: str = attrs.field(factory=lambda: f"colima_mg_{secrets.token_hex(4)}")
    password: str = attrs.field(factory=lambda: secrets.token_urlsafe(16), repr=False)

    @property
    def ports(self) -> list[int]:
        return [self.server.port]

    def create(self) -> None:
        with self.server.admin() as client:
            client[self.database].command(
                "createUser",
                self.user,
                pwd=self.password,
                roles=[{"role": "dbOwner", "db": self.database}],
            )
            for name in COLLECTIONS:
                client[self.database].create_collection(name)

    def drop(self) -> None:
        with self.server.admin() as client:
            client[self.database].command("dropUser", self.user)
            client.drop_database(self.database)

    async def rotate(self, password: str) -> None:
        """A new password; the adapter's next listCollections loses its connection, so the next
        call logs in anew (MongoDB keeps sessions logged in with the old password)."""
        with self.server.admin() as client:
            client[self.database].command("updateUser", self.user, pwd=password)
        self.password = password
        self.server.fail_next(["listCollections"], closeConnection=True)

    async def refuses(self, password: str) -> bool:
        client: MongoClient[dict[str, Any]] = MongoClient(
            "127.0.0.1",
            self.server.port,
            directConnection=True,
            username=self.user,
            password=password,
            authSource=self.database,
            serverSelectionTimeoutMS=5000,
        )
        try:
            client[self.database].command("ping")
        except OperationFailure as exc:
            return exc.code == AUTHENTICATION_FAILED
        finally:
            client.close()
        return False

    async def sessions(self) -> int:
        with self.server.admin() as client:
            operations = client.admin.command("currentOp")["inprog"]
        return sum(
            any(user.get("user") == self.user for user in op.get("effectiveUsers", []))
            for op in operations
        )


@contextmanager
def secantus() -> Iterator[Secantus]:
    """A running Secantus for the length of the block."""
    if not SECANTUSD.exists():
        skip_or_fail(f"{SECANTUSD.name} is not installed in this environment (uv sync)")
    server = Secantus()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def mongo_account(server: Secantus) -> AsyncIterator[Account]:
    login = Account(server)
    login.create()
    try:
        yield login
    finally:
        # A fail point the test armed and left unspent must not fail the next test's command.
        server.clear_fail_points()
        login.drop()
