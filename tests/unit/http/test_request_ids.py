"""Minted request ids are random UUID4s in canonical form, never repeated."""

from __future__ import annotations

import uuid

from colima_ref.http.request_ids import BATCH, RequestIds, mint_uuid4s


def test_minted_ids_are_canonical_random_uuid4s() -> None:
    for text in mint_uuid4s(1000):
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_ids_differ_within_and_across_batches() -> None:
    ids = RequestIds()

    handed_out = [ids.next() for _ in range(3 * BATCH + 1)]

    assert len(set(handed_out)) == len(handed_out)


def test_every_random_bit_varies() -> None:
    # A fixed bit outside the version and variant would make ids guessable (and collide sooner).
    numbers = [uuid.UUID(text).int for text in mint_uuid4s(2000)]
    ones = 0
    zeros = 0
    for number in numbers:
        ones |= number
        zeros |= ~number
    fixed = ~(ones & zeros) & ((1 << 128) - 1)

    assert fixed == (0xF << 76) | (0b11 << 62)
