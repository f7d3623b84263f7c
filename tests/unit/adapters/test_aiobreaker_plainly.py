"""What aiobreaker does when used plainly (``call_async``), where the contract asked for more.

These pin the library's behaviour that ServiceBreaker either accepts (and documents) or works
around with a listener, so an aiobreaker release that changes it shows up here first.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import timedelta

import aiobreaker
import pytest

RESET = 0.2


class OutageError(Exception):
    pass


async def down() -> None:
    raise OutageError


async def tripped(reset: float = RESET) -> aiobreaker.CircuitBreaker:
    breaker = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(seconds=reset))
    with pytest.raises(aiobreaker.CircuitBreakerError):
        await breaker.call_async(down)
    return breaker


async def test_while_half_open_aiobreaker_lets_every_call_through_not_one_trial() -> None:
    breaker = await tripped()
    await asyncio.sleep(RESET + 0.05)
    release = asyncio.Event()
    reached = 0

    async def slow_answer() -> str:
        nonlocal reached
        reached += 1
        await release.wait()
        return "answer"

    calls = [asyncio.create_task(breaker.call_async(slow_answer)) for _ in range(3)]
    await asyncio.sleep(0.01)
    release.set()

    assert await asyncio.gather(*calls) == ["answer"] * 3
    assert reached == 3
    assert breaker.current_state is aiobreaker.CircuitBreakerState.CLOSED


@pytest.fixture
def berlin_time() -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.usefixtures("berlin_time")
async def test_outside_utc_aiobreaker_says_nothing_of_when_it_reopens_but_still_refuses() -> None:
    """Its ``opens_at`` compares a utcnow() timestamp with now(); its refusal uses utcnow()."""
    breaker = await tripped(reset=60)

    with pytest.raises(aiobreaker.CircuitBreakerError) as refused:
        await breaker.call_async(down)

    assert breaker.opens_at is None
    assert refused.value.reopen_time is None
