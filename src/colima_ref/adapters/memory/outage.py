"""The in-memory stand-in for a round trip to a backend, so a breaker sees the same outages."""

from __future__ import annotations

from collections.abc import Callable

from colima_ref.adapters.breaker import ServiceBreaker, through


async def round_trip(
    breaker: ServiceBreaker | None, fail_if_told: Callable[[], None], *, operation: str
) -> None:
    """Call ``fail_if_told`` through ``breaker`` as ``operation`` (the port method), where a
    live adapter would reach its server, so the breaker records it as a dependency call.

    Raises what ``fail_if_told`` raises (the adapter is set to fail), or CircuitBreakerError
    while the breaker is open.
    """
    await through(breaker, _answer, fail_if_told, operation=operation)


async def _answer(fail_if_told: Callable[[], None]) -> None:
    fail_if_told()
