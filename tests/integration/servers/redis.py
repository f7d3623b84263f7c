"""Redis servers of the tests' own on free loopback ports: single nodes and a 6-node cluster
(three masters, three replicas), so ACL changes, killed connections and servers coming up late
never disturb the shared devstack. The servers' admin is the ``default`` user."""

from __future__ import annotations

import os
import random
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import redis

Address = tuple[str, int]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_node_port(taken: Sequence[int] = ()) -> int:
    """A port free for a cluster node and for its bus (port + 10000)."""
    while True:
        port = random.randint(20000, 29999)
        if port not in taken and port_is_free(port) and port_is_free(port + 10000):
            return port


def wait_for(condition: Any, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


@attrs.define
class RedisServer:
    """One redis-server process on 127.0.0.1, in the foreground so we own its pid."""

    workdir: Path
    port: int
    admin_password: str = attrs.field(repr=False)
    cluster: bool = True
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        directory = self.workdir / str(self.port)
        directory.mkdir(parents=True, exist_ok=True)
        options = ["--cluster-enabled", "yes", "--cluster-node-timeout", "3000"]
        if self.admin_password:
            options += ["--requirepass", self.admin_password, "--masterauth", self.admin_password]
        with (directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(directory),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    *(options if self.cluster else []),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: self.command("PING"), f"redis-server on {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def admin(self) -> redis.Redis:
        return redis.Redis(
            port=self.port,
            password=self.admin_password or None,
            decode_responses=True,
            socket_timeout=2,
        )

    def command(self, *args: Any) -> Any:
        with self.admin() as client:
            return client.execute_command(*args)


@attrs.define
class PrivateCluster:
    """Three masters and three replicas; the first three ports are created as the masters."""

    servers: list[RedisServer]

    @property
    def addresses(self) -> list[Address]:
        return [("127.0.0.1", server.port) for server in self.servers]

    def create(self) -> None:
        first = self.servers[0]
        subprocess.run(
            [
                "redis-cli",
                "--no-auth-warning",
                "--cluster",
                "create",
                *(f"127.0.0.1:{server.port}" for server in self.servers),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            env={"PATH": os.environ["PATH"], "REDISCLI_AUTH": first.admin_password},
            check=True,
            capture_output=True,
        )
        wait_for(self.healthy, "a healthy private cluster", within=30)

    def healthy(self) -> bool:
        for server in self.servers:
            info = server.command("CLUSTER", "INFO")
            if (
                "cluster_state:ok" not in info
                or f"cluster_known_nodes:{len(self.servers)}" not in info
            ):
                return False
            with server.admin() as client:
                replication = client.info("replication")
            if replication["role"] == "slave" and replication["master_link_status"] != "up":
                return False
        return True

    def on_every_node(self, *args: Any) -> list[Any]:
        return [server.command(*args) for server in self.servers]


@contextmanager
def private_cluster(workdir: Path) -> Iterator[PrivateCluster]:
    admin_password = secrets.token_hex(16)
    ports: list[int] = []
    for _ in range(6):
        ports.append(free_node_port(ports))
    cluster = PrivateCluster([RedisServer(workdir, port, admin_password) for port in ports])
    try:
        for server in cluster.servers:
            server.start()
        cluster.create()
        yield cluster
    finally:
        for server in cluster.servers:
            server.stop()


@attrs.define
class Account:
    """An ACL user of one test's own on every node of ``cluster``; the adapter is given the three
    masters as seeds."""

    cluster: PrivateCluster
    user: str = attrs.field(factory=lambda: f"colima_test_{secrets.token_hex(4)}")
    password: str = attrs.field(factory=lambda: secrets.token_hex(16), repr=False)

    @property
    def ports(self) -> list[int]:
        return [port for _, port in self.cluster.addresses[:3]]

    def secret(self, password: str | None = None) -> dict[str, str]:
        return {"user": self.user, "password": password or self.password}

    def new_password(self) -> str:
        return secrets.token_hex(16)

    def create(self) -> None:
        self.cluster.on_every_node(
            "ACL", "SETUSER", self.user, "on", f">{self.password}", "~*", "&*", "+@all"
        )

    def drop(self) -> None:
        self.cluster.on_every_node("ACL", "DELUSER", self.user)

    async def rotate(self, password: str) -> None:
        self.cluster.on_every_node("ACL", "SETUSER", self.user, "resetpass", f">{password}")
        self.password = password
        # Redis keeps sessions opened with the old password: end them, as a restart would.
        self.cluster.on_every_node("CLIENT", "KILL", "USER", self.user)

    async def refuses(self, password: str) -> bool:
        # A bare connection: a client would retry the refusal with backoff.
        connection = redis.Connection(port=self.ports[0], username=self.user, password=password)
        try:
            connection.connect()
        except redis.AuthenticationError:
            return True
        finally:
            connection.disconnect()
        return False

    async def sessions(self) -> int:
        listings = self.cluster.on_every_node("CLIENT", "LIST")
        return sum(
            1
            for listing in listings
            for client in listing.splitlines()
            if f" user={self.user} " in f" {client} "
        )


@asynccontextmanager
async def redis_account(cluster: PrivateCluster) -> AsyncIterator[Account]:
    login = Account(cluster)
    login.create()
    try:
        yield login
    finally:
        login.drop()
