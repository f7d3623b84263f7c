"""PostgreSQL servers: the shared one on POSTGRES_PORT (which trusts every local login, so it
cannot refuse a password) and private ones started on a free port with scram-sha-256, which a test
may stop. The shared one is never stopped or reconfigured."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import attrs
import psycopg
from live_support import free_port, skip_or_fail
from psycopg import sql

from servers import OwnDatabase

SHARED_PORT = int(os.environ.get("POSTGRES_PORT", "5432"))


def newest_server_binaries() -> Path:
    """Debian's layout, /usr/lib/postgresql/<major>/bin; PG_BIN names another place."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda bin_dir: int(bin_dir.parent.name)
    )
    return found[-1] if found else Path("/usr/lib/postgresql/bin")


PG_BIN = Path(os.environ.get("PG_BIN") or newest_server_binaries())


@attrs.define
class Account(OwnDatabase):
    """A login role of one test's own, owning a database of the same name, on ``server``."""

    server: Server = attrs.field(repr=False)
    user: str
    password: str = attrs.field(repr=False)

    @property
    def ports(self) -> list[int]:
        return [self.server.port]

    async def rotate(self, password: str) -> None:
        await self.server.rotate(self, password)
        self.password = password

    async def refuses(self, password: str) -> bool:
        return await self.server.refuses(self, password)

    async def sessions(self) -> int:
        return await self.server.sessions_of(self)


@attrs.define
class Server:
    """A PostgreSQL server we may create accounts on, as superuser ``postgres``."""

    port: int
    admin_password: str | None = attrs.field(default=None, repr=False)

    async def admin(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        return await psycopg.AsyncConnection.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.admin_password,
            dbname="postgres",
            autocommit=True,
            connect_timeout=2,
        )

    async def execute(self, statement: sql.Composable) -> list[tuple[object, ...]]:
        async with await self.admin() as conn:
            cursor = await conn.execute(statement)
            return await cursor.fetchall() if cursor.description else []

    @asynccontextmanager
    async def account(self) -> AsyncIterator[Account]:
        """A fresh login role owning a fresh database, both dropped on exit."""
        name = f"colima_pg_{secrets.token_hex(4)}"
        account = Account(self, name, secrets.token_urlsafe(18))
        user = sql.Identifier(name)
        await self.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(user, account.password)
        )
        await self.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(user, user))
        try:
            yield account
        finally:
            await self.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(user))
            await self.execute(sql.SQL("DROP ROLE {}").format(user))

    async def rotate(self, account: Account, password: str) -> None:
        """Change the account's password and end its sessions, as a rotation job would."""
        await self.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(account.user), password)
        )
        await self.execute(
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {}"
            ).format(account.user)
        )

    async def sessions_of(self, account: Account) -> int:
        rows = await self.execute(
            sql.SQL("SELECT count(*) FROM pg_stat_activity WHERE usename = {}").format(account.user)
        )
        return int(str(rows[0][0]))

    async def refuses(self, account: Account, password: str) -> bool:
        try:
            conn = await psycopg.AsyncConnection.connect(
                host="127.0.0.1",
                port=self.port,
                user=account.user,
                password=password,
                dbname=account.database,
                connect_timeout=2,
            )
        except psycopg.OperationalError as exc:
            return "password authentication failed" in str(exc)
        await conn.close()
        return False


async def shared_server() -> Server:
    """The shared server, once it answers; skips (fails under CI=true) when it does not."""
    server = Server(SHARED_PORT)
    try:
        await server.execute(sql.SQL("SELECT 1"))
    except psycopg.OperationalError as exc:
        skip_or_fail(f"postgres is unreachable (127.0.0.1:{SHARED_PORT}: {type(exc).__name__})")
    return server


@attrs.define
class PrivateServer(Server):
    """A throwaway cluster that checks passwords (scram-sha-256) and may be stopped at will."""

    workdir: Path = attrs.field(kw_only=True)

    def _run(self, *argv: str) -> None:
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        # initdb and postgres refuse to run as root.
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        password_file = self.workdir / "pw"
        password_file.write_text(f"{self.admin_password}\n")
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
            shutil.chown(password_file, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.workdir / "data"),
            "-U",
            "postgres",
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server unless it runs already."""
        if (self.workdir / "data" / "postmaster.pid").exists():
            return
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.workdir / "data"),
            "-o",
            options,
            "-l",
            str(self.workdir / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        """Stop the server if it runs."""
        if not (self.workdir / "data" / "postmaster.pid").exists():
            return
        self._run("pg_ctl", "-D", str(self.workdir / "data"), "-m", "fast", "-w", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivateServer]:
    """A PrivateServer on a free port for the length of the block, removed afterwards."""
    if not (PG_BIN / "initdb").exists():
        skip_or_fail(f"postgres: no initdb in {PG_BIN} to start a private server; set PG_BIN")
    # Not under pytest's tmp_path: its parent is private to root, and the server runs as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="colima-pg-"))
    server = PrivateServer(free_port(), secrets.token_urlsafe(18), workdir=workdir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir)
