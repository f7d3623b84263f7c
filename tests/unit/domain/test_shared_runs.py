import asyncio

from colima_ref.domain.shared_runs import SharedRuns


class Gated:
    """Counts its runs; each returns the run's number once ``gate`` is set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.gate = asyncio.Event()
        self.runs = 0
        self.cancelled = 0
        self.error = error

    async def __call__(self) -> int:
        self.runs += 1
        number = self.runs
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return number


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_overlapping_calls_with_one_key_share_one_run() -> None:
    shared: SharedRuns[str, int] = SharedRuns()
    work = Gated()
    calls = [asyncio.create_task(shared.call("all", work)) for _ in range(5)]
    await settle()

    work.gate.set()

    assert await asyncio.gather(*calls) == [1] * 5
    assert work.runs == 1


async def test_a_call_after_the_run_ended_starts_a_new_one() -> None:
    shared: SharedRuns[str, int] = SharedRuns()
    work = Gated()
    work.gate.set()

    assert [await shared.call("all", work), await shared.call("all", work)] == [1, 2]


async def test_calls_with_different_keys_run_apart() -> None:
    shared: SharedRuns[str, int] = SharedRuns()
    first, second = Gated(), Gated()
    calls = [
        asyncio.create_task(shared.call("ready", first)),
        asyncio.create_task(shared.call("all", second)),
    ]
    await settle()
    first.gate.set()
    second.gate.set()

    await asyncio.gather(*calls)

    assert (first.runs, second.runs) == (1, 1)


async def test_arguments_reach_the_run() -> None:
    shared: SharedRuns[str, str] = SharedRuns()

    async def greet(name: str, punctuation: str) -> str:
        return f"hello {name}{punctuation}"

    assert await shared.call("greet", greet, "vault", "!") == "hello vault!"


async def test_a_failed_run_raises_in_every_caller() -> None:
    shared: SharedRuns[str, int] = SharedRuns()
    work = Gated(RuntimeError("backend down"))
    calls = [asyncio.create_task(shared.call("all", work)) for _ in range(3)]
    await settle()

    work.gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert [str(outcome) for outcome in outcomes] == ["backend down"] * 3
    assert work.runs == 1


async def test_a_caller_that_gives_up_leaves_the_run_to_the_others() -> None:
    shared: SharedRuns[str, int] = SharedRuns()
    work = Gated()
    leaver = asyncio.create_task(shared.call("all", work))
    stayer = asyncio.create_task(shared.call("all", work))
    await settle()

    leaver.cancel()
    await settle()
    work.gate.set()

    assert await stayer == 1
    assert leaver.cancelled()
    assert work.cancelled == 0


async def test_the_run_is_cancelled_when_every_caller_gave_up() -> None:
    shared: SharedRuns[str, int] = SharedRuns()
    work = Gated()
    calls = [asyncio.create_task(shared.call("all", work)) for _ in range(2)]
    await settle()

    for call in calls:
        call.cancel()
    await settle()

    assert work.cancelled == 1
    work.gate.set()
    assert await shared.call("all", work) == 2, "the next call starts afresh"
