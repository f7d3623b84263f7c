"""Deadline: the operation timeout every call of an adapter shares, on the real event loop."""

from __future__ import annotations

import asyncio

import pytest

from colima_ref.adapters.deadline import Deadline

FOREVER = 3600.0


async def test_a_call_that_outlasts_the_deadline_raises_timeout_error() -> None:
    deadline = Deadline(0.05)

    with pytest.raises(TimeoutError), deadline.bound():
        await asyncio.sleep(FOREVER)


async def test_a_call_within_the_deadline_returns_and_is_not_cancelled_later() -> None:
    deadline = Deadline(0.05)

    with deadline.bound():
        await asyncio.sleep(0)
    # Past the finished call's deadline: nothing may cancel this task any more.
    await asyncio.sleep(0.1)

    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_the_task_goes_on_normally_after_its_call_timed_out() -> None:
    deadline = Deadline(0.05)
    with pytest.raises(TimeoutError), deadline.bound():
        await asyncio.sleep(FOREVER)

    await asyncio.sleep(0.01)
    with deadline.bound():
        await asyncio.sleep(0)


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    entered = asyncio.Event()

    async def call() -> None:
        with Deadline(FOREVER).bound():
            entered.set()
            await asyncio.sleep(FOREVER)

    task = asyncio.create_task(call())
    await entered.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_call_started_later_keeps_its_own_time_when_an_earlier_one_expires() -> None:
    deadline = Deadline(0.5)
    first_timed_out = asyncio.Event()

    async def first() -> None:
        with pytest.raises(TimeoutError), deadline.bound():
            await asyncio.sleep(FOREVER)
        first_timed_out.set()

    async def second() -> str:
        with deadline.bound():
            await first_timed_out.wait()
        return "answered"

    first_call = asyncio.create_task(first())
    await asyncio.sleep(0.25)
    second_call = asyncio.create_task(second())

    assert await second_call == "answered"
    await first_call


async def test_concurrent_calls_that_all_outlast_it_all_time_out() -> None:
    deadline = Deadline(0.05)

    async def call() -> None:
        with deadline.bound():
            await asyncio.sleep(FOREVER)

    results = await asyncio.gather(*(call() for _ in range(20)), return_exceptions=True)

    assert all(isinstance(result, TimeoutError) for result in results)


def test_one_deadline_serves_successive_event_loops() -> None:
    """A server restarted in the same process, or one test after another, gets a new loop."""
    deadline = Deadline(0.05)

    async def call() -> None:
        with deadline.bound():
            await asyncio.sleep(FOREVER)

    for _ in range(2):
        with pytest.raises(TimeoutError):
            asyncio.run(call())


def test_a_bound_outside_a_task_is_refused() -> None:
    with pytest.raises(RuntimeError), Deadline(1.0).bound():
        pass


async def stubborn(cancelled: asyncio.Event, wind_down: float) -> None:
    """A call that, once cancelled, takes ``wind_down`` seconds to end, as psycopg does."""
    try:
        await asyncio.sleep(FOREVER)
    except asyncio.CancelledError:
        cancelled.set()
        await asyncio.sleep(wind_down)
        raise


async def test_run_answers_at_the_deadline_while_the_cancelled_call_winds_down() -> None:
    cancelled = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()

    with pytest.raises(TimeoutError):
        await Deadline(0.05).run(stubborn(cancelled, wind_down=FOREVER))

    assert loop.time() - started < 0.5
    await asyncio.wait_for(cancelled.wait(), 1.0)


async def test_run_returns_the_result_or_raises_the_error_of_the_call() -> None:
    async def answer() -> str:
        return "answered"

    async def fail() -> None:
        raise LookupError("no such thing")

    deadline = Deadline(FOREVER)

    assert await deadline.run(answer()) == "answered"
    with pytest.raises(LookupError):
        await deadline.run(fail())


async def test_a_caller_cancelled_from_elsewhere_cancels_its_call_without_waiting_for_it() -> None:
    cancelled = asyncio.Event()
    caller = asyncio.create_task(Deadline(FOREVER).run(stubborn(cancelled, wind_down=FOREVER)))
    await asyncio.sleep(0.01)
    caller.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, 0.5)
    await asyncio.wait_for(cancelled.wait(), 1.0)
