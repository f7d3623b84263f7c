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

PORT = int(os.environ.get("MYSQL_PORT", "3306"))
ACCESS_DENIED = 1045


@attrs.frozen
class Account:
    user: str
    password: str = attrs.field(repr=False)
    database: str

    def secret(self, password: str | None = None) -> dict[str, str]:
        return {
            "user": self.user,
            "password": password or self.password,
            "database": self.database,
        }


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


async def refuses(account: Account, password: str) -> bool:
    try:
        conn = await asyncmy.connect(
            host="127.0.0.1", port=PORT, user=account.user, password=password, connect_timeout=2
        )
    except MySQLError as exc:
        return bool(exc.args[0] == ACCESS_DENIED)
    await conn.ensure_closed()
    return False


async def sessions_of(account: Account) -> int:
    rows = await as_root(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", account.user
    )
    return int(rows[0][0])


async def rotate(account: Account, password: str) -> None:
    """Change the account's password and end its sessions, as a rotation job would."""
    await as_root("ALTER USER %s@'%%' IDENTIFIED BY %s", account.user, password)
    for (session,) in await as_root(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", account.user
    ):
        await as_root(f"KILL {int(session)}")


@asynccontextmanager
async def mysql_account() -> AsyncIterator[Account]:
    """A user owning a database of its own, both dropped on exit."""
    try:
        await as_root("SELECT 1")
    except MySQLError as exc:
        skip_or_fail(f"mysql is unreachable (127.0.0.1:{PORT}: {type(exc).__name__} {exc.args[0]})")
    name = f"colima_my_{secrets.token_hex(4)}"
    created = Account(name, secrets.token_urlsafe(18), name)
    await as_root("CREATE USER %s@'%%' IDENTIFIED BY %s", name, created.password)
    await as_root(f"CREATE DATABASE `{name}`")
    await as_root(f"GRANT ALL ON `{name}`.* TO %s@'%%'", name)
    try:
        yield created
    finally:
        await as_root(f"DROP DATABASE `{name}`")
        await as_root("DROP USER %s@'%%'", name)


@attrs.define
class MySqlLogin:
    """A user and database of one test's own on the shared server."""

    account: Account
    password: str = attrs.field(repr=False)
    ports: list[int] = attrs.field(factory=lambda: [PORT])

    def secret(self, password: str | None = None) -> dict[str, str]:
        return self.account.secret(password or self.password)

    def new_password(self) -> str:
        return secrets.token_urlsafe(18)

    async def rotate(self, password: str) -> None:
        await rotate(self.account, password)
        self.password = password

    async def refuses(self, password: str) -> bool:
        return await refuses(self.account, password)

    async def sessions(self) -> int:
        return await sessions_of(self.account)


@asynccontextmanager
async def mysql_login() -> AsyncIterator[MySqlLogin]:
    async with mysql_account() as account:
        yield MySqlLogin(account, account.password)
