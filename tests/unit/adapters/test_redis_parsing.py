"""What RedisClusterTopology reads out of CLUSTER NODES and CLUSTER INFO text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from colima_ref.adapters.redis.cluster import parse_cluster_info, parse_cluster_nodes
from colima_ref.domain.models import SLOT_COUNT, ClusterNode, SlotRange
from colima_ref.domain.slots import merge_ranges

MASTER = "6784fce0b5909d2bc17d28841b4b865d69208b8d"
REPLICA = "d30452841fec7a4e9e9c0676ea49c330b67ab60a"


def test_a_master_line_gives_its_flags_epoch_link_and_slot_ranges() -> None:
    line = f"{MASTER} 127.0.0.1:7001@17001 myself,master - 0 1795686150000 1 connected 0-5460 5462"

    [node] = parse_cluster_nodes(line)

    assert node == ClusterNode(
        node_id=MASTER,
        host="127.0.0.1",
        port=7001,
        role="master",
        flags=("myself", "master"),
        master_id=None,
        ping_sent="0",
        pong_recv="1795686150000",
        config_epoch=1,
        link_state="connected",
        slots=(SlotRange(0, 5460), SlotRange(5462, 5462)),
    )


def test_a_replica_line_names_its_master_and_owns_no_slots() -> None:
    line = f"{REPLICA} 127.0.0.1:7005@17005 slave {MASTER} 0 1795686150124 1 connected"

    [node] = parse_cluster_nodes(line)

    assert (node.role, node.flags, node.master_id, node.slots) == (
        "replica",
        ("slave",),
        MASTER,
        (),
    )


def test_slots_being_migrated_or_imported_are_left_to_their_owner() -> None:
    line = (
        f"{MASTER} 127.0.0.1:7001@17001 master - 0 0 1 connected 0-100 "
        f"[101->-{REPLICA}] [102-<-{REPLICA}]"
    )

    [node] = parse_cluster_nodes(line)

    assert node.slots == (SlotRange(0, 100),)


def test_an_ipv6_address_with_a_hostname_keeps_the_whole_host() -> None:
    line = f"{MASTER} ::1:7001@17001,redis-1.local master - 0 0 1 connected"

    [node] = parse_cluster_nodes(line)

    assert (node.host, node.port, node.address) == ("::1", 7001, "::1:7001")


def test_a_failed_master_keeps_its_flags_and_link_state() -> None:
    line = f"{MASTER} 127.0.0.1:7003@17003 master,fail - 1795686135551 1795686133000 3 disconnected"

    [node] = parse_cluster_nodes(line)

    assert (node.role, node.flags, node.link_state) == (
        "master",
        ("master", "fail"),
        "disconnected",
    )


def test_a_node_in_handshake_and_blank_lines_are_left_out() -> None:
    text = f"\n{REPLICA} 127.0.0.1:7009@17009 handshake - 0 0 0 connected\n\n"

    assert parse_cluster_nodes(text) == []


@given(st.lists(st.integers(0, SLOT_COUNT - 1), min_size=1, max_size=40))
def test_slot_ranges_read_back_as_written(slots: list[int]) -> None:
    ranges = merge_ranges(SlotRange(slot, slot) for slot in slots)
    written = " ".join(f"{r.start}-{r.end}" if r.count > 1 else str(r.start) for r in ranges)
    line = f"{MASTER} 127.0.0.1:7001@17001 master - 0 0 1 connected {written}"

    [node] = parse_cluster_nodes(line)

    assert node.slots == ranges


def test_cluster_info_numbers_become_ints_and_words_stay_text() -> None:
    text = "cluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_my_epoch:-1\r\n"

    assert parse_cluster_info(text) == {
        "cluster_state": "fail",
        "cluster_slots_assigned": 16384,
        "cluster_my_epoch": -1,
    }


@given(st.integers())
def test_any_integer_field_reads_back_as_that_int(number: int) -> None:
    assert parse_cluster_info(f"cluster_stats_messages_sent:{number}\r\n") == {
        "cluster_stats_messages_sent": number
    }


@given(st.from_regex(r"[0-9.+-]*[a-z.+][a-z0-9.+-]*", fullmatch=True))
def test_a_field_with_anything_but_digits_and_a_leading_minus_stays_text(value: str) -> None:
    assert parse_cluster_info(f"cluster_state:{value}\r\n") == {"cluster_state": value}
