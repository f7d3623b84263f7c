"""Private vhosts and users on the shared RabbitMQ, made with rabbitmqctl and deleted afterwards,
so the broker and its dev_vhost are never disturbed. An account's password may have been rotated by
an earlier test; it knows the current one. The broker itself is never stopped."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import aiormq
import attrs
from live_support import skip_or_fail

HOST = "127.0.0.1"
PORT = int(os.environ.get("RABBITMQ_PORT", "5672"))


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "--quiet", *args], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


async def rabbitmqctl_async(*args: str) -> str:
    """rabbitmqctl without blocking the loop, so the broker's frames are read meanwhile."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "--quiet",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    stdout, _ = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {args[0]} exited with {process.returncode}"
    return stdout.decode()


def cli_safe_password() -> str:
    """A random password rabbitmqctl takes as an argument: one led by '-' reads as an option."""
    return "p" + secrets.token_urlsafe(16)


@attrs.define
class Account:
    """A private vhost and user on the shared broker."""

    user: str
    vhost: str
    password: str = attrs.field(repr=False)
    ports: list[int] = attrs.field(factory=lambda: [PORT])

    def secret(self, password: str | None = None) -> dict[str, str]:
        return {"user": self.user, "password": password or self.password, "vhost": self.vhost}

    def new_password(self) -> str:
        return cli_safe_password()

    async def rotate(self, password: str) -> None:
        """A new password, and the user's connections closed, as a rotation job would."""
        await rabbitmqctl_async("change_password", self.user, password)
        self.password = password
        await rabbitmqctl_async("close_all_user_connections", self.user, "rotation test")
        await asyncio.sleep(0.2)  # lets the adapter's reader take in the broker's Connection.Close

    async def refuses(self, password: str) -> bool:
        try:
            connection = await aiormq.connect(self.amqp_url(password))
        except aiormq.exceptions.ProbableAuthenticationError:
            return True
        await connection.close()
        return False

    async def sessions(self) -> int:
        lines = await rabbitmqctl_async("list_connections", "--no-table-headers", "user")
        return sum(line.strip() == self.user for line in lines.splitlines())

    def durable_queues(self) -> dict[str, bool]:
        lines = rabbitmqctl(
            "list_queues", "-p", self.vhost, "--no-table-headers", "name", "durable"
        )
        return {
            name: flag == "true" for name, flag in (line.split() for line in lines.splitlines())
        }

    def amqp_url(self, password: str | None = None) -> str:
        return f"amqp://{self.user}:{password or self.password}@{HOST}:{PORT}/{self.vhost}"


@contextmanager
def rabbitmq_account(configure: str = ".*") -> Iterator[Account]:
    """A vhost and a user with every permission on it but to configure (declare, delete) what
    ``configure`` does not match, both deleted on exit."""
    if shutil.which("rabbitmqctl") is None:
        skip_or_fail("rabbitmqctl is not installed; it provisions the test vhost")
    name = f"colima_test_{uuid.uuid4().hex[:12]}"
    account = Account(user=name, vhost=name, password=cli_safe_password())
    try:
        rabbitmqctl("add_vhost", account.vhost)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        skip_or_fail(f"rabbitmqctl could not add a vhost ({type(exc).__name__}): broker down?")
    try:
        rabbitmqctl("add_user", account.user, account.password)
        rabbitmqctl("set_permissions", "-p", account.vhost, account.user, configure, ".*", ".*")
        yield account
    finally:
        subprocess.run(["rabbitmqctl", "--quiet", "delete_user", name], capture_output=True)
        subprocess.run(["rabbitmqctl", "--quiet", "delete_vhost", name], capture_output=True)
