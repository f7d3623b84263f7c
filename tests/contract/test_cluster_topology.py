"""Behaviour every ClusterTopology shares: a healthy cluster whose masters own every slot once."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from colima_ref.domain.errors import ResourceNotFoundError
from colima_ref.domain.models import SLOT_COUNT
from colima_ref.ports.cluster import ClusterTopology

from .conftest import open_adapter

INFO_ROLE = {"master": "master", "replica": "slave"}


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[ClusterTopology]:
    async with open_adapter(ClusterTopology, request.param) as opened:
        yield opened


async def test_masters_own_every_slot_exactly_once(cluster: ClusterTopology) -> None:
    nodes = await cluster.nodes()

    owned = sorted(
        slot
        for node in nodes
        if node.role == "master"
        for slots in node.slots
        for slot in range(slots.start, slots.end + 1)
    )

    assert owned == list(range(SLOT_COUNT))


async def test_every_replica_follows_a_known_master_and_owns_no_slots(
    cluster: ClusterTopology,
) -> None:
    nodes = await cluster.nodes()
    masters = {node.node_id for node in nodes if node.role == "master"}

    replicas = [node for node in nodes if node.role == "replica"]

    assert replicas
    assert all(node.master_id in masters and not node.slots for node in replicas)


async def test_node_ids_are_distinct_forty_hex_digits(cluster: ClusterTopology) -> None:
    ids = [node.node_id for node in await cluster.nodes()]

    assert all(re.fullmatch(r"[0-9a-f]{40}", node_id) for node_id in ids)
    assert len(set(ids)) == len(ids)


async def test_cluster_info_reports_a_complete_cluster_in_numbers(
    cluster: ClusterTopology,
) -> None:
    nodes = await cluster.nodes()

    info = await cluster.cluster_info()

    assert info["cluster_state"] == "ok"
    assert info["cluster_slots_assigned"] == SLOT_COUNT
    assert info["cluster_known_nodes"] == len(nodes)
    assert info["cluster_size"] == sum(1 for node in nodes if node.role == "master" and node.slots)


async def test_node_info_by_configured_name_reports_a_cluster_node(
    cluster: ClusterTopology,
) -> None:
    info = await cluster.node_info("redis-1")

    assert info["redis_mode"] == "cluster"
    assert isinstance(info["redis_version"], str)
    assert info["role"] in {"master", "slave"}


async def test_node_info_by_address_describes_that_node(cluster: ClusterTopology) -> None:
    for node in await cluster.nodes():
        info = await cluster.node_info(node.address)

        assert info["tcp_port"] == node.port
        assert info["role"] == INFO_ROLE[node.role]


async def test_node_info_of_an_unknown_node_raises_not_found_naming_it(
    cluster: ClusterTopology,
) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        await cluster.node_info("redis-99")

    assert caught.value.details["node"] == "redis-99"
