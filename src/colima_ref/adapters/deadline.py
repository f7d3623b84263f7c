"""Deadline: an adapter's operation timeout, one timer for all of its calls in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

import attrs

T = TypeVar("T")

# Calls given up on that are still winding down: the loop keeps only weak references to tasks.
_winding_down: set[asyncio.Task[Any]] = set()


class Deadline:
    """Bounds calls to ``seconds``: ``with deadline.bound():`` around awaits raises the builtin
    TimeoutError once they have run that long, as ``async with asyncio.timeout(seconds)`` does.

    asyncio.timeout arms and cancels a timer per call, about 4.5 us under uvloop: a quarter of
    what an adapter adds to a driver call. Every call bounded here has the same length, so calls
    expire in the order they began, and one timer, set for the oldest call, serves them all.

    A bound only works inside a task, like asyncio.timeout. Cancellation from elsewhere passes
    through untouched; only the cancellation this deadline asked for becomes TimeoutError.
    A driver that takes its time to wind down once cancelled holds a bound past its deadline:
    such an adapter calls through `run` instead, at the price of a task per call.
    """

    __slots__ = ("_loop", "_running", "_timer", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        # Insertion order is expiry order: every bound lasts `seconds` from its start.
        self._running: dict[_Bound, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def bound(self) -> _Bound:
        """A context manager bounding the calls made inside it (see the class docstring)."""
        return _Bound(self)

    async def run(self, call: Coroutine[Any, Any, T]) -> T:
        """Await ``call`` in a task of its own; raise TimeoutError once it has run ``seconds``.

        The caller is answered at the deadline whatever the driver does once cancelled: psycopg
        sends PostgreSQL a cancel request and waits up to 10 s for the query to end, and under
        ``bound()`` the caller would wait for all of it. Here the call is cancelled and winds
        down in the background; the driver bounds that and closes the connection it leaves
        mid-call, or cleans it up. A cancellation of the caller cancels the call the same way.
        The task and the hand-over add two turns of the event loop to every call.
        """
        task = asyncio.create_task(call)
        try:
            with self.bound():
                # Shielded: cancelling the caller must not make it wait for the call to end.
                return await asyncio.shield(task)
        except BaseException:
            if not task.done():
                task.cancel()
                _winding_down.add(task)
                task.add_done_callback(_wound_down)
            raise

    def _start(self, bound: _Bound, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            # A new event loop (a test's, a restarted server's): the old one's calls are over.
            self._running.clear()
            self._timer = None
            self._loop = loop
        self._running[bound] = None
        if self._timer is None:
            self._timer = loop.call_at(bound.expires_at, self._expire, loop)

    def _finish(self, bound: _Bound) -> None:
        # The timer stays as it is: when it fires it moves on to the then oldest call.
        self._running.pop(bound, None)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            return
        self._timer = None
        now = loop.time()
        running = self._running
        while running:
            oldest = next(iter(running))
            if oldest.expires_at > now:
                self._timer = loop.call_at(oldest.expires_at, self._expire, loop)
                return
            del running[oldest]
            oldest.expire()


class _Bound:
    """One call under a Deadline: the task it runs in and when it expires."""

    __slots__ = ("_cancelling", "_deadline", "_expired", "_task", "expires_at")

    def __init__(self, deadline: Deadline) -> None:
        self._deadline = deadline
        self._expired = False

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline.bound() must be entered inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = task.get_loop()
        self.expires_at = loop.time() + self._deadline.seconds
        self._deadline._start(self, loop)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._deadline._finish(self)
        # As asyncio.timeout: our cancellation becomes TimeoutError unless another one is pending.
        if (
            self._expired
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc

    def expire(self) -> None:
        self._expired = True
        self._task.cancel()


def _wound_down(task: asyncio.Task[Any]) -> None:
    _winding_down.discard(task)
    if not task.cancelled():
        # Retrieved so that asyncio does not log an error nobody was left to receive.
        task.exception()


def _of_operation_timeout(adapter: Any) -> Deadline:
    return Deadline(adapter._operation_timeout)


ADAPTER_DEADLINE = attrs.Factory(_of_operation_timeout, takes_self=True)
"""The default of an adapter's ``_deadline`` field: a Deadline of its ``_operation_timeout``,
one per adapter, made when the adapter is."""
