"""Users of a test's own on the shared MariaDB, made and dropped as root (who needs no password on
loopback). The shared server itself is never stopped."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncmy
import attrs
from asyncmy.errors import MySQLError
from live_support import skip_or_fail

from servers import OwnDatabase

PORT = int(os.environ.get("MYSQL_PORT", "3306"))
ACCESS_DENIED = 1045


async def as_root(statement: str, *args: Any) -> list[Any]:
    """Run one statement on the shared server as root."""
    conn = await asyncmy.connect(host="127.0.0.1", port=PORT, user="root", connect_timeout=2)
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(statement, args or None)
            rows: list[Any] = await cursor.fetchall()
        await conn.commit()
        return rows
    finally:
        await conn.ensure_closed()


@attrs.define
class Account(OwnDatabase):
    """A user of one test's own, owning a database of the same name, on the shared server."""

    user: str
    password: str = attrs.field(repr=False)
    ports: list[int] = attrs.field(factory=lambda: [PORT])

    async def rotate(self, password: str) -> None:
        """Change the password and end the user's sessions, as a rotation job would."""
        await as_root("ALTER USER %s@'%%' IDENTIFIED BY %s", self.user, password)
        self.password = password
        for (session,) in await as_root(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", self.user
        ):
            await as_root(f"KILL {int(session)}")

    async def refuses(self, password: str) -> bool:
        try:
            conn = await asyncmy.connect(
                host="127.0.0.1", port=PORT, user=self.user, password=password, connect_timeout=2
            )
        except MySQLError as exc:
            return bool(exc.args[0] == ACCESS_DENIED)
        await conn.ensure_closed()
        return False

    async def sessions(self) -> int:
        rows = await as_root(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", self.user
        )
        return int(rows[0][0])


@asynccontextmanager
async def mysql_account() -> AsyncIterator[Account]:
    """A user owning a database of its own, both dropped on exit."""
    try:
        await as_root("SELECT 1")
    except MySQLError as exc:
        skip_or_fail(f"mysql is unreachable (127.0.0.1:{PORT}: {type(exc).__name__} {exc.args[0]})")
    name = f"colima_my_{secrets.token_hex(4)}"
    created = Account(name, secrets.token_urlsafe(18))
    await as_root("CREATE USER %s@'%%' IDENTIFIED BY %s", name, created.password)
    await as_root(f"CREATE DATABASE `{name}`")
    await as_root(f"GRANT ALL ON `{name}`.* TO %s@'%%'", name)
    try:
        yield created
    finally:
        await as_root(f"DROP DATABASE `{name}`")
        await as_root("DROP USER %s@'%%'", name)
