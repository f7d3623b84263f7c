"""LeftRunning: a caller's deadline ends its wait, never the driver's call."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from colima_ref.adapters.left_running import LeftRunning


async def test_a_call_whose_caller_gave_up_runs_to_its_end() -> None:
    calls = LeftRunning()
    ended: list[str] = []

    async def driver_call() -> str:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise
        ended.append("finished")
        return "late"

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await calls.run(driver_call())
    assert ended == []  # the caller was answered before the call ended

    await calls.wait()
    assert ended == ["finished"]


async def test_the_failure_of_a_call_nobody_waits_for_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = LeftRunning()

    async def failing_late() -> None:
        await asyncio.sleep(0.02)
        raise ConnectionError("the driver's own timeout")

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await calls.run(failing_late())
    await asyncio.sleep(0.05)  # it fails meanwhile; nobody awaits it
    gc.collect()

    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]


async def test_a_caller_that_waits_gets_the_outcome_as_it_is() -> None:
    calls = LeftRunning()

    async def refused() -> None:
        raise PermissionError("refused")

    assert await calls.run(asyncio.sleep(0, result="answer")) == "answer"
    with pytest.raises(PermissionError):
        await calls.run(refused())
