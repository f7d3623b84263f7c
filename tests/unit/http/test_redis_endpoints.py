from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from colima_ref.domain.models import SLOT_COUNT
from colima_ref.ports.services import Services

ErrorBody = Callable[[httpx2.Response, int, str], dict[str, Any]]

NODE_FIELDS = {
    "node_id",
    "host",
    "port",
    "role",
    "flags",
    "master_id",
    "ping_sent",
    "pong_recv",
    "config_epoch",
    "link_state",
    "slots_count",
    "slot_ranges",
}


async def test_cluster_nodes_lists_every_node_with_its_roles_and_slots(
    client: TestClient, services: Services
) -> None:
    nodes = {node.node_id: node for node in await services.cluster.nodes()}

    response = client.get("/redis/cluster/nodes")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    assert body["total_nodes"] == len(nodes) == len(body["nodes"])
    for entry in body["nodes"]:
        assert set(entry) == NODE_FIELDS
        node = nodes[entry["node_id"]]
        assert (entry["host"], entry["port"], entry["role"]) == (node.host, node.port, node.role)
        assert entry["flags"] == list(node.flags)
        assert entry["master_id"] == node.master_id
        assert entry["slot_ranges"] == [{"start": r.start, "end": r.end} for r in node.slots]
        assert entry["slots_count"] == sum(r.count for r in node.slots)


def test_cluster_slots_shows_full_coverage_with_each_range_master_and_replicas(
    client: TestClient,
) -> None:
    response = client.get("/redis/cluster/slots")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    assert body["total_slots"] == body["max_slots"] == SLOT_COUNT
    assert body["coverage_percentage"] == 100.0
    assert body["gaps"] == body["overlaps"] == []
    distribution = body["slot_distribution"]
    assert sum(shard["slots_count"] for shard in distribution) == SLOT_COUNT
    for shard in distribution:
        assert shard["slots_count"] == shard["end_slot"] - shard["start_slot"] + 1
        assert set(shard["master"]) == {"host", "port", "node_id"}
        assert shard["replicas"]
        assert all(set(replica) == {"host", "port", "node_id"} for replica in shard["replicas"])


async def test_cluster_info_answers_what_the_cluster_reports(
    client: TestClient, services: Services
) -> None:
    expected = dict(await services.cluster.cluster_info())

    response = client.get("/redis/cluster/info")

    assert response.status_code == 200
    assert response.json() == {"status": "success", "cluster_info": expected}


async def test_node_info_answers_the_named_node(client: TestClient, services: Services) -> None:
    expected = dict(await services.cluster.node_info("redis-1"))

    response = client.get("/redis/nodes/redis-1/info")

    assert response.status_code == 200
    assert response.json() == {"status": "success", "node": "redis-1", "info": expected}


def test_an_unknown_node_is_404(client: TestClient, error_body: ErrorBody) -> None:
    error_body(client.get("/redis/nodes/redis-99/info"), 404, "ResourceNotFoundError")


@pytest.mark.parametrize(
    "path",
    [
        "/redis/cluster/nodes",
        "/redis/cluster/slots",
        "/redis/cluster/info",
        "/redis/nodes/redis-1/info",
    ],
)
def test_the_cluster_down_is_503(
    client: TestClient, services: Services, error_body: ErrorBody, path: str
) -> None:
    services.cluster.failing = True  # type: ignore[attr-defined]

    error_body(client.get(path), 503, "CacheConnectionError")
