"""The whole HTTP contract served by a real `colima-ref serve --backend live` over the devstack.

One server per module, started with the variables of `scripts/devstack.sh env` (LOG_LEVEL=DEBUG,
so driver log lines are searched for leaks too). Every response is kept; the last test stops
the server and searches its output and every response for each password Vault holds.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx2
import hvac
import pytest
from live_support import (
    SECRET_PATHS,
    WHOLE_STACK,
    LiveServer,
    assert_clean_shutdown,
    read_secret,
)
from pymongo import MongoClient

pytestmark = WHOLE_STACK

SERVICES = ("vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq")
bodies: list[str] = []


@pytest.fixture(scope="module")
def server(
    devstack: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    live = LiveServer({**devstack, "LOG_LEVEL": "DEBUG"}, tmp_path_factory.mktemp("live-app"))
    live.client.event_hooks["response"] = [lambda response: bodies.append(response.read().decode())]
    live.start()
    yield live
    live.stop_if_running()


@pytest.fixture
def queue(vault_admin: hvac.Client) -> Iterator[str]:
    name = f"colima-live-{uuid.uuid4().hex[:8]}"
    yield name
    vhost = read_secret(vault_admin, "rabbitmq")["vhost"]
    subprocess.run(
        ["rabbitmqctl", "-q", "delete_queue", "-p", vhost, name],
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def collection(vault_admin: hvac.Client) -> Iterator[str]:
    """A collection of this test's own in the database of secret/mongodb, dropped afterwards."""
    secret = read_secret(vault_admin, "mongodb")
    name = f"colima-live-{uuid.uuid4().hex[:8]}"
    client: MongoClient[dict[str, object]] = MongoClient(
        secret["host"],
        int(secret["port"]),
        username=secret["user"],
        password=secret["password"],
        authSource=secret["database"],
        serverSelectionTimeoutMS=5000,
    )
    database = client[secret["database"]]
    try:
        database.create_collection(name)
        try:
            yield name
        finally:
            database.drop_collection(name)
    finally:
        client.close()


def near_now(text: str) -> bool:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return abs(moment - datetime.now(UTC)) < timedelta(seconds=60)


def ok(response: httpx2.Response) -> dict[str, object]:
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_liveness_and_root_report_the_live_backend(server: LiveServer) -> None:
    assert ok(server.get("/health/")) == {"status": "ok"}
    assert server.get("/").status_code == 200


def test_every_service_is_healthy_in_the_aggregate_report(server: LiveServer) -> None:
    body = ok(server.get("/health/all"))

    assert body["status"] == "healthy"
    assert body["backend"] == "live"
    services = body["services"]
    assert isinstance(services, dict)
    assert {name: services[name]["status"] for name in SERVICES} == dict.fromkeys(
        SERVICES, "healthy"
    )


def test_the_health_of_each_service_shows_its_real_server(server: LiveServer) -> None:
    vault = ok(server.get("/health/vault"))
    assert vault["details"] == {"initialized": True, "sealed": False, "standby": False}
    assert str(ok(server.get("/health/postgres"))["version"]).startswith("PostgreSQL 1")
    assert "MariaDB" in str(ok(server.get("/health/mysql"))["version"])
    assert ok(server.get("/health/mongodb"))["status"] == "healthy"
    redis = ok(server.get("/health/redis"))
    assert (redis["cluster_enabled"], redis["cluster_state"], redis["total_nodes"]) == (
        True,
        "ok",
        6,
    )
    assert str(ok(server.get("/health/rabbitmq"))["version"]).startswith("3.")


def test_both_sql_databases_answer_their_current_time(server: LiveServer) -> None:
    postgres = ok(server.get("/examples/database/postgres/query"))
    mysql = ok(server.get("/examples/database/mysql/query"))

    assert postgres["query"] == "SELECT current_timestamp"
    assert near_now(str(postgres["result"]))
    assert mysql["query"] == "SELECT NOW()"
    assert near_now(str(mysql["result"]))


def test_mongodb_lists_a_collection_the_test_created(server: LiveServer, collection: str) -> None:
    body = ok(server.get("/examples/database/mongodb/query"))

    assert collection in body["collections"]  # type: ignore[operator]
    assert body["count"] == len(body["collections"])  # type: ignore[arg-type]


def test_the_cluster_shows_six_nodes_and_covers_every_slot(server: LiveServer) -> None:
    nodes = ok(server.get("/redis/cluster/nodes"))
    slots = ok(server.get("/redis/cluster/slots"))
    info = ok(server.get("/redis/cluster/info"))

    assert nodes["total_nodes"] == 6
    roles = sorted(node["role"] for node in nodes["nodes"])  # type: ignore[attr-defined]
    assert roles == ["master"] * 3 + ["replica"] * 3
    assert slots["coverage_percentage"] == 100.0
    assert slots["total_slots"] == 16384
    assert info["cluster_info"]["cluster_state"] == "ok"  # type: ignore[index]


@pytest.mark.parametrize("named_by", ["name", "address"])
def test_node_info_answers_for_a_node_name_and_its_address(
    server: LiveServer, devstack: dict[str, str], named_by: str
) -> None:
    node = "redis-1" if named_by == "name" else devstack["REDIS_NODES"].split(",")[0]

    body = ok(server.get(f"/redis/nodes/{node}/info"))

    assert body["node"] == node
    assert body["info"]["redis_mode"] == "cluster"  # type: ignore[index]


def test_an_unknown_node_is_not_found(server: LiveServer) -> None:
    assert server.get("/redis/nodes/redis-99/info").status_code == 404


def test_a_cached_value_round_trips_through_the_cluster(server: LiveServer) -> None:
    key = f"live:{uuid.uuid4().hex}"

    stored = server.client.post(f"/examples/cache/{key}", params={"value": "v1", "ttl": 60})
    read = ok(server.get(f"/examples/cache/{key}"))
    deleted = ok(server.client.delete(f"/examples/cache/{key}"))
    gone = ok(server.get(f"/examples/cache/{key}"))

    assert stored.json() == {"key": key, "value": "v1", "ttl": 60, "action": "set"}
    assert (read["value"], read["exists"]) == ("v1", True)
    assert 0 < int(str(read["ttl"])) <= 60
    assert deleted["deleted"] is True
    assert (gone["exists"], gone["value"]) == (False, None)


def test_each_publish_adds_exactly_one_message_to_the_queue(server: LiveServer, queue: str) -> None:
    counts = []
    for number in range(3):
        published = server.client.post(
            "/examples/messaging/publish", params={"queue_name": queue}, json={"n": number}
        )
        assert published.status_code == 200, published.text
        counts.append(ok(server.get(f"/examples/messaging/queue/{queue}/info"))["message_count"])

    assert counts == [1, 2, 3]


def test_an_unknown_queue_does_not_exist(server: LiveServer) -> None:
    body = ok(server.get(f"/examples/messaging/queue/colima-none-{uuid.uuid4().hex}/info"))

    assert body["exists"] is False


def test_a_vault_secret_shows_the_user_and_masks_the_password(
    server: LiveServer, vault_admin: hvac.Client
) -> None:
    body = ok(server.get("/examples/vault/secret/postgres"))
    field = ok(server.get("/examples/vault/secret/postgres/password"))

    assert body["data"]["user"] == read_secret(vault_admin, "postgres")["user"]  # type: ignore[index]
    assert body["data"]["password"] == "***"  # type: ignore[index]
    assert field["value"] == "***"


def test_no_password_from_vault_appears_in_any_response_or_output_and_shutdown_is_clean(
    server: LiveServer, vault_admin: hvac.Client
) -> None:
    """Runs last: it stops the module's server."""
    passwords = {read_secret(vault_admin, path)["password"] for path in SECRET_PATHS}
    assert len(bodies) > 20

    code = server.stop()

    searched = {"stdout": server.stdout, "stderr": server.stderr, "responses": "\n".join(bodies)}
    leaks = [where for where, text in searched.items() for pw in passwords if pw and pw in text]
    assert leaks == []
    assert_clean_shutdown(server, code)
