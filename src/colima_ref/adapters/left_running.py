"""Driver calls that a caller's cancellation stops waiting for, without cancelling them."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import attrs

T = TypeVar("T")


@attrs.define
class LeftRunning:
    """Runs each call in a task of its own: a caller cancelled (by its deadline) is answered at
    once, and the call goes on until it ends by itself, its outcome dropped.

    For a driver that does not survive every cancellation but bounds each call with timeouts of
    its own, so nothing is left running for long. `wait` is for the adapter's ``aclose``.
    """

    _abandoned: set[asyncio.Task[Any]] = attrs.field(factory=set, init=False, repr=False)

    async def run(self, call: Coroutine[Any, Any, T]) -> T:
        """The outcome of ``call``; if the caller is cancelled first, ``call`` is not."""
        task = asyncio.create_task(call)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self._abandoned.add(task)
            task.add_done_callback(self._forget)
            raise

    async def wait(self) -> None:
        """Wait until every call its caller gave up on has ended."""
        await asyncio.gather(*self._abandoned, return_exceptions=True)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            # Retrieved, so asyncio does not log it: the caller was answered long ago.
            task.exception()
