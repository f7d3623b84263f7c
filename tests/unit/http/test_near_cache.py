"""The in-process near cache: short-lived, bounded, and emptied by pattern."""

from __future__ import annotations

from colima_ref.http.middleware.near_cache import NearCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_for_the_near_ttl_only() -> None:
    clock = Clock()
    near: NearCache[str] = NearCache(ttl=1.0, clock=clock)
    near.put("k", "v", ttl=300)

    clock.now += 0.9
    assert near.get("k") == "v"
    clock.now += 0.2
    assert near.get("k") is None
    assert len(near) == 0


def test_a_shorter_ttl_of_its_own_wins() -> None:
    clock = Clock()
    near: NearCache[str] = NearCache(ttl=1.0, clock=clock)
    near.put("k", "v", ttl=0.5)

    clock.now += 0.6

    assert near.get("k") is None


def test_past_the_bound_the_oldest_entry_goes() -> None:
    near: NearCache[int] = NearCache(max_entries=3, clock=Clock())
    for n in range(4):
        near.put(f"k{n}", n)

    assert [near.get(f"k{n}") for n in range(4)] == [None, 1, 2, 3]
    assert len(near) == 3


def test_putting_a_key_again_renews_it_and_keeps_one_entry() -> None:
    clock = Clock()
    near: NearCache[str] = NearCache(ttl=1.0, max_entries=2, clock=clock)
    near.put("a", "old")
    near.put("b", "b")
    clock.now += 0.5
    near.put("a", "new")
    near.put("c", "c")  # evicts the oldest, which is now b

    clock.now += 0.7
    assert near.get("a") == "new"
    assert near.get("b") is None
    assert len(near) == 2


def test_entries_matching_a_glob_are_discarded() -> None:
    near: NearCache[str] = NearCache(clock=Clock())
    near.put("cache:/health/all:?", "h")
    near.put("cache:/examples/vault/secret/{service_name}:service_name=postgres?", "s")

    assert near.discard_matching("cache:/health/*") == 1
    assert near.get("cache:/health/all:?") is None
    assert near.get("cache:/examples/vault/secret/{service_name}:service_name=postgres?") == "s"
