"""Behaviour every Cache shares. Keys are unique per test and removed afterwards, so a shared
live cache is safe to run against."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from colima_ref.ports.cache import Cache

from .conftest import open_adapter


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    async with open_adapter(Cache, request.param) as opened:
        yield opened


@pytest.fixture
async def prefix(cache: Cache) -> AsyncIterator[str]:
    """A key prefix no other test uses; everything under it is deleted afterwards."""
    unique = f"contract:{uuid.uuid4().hex}:"
    yield unique
    await cache.delete_matching(f"{unique}*")


async def test_getting_a_missing_key_returns_none(cache: Cache, prefix: str) -> None:
    assert await cache.get(f"{prefix}missing") is None


async def test_a_value_set_without_ttl_reads_back_with_no_expiry(cache: Cache, prefix: str) -> None:
    await cache.set(f"{prefix}k", "v")

    entry = await cache.get(f"{prefix}k")

    assert entry is not None
    assert (entry.value, entry.ttl) == ("v", None)


async def test_a_value_set_with_ttl_reports_between_one_and_ttl_seconds_left(
    cache: Cache, prefix: str
) -> None:
    await cache.set(f"{prefix}k", "v", ttl=60)

    entry = await cache.get(f"{prefix}k")

    assert entry is not None
    assert entry.value == "v"
    assert entry.ttl is not None
    assert 1 <= entry.ttl <= 60


async def test_setting_again_replaces_the_value_and_drops_the_old_ttl(
    cache: Cache, prefix: str
) -> None:
    await cache.set(f"{prefix}k", "old", ttl=60)
    await cache.set(f"{prefix}k", "new")

    entry = await cache.get(f"{prefix}k")

    assert entry is not None
    assert (entry.value, entry.ttl) == ("new", None)


async def test_text_round_trips_unchanged(cache: Cache, prefix: str) -> None:
    value = '{"name": "Zoë", "mark": "✓"}'
    await cache.set(f"{prefix}k", value)

    entry = await cache.get(f"{prefix}k")

    assert entry is not None
    assert entry.value == value


async def test_deleting_a_present_key_returns_true_and_removes_it(
    cache: Cache, prefix: str
) -> None:
    await cache.set(f"{prefix}k", "v")

    assert await cache.delete(f"{prefix}k") is True
    assert await cache.get(f"{prefix}k") is None


async def test_deleting_a_missing_key_returns_false(cache: Cache, prefix: str) -> None:
    assert await cache.delete(f"{prefix}missing") is False


async def test_delete_matching_removes_only_matching_keys_and_counts_them(
    cache: Cache, prefix: str
) -> None:
    for key in ("vault:postgres", "vault:mysql", "health:all"):
        await cache.set(f"{prefix}{key}", "v")

    removed = await cache.delete_matching(f"{prefix}vault:*")

    assert removed == 2
    assert await cache.get(f"{prefix}vault:postgres") is None
    assert await cache.get(f"{prefix}health:all") is not None


async def test_delete_matching_nothing_returns_zero(cache: Cache, prefix: str) -> None:
    assert await cache.delete_matching(f"{prefix}nothing:*") == 0
