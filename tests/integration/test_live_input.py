"""Input as uvicorn decodes it, on a live server over the devstack: refused or used as sent,
never normalised, and junk query strings never new entries in the shared Redis Cluster cache.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import hvac
import pytest
import redis
from live_support import WHOLE_STACK, LiveServer, read_secret

pytestmark = WHOLE_STACK


@pytest.fixture(scope="module")
def server(
    devstack: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    live = LiveServer({**devstack, "RATE_LIMIT_ENABLED": "false"}, tmp_path_factory.mktemp("in"))
    live.start()
    yield live
    live.stop_if_running()


@pytest.fixture(scope="module")
def cluster(devstack: dict[str, str], vault_admin: hvac.Client) -> Iterator[redis.RedisCluster]:
    host, _, port = devstack["REDIS_NODES"].split(",")[0].rpartition(":")
    password = read_secret(vault_admin, "redis-1").get("password")
    client = redis.RedisCluster(host=host, port=int(port), password=password)
    yield client
    client.close()


def test_a_control_character_in_a_cache_key_is_refused_and_the_bare_key_untouched(
    server: LiveServer,
) -> None:
    bare = f"live-{uuid.uuid4().hex[:8]}"
    server.client.post(f"/examples/cache/{bare}", params={"value": "kept"})

    written = server.client.post(f"/examples/cache/{bare}%0C", params={"value": "x"})
    deleted = server.client.delete(f"/examples/cache/{bare}%0C")
    after = server.get(f"/examples/cache/{bare}").json()
    server.client.delete(f"/examples/cache/{bare}")

    assert (written.status_code, written.json()["details"]) == (422, {"field": "key"})
    assert (deleted.status_code, deleted.json()["details"]) == (422, {"field": "key"})
    assert after["value"] == "kept"


@pytest.mark.parametrize(
    "path",
    [
        "/health/all%0A",
        "/examples/database/postgres/query%0A",
        "/examples/vault/secret/postgres%2Fuser",
        "/redis/nodes/redis-1%FF/info",
    ],
)
def test_a_path_the_router_would_read_otherwise_is_refused(server: LiveServer, path: str) -> None:
    response = server.get(path)

    assert response.status_code == 422, response.text
    assert response.json()["details"] == {"field": "path"}
    assert response.json()["request_id"] == response.headers["X-Request-ID"]


def test_junk_query_strings_are_served_from_the_one_cache_entry(
    server: LiveServer, cluster: redis.RedisCluster
) -> None:
    junk = f"junk-{uuid.uuid4().hex[:8]}"
    path = "/examples/vault/secret/postgres"

    answers = [server.get(path, params={junk: str(n)}).headers["X-Cache"] for n in range(20)]
    keys = list(cluster.scan_iter(match=f"cache:*{junk}*", target_nodes=cluster.PRIMARIES))

    assert answers[1:] == ["HIT"] * 19
    assert keys == []
    assert cluster.exists("cache:/examples/vault/secret/{service_name}:service_name=postgres?")
