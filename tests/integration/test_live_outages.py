"""Each backend killed and brought back while one live server keeps running.

The server reaches every backend through a TCP relay this module starts (`live_support.Relay`), so
a test can cut a backend (connections reset, new ones refused) and restore it without touching
the shared devstack. Redis is the devstack's standalone server (6379) behind a relay, with
REDIS_NODES empty: a cluster announces its nodes' real ports, which a relay cannot stand in for.
Its secret is a copy without a password, in a Vault folder of its own (VAULT_PATH_PREFIX).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import attrs
import httpx2
import hvac
import pytest
from live_support import QUIET, LiveServer, Relay, VaultFolder, addresses, assert_clean_shutdown

pytestmark = [
    pytest.mark.integration,
    pytest.mark.vault,
    pytest.mark.postgres,
    pytest.mark.mysql,
    pytest.mark.mongodb,
    pytest.mark.redis,
    pytest.mark.rabbitmq,
]

STANDALONE_REDIS = ("127.0.0.1", 6379)
DOWN_WITHIN = 5.5  # seconds: the operation timeout (5 s) and some slack
BACK_WITHIN = 10.0  # seconds after the backend returns
ERROR_BODY = {"error", "message", "status_code", "details", "request_id"}

ENDPOINTS = {
    "vault": ["/examples/vault/secret/postgres"],
    "postgres": ["/examples/database/postgres/query"],
    "mysql": ["/examples/database/mysql/query"],
    "mongodb": ["/examples/database/mongodb/query"],
    "redis": ["/examples/cache/outage-probe"],
    "rabbitmq": ["/examples/messaging/queue/outage-probe/info"],
}


@attrs.frozen
class Stack:
    server: LiveServer
    relays: dict[str, Relay]


@pytest.fixture(scope="module")
def stack(
    devstack: dict[str, str],
    vault_admin: hvac.Client,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    targets = {service: where[0] for service, where in addresses(devstack).items()}
    relays = {service: Relay(target) for service, target in targets.items()}
    relays["redis"] = Relay(STANDALONE_REDIS)
    for relay in relays.values():
        relay.restore()
    folder = VaultFolder(vault_admin)
    folder.copy_devstack()
    folder.write("redis-1", {"host": STANDALONE_REDIS[0], "port": str(STANDALONE_REDIS[1])})
    env = {
        **devstack,
        **QUIET,
        "VAULT_ADDR": f"http://127.0.0.1:{relays['vault'].port}",
        "VAULT_PATH_PREFIX": folder.prefix,
        "REDIS_NODES": "",
        **{f"{service.upper()}_PORT": str(relay.port) for service, relay in relays.items()},
    }
    server = LiveServer(env, tmp_path_factory.mktemp("live-outages"))
    try:
        server.start()
        yield Stack(server, relays)
        assert_clean_shutdown(server, server.stop())
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop()
        folder.delete()
        for relay in relays.values():
            relay.close()


def timed_get(server: LiveServer, path: str) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    response = server.get(path)
    return response, time.monotonic() - started


@pytest.mark.parametrize("service", list(ENDPOINTS))
def test_a_killed_backend_answers_503_at_once_and_recovers_without_a_restart(
    stack: Stack, service: str
) -> None:
    server, relay = stack.server, stack.relays[service]
    others = [path for name, paths in ENDPOINTS.items() if name != service for path in paths]
    for path in [*ENDPOINTS[service], *others]:
        assert server.get(path).status_code == 200, path

    relay.cut()
    try:
        for path in ENDPOINTS[service]:
            response, elapsed = timed_get(server, path)
            print(f"\n{service} down: {path} answered {response.status_code} in {elapsed:.3f} s")
            assert response.status_code == 503, response.text
            assert set(response.json()) == ERROR_BODY
            assert response.json()["details"]["service"] == service
            assert elapsed < DOWN_WITHIN
        health, elapsed = timed_get(server, f"/health/{service}")
        print(f"{service} down: /health/{service} answered {health.status_code} in {elapsed:.3f} s")
        assert health.status_code == 503
        assert elapsed < DOWN_WITHIN
        assert {path: server.get(path).status_code for path in others} == dict.fromkeys(others, 200)
    finally:
        relay.restore()

    started = time.monotonic()
    while server.get(ENDPOINTS[service][0]).status_code != 200:
        assert time.monotonic() - started < BACK_WITHIN, f"{service} did not recover"
        time.sleep(0.1)
    print(f"{service} back: 200 again after {time.monotonic() - started:.2f} s")
    assert server.get(f"/health/{service}").status_code == 200
