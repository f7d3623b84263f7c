"""Redis Cluster slot distribution: who serves which hash slots, and what is missing or doubled.

Works on slot ranges, never on single slots, so a report costs O(r log r) for r ranges whatever
the number of slots.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs

from colima_ref.domain.models import SLOT_COUNT, ClusterNode, SlotRange


@attrs.frozen
class Shard:
    """One contiguous range of slots, the master serving it and that master's replicas."""

    slots: SlotRange
    master: ClusterNode
    replicas: tuple[ClusterNode, ...]

    @property
    def count(self) -> int:
        return self.slots.count


def _percentage(report: SlotReport) -> float:
    return round(report.assigned / report.max_slots * 100, 2)


@attrs.frozen(kw_only=True)
class SlotReport:
    """How the hash slots are spread over the masters of a cluster.

    ``assigned`` counts distinct slots served by at least one master, ``overlaps`` lists slots
    claimed by more than one master, ``gaps`` slots claimed by none.
    """

    assigned: int
    max_slots: int = SLOT_COUNT
    coverage_percentage: float = attrs.field(default=attrs.Factory(_percentage, takes_self=True))
    shards: tuple[Shard, ...]
    gaps: tuple[SlotRange, ...]
    overlaps: tuple[SlotRange, ...]
    slots_per_master: Mapping[str, int]

    @property
    def healthy(self) -> bool:
        """Every slot is served by exactly one master."""
        return not self.gaps and not self.overlaps


def _bounds(r: SlotRange) -> tuple[int, int]:
    # SlotRange's own order, by plain tuples: attrs' generated __lt__ builds two tuples per
    # comparison, 70 % of a report on 16384 one-slot ranges.
    return (r.start, r.end)


def merge_ranges(ranges: Iterable[SlotRange]) -> tuple[SlotRange, ...]:
    """Sort ``ranges`` and merge the ones that overlap or touch (0-5 and 6-9 become 0-9)."""
    merged: list[SlotRange] = []
    for current in sorted(ranges, key=_bounds):
        if merged and current.start <= merged[-1].end + 1:
            if current.end > merged[-1].end:
                merged[-1] = SlotRange(merged[-1].start, current.end)
        else:
            merged.append(current)
    return tuple(merged)


def _depths(ranges: Iterable[SlotRange]) -> list[tuple[SlotRange, int]]:
    """Cut the slot space at every range boundary: each piece and how many ranges cover it."""
    events = sorted(event for r in ranges for event in ((r.start, 1), (r.end + 1, -1)))
    pieces: list[tuple[SlotRange, int]] = []
    depth = 0
    previous = 0
    for position, change in events:
        if position > previous and depth > 0:
            pieces.append((SlotRange(previous, position - 1), depth))
        depth += change
        previous = position
    return pieces


def _complement(covered: tuple[SlotRange, ...]) -> tuple[SlotRange, ...]:
    gaps: list[SlotRange] = []
    next_free = 0
    for r in covered:
        if r.start > next_free:
            gaps.append(SlotRange(next_free, r.start - 1))
        next_free = r.end + 1
    if next_free < SLOT_COUNT:
        gaps.append(SlotRange(next_free, SLOT_COUNT - 1))
    return tuple(gaps)


def distribute(nodes: Sequence[ClusterNode]) -> SlotReport:
    """Build the slot report of a cluster from its node list (as CLUSTER NODES gives it).

    Only masters own slots. Replicas join their master through ``master_id``; a replica whose
    master is not in ``nodes`` is left out. A master listed twice counts once.
    """
    masters: dict[str, ClusterNode] = {}
    owned: dict[str, list[SlotRange]] = {}
    for node in nodes:
        if node.role == "master":
            masters.setdefault(node.node_id, node)
            owned.setdefault(node.node_id, []).extend(node.slots)
    replicas: dict[str, list[ClusterNode]] = {node_id: [] for node_id in masters}
    for node in nodes:
        if node.role == "replica" and node.master_id is not None and node.master_id in replicas:
            replicas[node.master_id].append(node)

    ranges = {node_id: merge_ranges(slots) for node_id, slots in owned.items()}
    shards = sorted(
        (
            Shard(slots=r, master=masters[node_id], replicas=tuple(replicas[node_id]))
            for node_id, merged in ranges.items()
            for r in merged
        ),
        key=lambda shard: (*_bounds(shard.slots), shard.master.node_id),
    )
    # Ranges are merged per master first, so depth counts masters, not listings.
    pieces = _depths(r for merged in ranges.values() for r in merged)
    covered = merge_ranges(piece for piece, _ in pieces)
    return SlotReport(
        assigned=sum(r.count for r in covered),
        shards=tuple(shards),
        gaps=_complement(covered),
        overlaps=merge_ranges(piece for piece, depth in pieces if depth > 1),
        slots_per_master={
            node_id: sum(r.count for r in merged) for node_id, merged in ranges.items()
        },
    )
