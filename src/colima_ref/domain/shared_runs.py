"""Single flight: calls with one key that overlap share one run instead of each doing the work."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar, TypeVarTuple

import attrs

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@attrs.define
class _Run(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0


@attrs.define
class SharedRuns(Generic[K, T]):
    """The runs in flight by key, so that overlapping calls with one key share one run.

    A call joins the run in flight for its key, or starts one, and gets that run's outcome as it
    is, result or exception. Nothing is kept once a run ends: the next call starts a new one, so
    no answer is older than the run it came from. A caller that gives up leaves the run to the
    others; the run is cancelled only when every caller waiting for it has given up.

    The run is a task of its own, started in the context of the call that started it.
    """

    _runs: dict[K, _Run[T]] = attrs.field(factory=dict, init=False)

    async def call(
        self,
        key: K,
        start: Callable[[*Ts], Coroutine[Any, Any, T]],
        *args: *Ts,
    ) -> T:
        """The outcome of the run of ``key`` in flight, or of ``start(*args)`` run now."""
        run = self._runs.get(key)
        if run is None or run.task.done():
            run = self._runs[key] = _Run(asyncio.create_task(start(*args)))
        run.waiters += 1
        try:
            # Shielded: one caller cancelled must not cancel the answer the others wait for.
            return await asyncio.shield(run.task)
        finally:
            run.waiters -= 1
            if run.waiters == 0:
                run.task.cancel()
                if self._runs.get(key) is run:
                    del self._runs[key]
