"""Slot distribution math, checked against a per-slot count computed independently."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from colima_ref.domain import slots as slots_module
from colima_ref.domain.models import SLOT_COUNT, ClusterNode, SlotRange
from colima_ref.domain.slots import SlotReport, distribute, merge_ranges

_ALL_SLOTS = SlotRange(0, SLOT_COUNT - 1)


def master(node_id: str, *ranges: tuple[int, int], port: int = 7000) -> ClusterNode:
    return ClusterNode(
        node_id=node_id,
        host="127.0.0.1",
        port=port,
        role="master",
        slots=tuple(SlotRange(start, end) for start, end in ranges),
    )


def replica(node_id: str, of: str) -> ClusterNode:
    return ClusterNode(node_id=node_id, host="127.0.0.1", port=7100, role="replica", master_id=of)


def slots_of(ranges: Iterable[SlotRange]) -> set[int]:
    return {slot for r in ranges for slot in range(r.start, r.end + 1)}


def claims_per_slot(nodes: Sequence[ClusterNode]) -> Counter[int]:
    """How many distinct masters claim each slot: the brute-force oracle."""
    owners: dict[str, set[int]] = {}
    for node in nodes:
        if node.role == "master":
            owners.setdefault(node.node_id, set()).update(slots_of(node.slots))
    return Counter(slot for slots in owners.values() for slot in slots)


@attrs.frozen
class Topology:
    """A valid cluster: the slot space cut into segments, each owned by one master."""

    segments: tuple[SlotRange, ...]
    owners: tuple[int, ...]
    master_count: int
    replicas_per_master: tuple[int, ...]

    def master_id(self, index: int) -> str:
        return f"master-{index}"

    def nodes(
        self, *, without: frozenset[int] = frozenset(), doubled: frozenset[int] = frozenset()
    ) -> list[ClusterNode]:
        """Nodes of this topology minus the ``without`` segments, plus each ``doubled`` segment
        claimed a second time by the next master."""
        owned: dict[int, list[SlotRange]] = {i: [] for i in range(self.master_count)}
        for index, (segment, owner) in enumerate(zip(self.segments, self.owners, strict=True)):
            if index not in without:
                owned[owner].append(segment)
            if index in doubled:
                owned[(owner + 1) % self.master_count].append(segment)
        nodes = [
            ClusterNode(
                node_id=self.master_id(i),
                host="10.0.0.1",
                port=7000 + i,
                role="master",
                # Reversed so that the code under test cannot rely on sorted input.
                slots=tuple(reversed(ranges)),
            )
            for i, ranges in owned.items()
        ]
        for i, count in enumerate(self.replicas_per_master):
            nodes += [replica(f"replica-{i}-{n}", of=self.master_id(i)) for n in range(count)]
        nodes.append(replica("orphan", of="master-that-left"))
        return nodes

    def expected_counts(self, *, without: frozenset[int] = frozenset()) -> dict[str, int]:
        counts = dict.fromkeys(map(self.master_id, range(self.master_count)), 0)
        for index, (segment, owner) in enumerate(zip(self.segments, self.owners, strict=True)):
            if index not in without:
                counts[self.master_id(owner)] += segment.count
        return counts


@st.composite
def topologies(draw: st.DrawFn, min_masters: int = 1) -> Topology:
    master_count = draw(st.integers(min_masters, 10))
    cuts = draw(st.lists(st.integers(1, SLOT_COUNT - 1), unique=True, max_size=40))
    bounds = [0, *sorted(cuts), SLOT_COUNT]
    segments = tuple(SlotRange(start, end - 1) for start, end in pairwise(bounds))
    owners = draw(
        st.lists(st.integers(0, master_count - 1), min_size=len(segments), max_size=len(segments))
    )
    replicas = draw(st.lists(st.integers(0, 2), min_size=master_count, max_size=master_count))
    return Topology(segments, tuple(owners), master_count, tuple(replicas))


@st.composite
def segment_picks(draw: st.DrawFn, min_masters: int = 1) -> tuple[Topology, frozenset[int]]:
    topology = draw(topologies(min_masters))
    picked = draw(st.sets(st.integers(0, len(topology.segments) - 1), min_size=1))
    return topology, frozenset(picked)


def assert_matches_oracle(report: SlotReport, nodes: Sequence[ClusterNode]) -> None:
    claims = claims_per_slot(nodes)
    assert report.assigned == len(claims)
    assert slots_of(report.gaps) == set(range(SLOT_COUNT)) - set(claims)
    assert slots_of(report.overlaps) == {slot for slot, n in claims.items() if n > 1}


@given(topology=topologies())
def test_a_valid_topology_covers_every_slot_exactly_once(topology: Topology) -> None:
    report = distribute(topology.nodes())

    assert report.coverage_percentage == 100.0
    assert report.assigned == report.max_slots == SLOT_COUNT
    assert report.gaps == ()
    assert report.overlaps == ()
    assert report.healthy
    assert sum(report.slots_per_master.values()) == SLOT_COUNT
    assert report.slots_per_master == topology.expected_counts()


@given(topology=topologies())
def test_shards_tile_the_slot_space_in_order_with_their_own_replicas(topology: Topology) -> None:
    report = distribute(topology.nodes())

    assert report.shards[0].slots.start == 0
    assert report.shards[-1].slots.end == SLOT_COUNT - 1
    for before, after in pairwise(report.shards):
        assert after.slots.start == before.slots.end + 1
        # Neighbouring segments of one master are one shard.
        assert after.master.node_id != before.master.node_id
    for shard in report.shards:
        index = int(shard.master.node_id.removeprefix("master-"))
        assert len(shard.replicas) == topology.replicas_per_master[index]
        assert all(r.master_id == shard.master.node_id for r in shard.replicas)
    assert sum(shard.count for shard in report.shards) == SLOT_COUNT


@given(picked=segment_picks())
def test_removed_ranges_are_reported_as_exactly_those_gaps(
    picked: tuple[Topology, frozenset[int]],
) -> None:
    topology, removed = picked
    nodes = topology.nodes(without=removed)

    report = distribute(nodes)

    missing = [topology.segments[i] for i in removed]
    assert slots_of(report.gaps) == slots_of(missing)
    assert report.overlaps == ()
    assert report.assigned == SLOT_COUNT - sum(r.count for r in missing)
    assert report.coverage_percentage == round(report.assigned / SLOT_COUNT * 100, 2)
    assert report.slots_per_master == topology.expected_counts(without=removed)
    assert not report.healthy
    assert_matches_oracle(report, nodes)


@given(picked=segment_picks(min_masters=2))
def test_ranges_claimed_by_two_masters_are_reported_as_exactly_those_overlaps(
    picked: tuple[Topology, frozenset[int]],
) -> None:
    topology, doubled = picked
    nodes = topology.nodes(doubled=doubled)

    report = distribute(nodes)

    assert slots_of(report.overlaps) == slots_of(topology.segments[i] for i in doubled)
    assert report.gaps == ()
    assert report.coverage_percentage == 100.0
    assert not report.healthy
    assert_matches_oracle(report, nodes)


@given(
    topology=topologies(), removed=st.sets(st.integers(0, 40)), doubled=st.sets(st.integers(0, 40))
)
def test_gaps_and_overlaps_together_match_a_per_slot_count(
    topology: Topology, removed: set[int], doubled: set[int]
) -> None:
    nodes = topology.nodes(without=frozenset(removed), doubled=frozenset(doubled))

    assert_matches_oracle(distribute(nodes), nodes)


@given(ranges=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40))))
def test_merged_ranges_cover_the_same_slots_sorted_apart_and_not_touching(
    ranges: list[tuple[int, int]],
) -> None:
    given_ranges = [SlotRange(start, start + length) for start, length in ranges]

    merged = merge_ranges(given_ranges)

    assert slots_of(merged) == slots_of(given_ranges)
    for before, after in pairwise(merged):
        assert after.start > before.end + 1


def test_merging_joins_touching_and_nested_ranges() -> None:
    ranges = [SlotRange(6, 9), SlotRange(0, 5), SlotRange(20, 30), SlotRange(22, 25)]

    assert merge_ranges(ranges) == (SlotRange(0, 9), SlotRange(20, 30))


def test_the_classic_three_master_layout_splits_5461_5462_5461() -> None:
    nodes = [
        master("a", (0, 5460), port=7001),
        master("b", (5461, 10922), port=7002),
        master("c", (10923, 16383), port=7003),
        replica("a1", of="a"),
        replica("b1", of="b"),
        replica("c1", of="c"),
    ]

    report = distribute(nodes)

    assert report.slots_per_master == {"a": 5461, "b": 5462, "c": 5461}
    assert [shard.count for shard in report.shards] == [5461, 5462, 5461]
    assert [shard.master.port for shard in report.shards] == [7001, 7002, 7003]
    assert [[r.node_id for r in shard.replicas] for shard in report.shards] == [
        ["a1"],
        ["b1"],
        ["c1"],
    ]
    assert report.coverage_percentage == 100.0
    assert report.healthy


def test_one_missing_slot_gives_99_99_percent_and_one_gap() -> None:
    report = distribute([master("a", (0, 99)), master("b", (101, 16383))])

    assert report.coverage_percentage == 99.99
    assert report.gaps == (SlotRange(100, 100),)


@pytest.mark.parametrize(
    ("ranges", "gap"),
    [(((1, 16383),), SlotRange(0, 0)), (((0, 16382),), SlotRange(16383, 16383))],
)
def test_a_missing_first_or_last_slot_is_a_gap(
    ranges: tuple[tuple[int, int], ...], gap: SlotRange
) -> None:
    report = distribute([master("a", *ranges)])

    assert report.gaps == (gap,)
    assert report.assigned == SLOT_COUNT - 1


def test_only_replicas_join_a_master_even_if_another_node_names_it() -> None:
    """A master still carrying a master_id (seen around a failover) is not a replica."""
    stale = attrs.evolve(master("b", (8192, 16383)), master_id="a")

    report = distribute([master("a", (0, 8191)), stale, replica("a1", of="a")])

    assert [r.node_id for r in report.shards[0].replicas] == ["a1"]
    assert report.shards[1].master.node_id == "b"


def test_an_empty_cluster_is_one_big_gap() -> None:
    report = distribute([])

    assert report.assigned == 0
    assert report.coverage_percentage == 0.0
    assert report.gaps == (_ALL_SLOTS,)
    assert report.shards == ()
    assert report.slots_per_master == {}
    assert not report.healthy


def test_a_replica_of_an_unknown_master_is_left_out() -> None:
    report = distribute([replica("lost", of="gone"), master("a", (0, 16383))])

    assert report.shards[0].replicas == ()
    assert report.healthy


def test_a_master_without_slots_counts_zero_and_has_no_shard() -> None:
    report = distribute([master("a", (0, 16383)), master("empty")])

    assert report.slots_per_master == {"a": 16383 + 1, "empty": 0}
    assert [shard.master.node_id for shard in report.shards] == ["a"]


def test_a_master_repeating_its_own_slots_is_not_an_overlap() -> None:
    report = distribute([master("a", (0, 9000), (5000, 16383), (0, 10))])

    assert report.overlaps == ()
    assert report.slots_per_master == {"a": SLOT_COUNT}
    assert len(report.shards) == 1


def test_a_master_listed_twice_counts_once() -> None:
    report = distribute([master("a", (0, 8191)), master("a", (8192, 16383))])

    assert report.overlaps == ()
    assert report.slots_per_master == {"a": SLOT_COUNT}
    assert report.healthy


def test_the_report_computes_its_coverage_from_the_assigned_slots() -> None:
    report = SlotReport(assigned=8192, shards=(), gaps=(), overlaps=(), slots_per_master={})

    assert report.coverage_percentage == 50.0


class _CountingSlotRange:
    """Stands in for ``SlotRange`` inside the slots module and counts the ranges it builds."""

    def __init__(self) -> None:
        self.built = 0

    def __call__(self, start: int, end: int) -> SlotRange:
        self.built += 1
        return SlotRange(start, end)


@pytest.fixture
def built_ranges(monkeypatch: pytest.MonkeyPatch) -> _CountingSlotRange:
    counter = _CountingSlotRange()
    monkeypatch.setattr(slots_module, "SlotRange", counter)
    return counter


def test_a_healthy_cluster_costs_a_few_ranges_whatever_its_slot_count(
    built_ranges: _CountingSlotRange,
) -> None:
    """The report works on ranges: 16384 slots in three ranges build a handful, not 16384."""
    report = distribute(
        [master("a", (0, 5460)), master("b", (5461, 10922)), master("c", (10923, 16383))]
    )

    assert report.healthy
    assert built_ranges.built <= 10


def test_a_fully_fragmented_cluster_costs_two_ranges_per_range(
    built_ranges: _CountingSlotRange,
) -> None:
    """16384 one-slot ranges dealt round-robin over 10 masters, the worst case for ranges: the
    work grows with the ranges given, at most two built per range, never with their pairs.

    Counting what is built, rather than timing it, keeps the check the same on every machine.
    """
    nodes = [
        master(f"m{i}", *((slot, slot) for slot in range(i, SLOT_COUNT, 10))) for i in range(10)
    ]

    report = distribute(nodes)

    assert report.healthy
    assert len(report.shards) == SLOT_COUNT
    assert report.slots_per_master == {f"m{i}": len(range(i, SLOT_COUNT, 10)) for i in range(10)}
    assert built_ranges.built <= 2 * SLOT_COUNT


@pytest.mark.parametrize(("start", "end"), [(-1, 5), (0, SLOT_COUNT), (10, 9)])
def test_a_slot_range_outside_the_slot_space_is_refused(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="slot"):
        SlotRange(start, end)
