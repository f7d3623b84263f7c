"""A Redis Cluster master killed under steady traffic through the live server.

The cluster (3 masters, 3 replicas) is this module's own, on free loopback ports, so the shared
devstack cluster is never disturbed; the fixture stops every node by its pid and removes its
directory. The server is `colima-ref serve --backend live` with REDIS_NODES on that cluster and
its Redis login in a Vault folder of its own.

The nodes run with ``cluster-require-full-coverage no``: with the default (yes), every node
refuses every command (CLUSTERDOWN) from the moment the dead master is flagged as failed until
its replica takes over, whatever the client does.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx2
import hvac
import pytest
import redis
from live_support import CLIENT_LIMITS, QUIET, LiveServer, VaultFolder
from servers.redis import free_node_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.vault]

USER = "colima_failover"
KEYS_PER_MASTER = 3
# Detection of the dead master takes one node timeout, the replica's election about as long again.
NODE_TIMEOUT_MS = 1000
RECOVERY_WITHIN = 20.0  # seconds from the kill
STABLE_FOR = 1.5  # seconds of only 2xx on the dead master's keys that count as recovered
# Seconds: an open breaker answers without touching Redis, the median refusal at once and even
# the slowest on a busy machine far sooner than the operation timeout (5 s) a wait on Redis takes.
MEDIAN_REFUSAL_WITHIN = 0.05
SLOWEST_REFUSAL_WITHIN = 1.0


@attrs.define
class Node:
    """One redis-server in the foreground, so its pid is ours to kill."""

    directory: Path
    port: int
    password: str = attrs.field(repr=False)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True)
        log = (self.directory / "redis.log").open("wb")
        with log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--dir", str(self.directory),
                    "--save", "",
                    "--appendonly", "no",
                    "--cluster-enabled", "yes",
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    "--cluster-require-full-coverage", "no",
                    # As the devstack: replicas show in CLUSTER SLOTS soon after they sync.
                    "--repl-ping-replica-period", "1",
                    "--requirepass", self.password,
                    "--user", USER, "on", f">{self.password}", "~*", "&*", "+@all",
                    "--masteruser", USER,
                    "--masterauth", self.password,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def admin(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, password=self.password, decode_responses=True, socket_timeout=2
        )

    def command(self, *args: Any) -> Any:
        with self.admin() as client:
            return client.execute_command(*args)

    def answers(self) -> bool:
        return self.command("PING") is True

    def kill(self) -> None:
        """SIGKILL: a crashed master, whose connections reset and whose port refuses."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


@attrs.define
class Cluster:
    nodes: list[Node]
    password: str = attrs.field(repr=False)

    @property
    def seeds(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def role(self, node: Node) -> str:
        role: str = node.command("INFO", "replication")["role"]
        return role

    def replica_of(self, master: Node) -> Node:
        for node in self.nodes:
            replication = node.command("INFO", "replication")
            if replication["role"] == "slave" and replication["master_port"] == master.port:
                return node
        raise AssertionError(f"no replica of {master.port}")

    def slots(self) -> list[tuple[int, int, list[int]]]:
        """CLUSTER SLOTS: each range with the ports serving it, its master's first."""
        ranges = self.nodes[0].command("CLUSTER", "SLOTS")
        return [(start, end, [int(node[1]) for node in nodes]) for start, end, *nodes in ranges]

    def healthy(self) -> bool:
        for node in self.nodes:
            info = node.command("CLUSTER", "INFO")
            if "cluster_state:ok" not in info or "cluster_known_nodes:6" not in info:
                return False
        # Clients learn the nodes from CLUSTER SLOTS, which lists a replica only once its
        # replication offset has been gossiped.
        return len({port for _, _, ports in self.slots() for port in ports}) == 6


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    workdir = Path(tempfile.mkdtemp(prefix="colima-redis-failover-"))
    password = secrets.token_hex(16)
    ports: list[int] = []
    for _ in range(6):
        ports.append(free_node_port(ports))
    built = Cluster([Node(workdir / str(port), port, password) for port in ports], password)
    try:
        for node in built.nodes:
            node.start()
        for node in built.nodes:
            wait_for(node.answers, f"redis-server on {node.port}", within=10)
        # The first three addresses become the masters.
        subprocess.run(
            [
                "redis-cli", "--no-auth-warning", "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in ports),
                "--cluster-replicas", "1", "--cluster-yes",
            ],
            env={"PATH": os.environ["PATH"], "REDISCLI_AUTH": password},
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        wait_for(built.healthy, "a healthy cluster with every replica listed", within=60)
        yield built
    finally:
        for node in built.nodes:
            node.stop()
        shutil.rmtree(workdir)


@pytest.fixture
def server(
    cluster: Cluster,
    devstack: dict[str, str],
    vault_admin: hvac.Client,
    tmp_path: Path,
) -> Iterator[LiveServer]:
    folder = VaultFolder(vault_admin)
    folder.copy_devstack()
    folder.write("redis-1", {"user": USER, "password": cluster.password})
    env = {
        **devstack,
        **QUIET,
        "VAULT_PATH_PREFIX": folder.prefix,
        "REDIS_NODES": cluster.seeds,
    }
    live = LiveServer(env, tmp_path)
    try:
        live.start()
        yield live
    finally:
        live.stop_if_running()
        folder.delete()


def keys_by_master(cluster: Cluster) -> dict[int, list[str]]:
    """``KEYS_PER_MASTER`` keys on each master, found by asking the cluster for their slots."""
    owners = {(start, end): ports[0] for start, end, ports in cluster.slots()}
    found: dict[int, list[str]] = {port: [] for port in set(owners.values())}
    for number in range(10_000):
        key = f"failover-{number}"
        slot = cluster.nodes[0].command("CLUSTER", "KEYSLOT", key)
        [port] = [port for (start, end), port in owners.items() if start <= slot <= end]
        if len(found[port]) < KEYS_PER_MASTER:
            found[port].append(key)
        if all(len(keys) == KEYS_PER_MASTER for keys in found.values()):
            return found
    raise AssertionError("no keys for every master")


@attrs.frozen
class Answer:
    key: str
    sent: float  # time.monotonic()
    seconds: float
    status: int
    error: str | None

    @property
    def done(self) -> float:
        return self.sent + self.seconds


async def steady_traffic(
    client: httpx2.AsyncClient, keys: list[str], answers: list[Answer], stop: asyncio.Event
) -> None:
    """GET each key over and over, one request at a time per key, until ``stop``."""

    async def read(key: str) -> None:
        while not stop.is_set():
            sent = time.monotonic()
            error: str | None
            try:
                response = await client.get(f"/examples/cache/{key}")
            except httpx2.TransportError as exc:
                status, error = 0, type(exc).__name__
            else:
                status = response.status_code
                error = None if status < 300 else response.json()["error"]
            answers.append(Answer(key, sent, time.monotonic() - sent, status, error))

    await asyncio.gather(*(read(key) for key in keys))


def stable_since(answers: list[Answer], keys: list[str], now: float) -> bool:
    """Whether ``keys`` have answered only 2xx for the last STABLE_FOR seconds."""
    recent = [a for a in answers if a.key in keys and a.done > now - STABLE_FOR]
    return len(recent) >= len(keys) and all(a.status < 300 for a in recent)


async def breaker_showing_open(client: httpx2.AsyncClient, node: str) -> dict[str, Any] | None:
    """The redis breaker as /health/redis shows it, if it shows ``node``'s open; else None."""
    breaker: dict[str, Any] = (await client.get("/health/redis")).json()["circuit_breaker"]
    if breaker.get("nodes", {}).get(node, {}).get("state") == "open":
        return breaker
    return None


async def test_a_killed_master_fails_only_its_own_keys_and_they_recover_after_the_failover(
    cluster: Cluster, server: LiveServer
) -> None:
    owned = keys_by_master(cluster)
    dead_master = cluster.nodes[0]
    doomed = owned.pop(dead_master.port)
    healthy = [key for keys in owned.values() for key in keys]
    replica = cluster.replica_of(dead_master)
    answers: list[Answer] = []
    stop = asyncio.Event()
    promoted = shown_open = recovered = None
    async with httpx2.AsyncClient(
        base_url=server.base_url, timeout=15, limits=CLIENT_LIMITS
    ) as client:
        for key in doomed + healthy:
            written = await client.post(f"/examples/cache/{key}", params={"value": key})
            assert written.status_code == 200, written.text
        # So the replica holds what was written before its master dies.
        dead_master.command("WAIT", 1, 2000)
        traffic = asyncio.create_task(steady_traffic(client, doomed + healthy, answers, stop))
        await asyncio.sleep(1.0)

        dead_master.kill()
        killed = time.monotonic()
        while (now := time.monotonic()) - killed < RECOVERY_WITHIN:
            if promoted is None and cluster.role(replica) == "master":
                promoted = now - killed
            if shown_open is None:
                shown_open = await breaker_showing_open(client, f"127.0.0.1:{dead_master.port}")
            if promoted is not None and stable_since(answers, doomed, now):
                recovered = now - killed
                break
            await asyncio.sleep(0.1)
        stop.set()
        await traffic
        after = {key: await client.get(f"/examples/cache/{key}") for key in doomed + healthy}
        health = (await client.get("/health/redis")).json()
        metrics = (await client.get("/metrics")).text

    on_healthy = [a for a in answers if a.key in healthy]
    on_doomed = [a for a in answers if a.key in doomed]
    refusals = [a for a in on_doomed if a.error == "CircuitBreakerError"]
    failures = [a.done - killed for a in on_doomed if a.status >= 300]
    refusal_seconds = [a.seconds for a in refusals]
    print(
        f"\nhealthy masters' keys: {len(on_healthy)} requests, "
        f"{dict(Counter((a.status, a.error) for a in on_healthy))}"
        f"\ndead master's keys: {len(on_doomed)} requests, "
        f"{dict(Counter((a.status, a.error) for a in on_doomed))}"
        f"\nreplica promoted {promoted} s after the kill; the dead master's keys answered "
        f"their last non-2xx {max(failures, default=None)} s after it; refusals by the open "
        f"breaker took {statistics.median(refusal_seconds or [0]):.4f} s (median), "
        f"{max(refusal_seconds, default=0):.4f} s (slowest)"
    )
    assert promoted is not None, "the replica never took over"
    assert [a for a in on_healthy if a.status >= 300] == []
    assert refusals, "the dead master's breaker never opened"
    assert statistics.median(refusal_seconds) < MEDIAN_REFUSAL_WITHIN
    assert max(refusal_seconds) < SLOWEST_REFUSAL_WITHIN
    assert {a.status for a in on_doomed} <= {200, 503}
    assert recovered is not None, f"its keys did not recover within {RECOVERY_WITHIN} s"
    assert shown_open is not None, "/health/redis never showed the dead master's breaker open"
    assert shown_open["state"] == "half-open"
    assert {key: response.status_code for key, response in after.items()} == dict.fromkeys(
        after, 200
    )
    assert all(response.json()["value"] == key for key, response in after.items())
    assert health["circuit_breaker"]["state"] == "closed"
    for line in (
        'circuit_breaker_state{service="redis"} 0.0',
        'circuit_breaker_half_open_total{service="redis"} 1.0',
        'circuit_breaker_closed_total{service="redis"} 1.0',
        'circuit_breaker_opened_total{service="redis"} 0.0',
    ):
        assert line in metrics
