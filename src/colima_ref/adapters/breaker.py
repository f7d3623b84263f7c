"""ServiceBreaker: one circuit breaker per backing service, in our errors and our clock.

aiobreaker does the breaking: its ``call_async`` counts consecutive outages (an exception
`counts_as_outage` rejects is ``exclude``d, an answer), opens the circuit at ``fail_max``, refuses
calls until the reset timeout has passed, then turns half-open when the next call arrives. A
listener logs and records each transition and failure, and notes on a monotonic clock when the
circuit opened, for Retry-After: aiobreaker's own ``opens_at`` compares a ``utcnow()`` timestamp
with ``now()``, so it is hours off outside UTC (its refusals use ``utcnow()`` throughout).

While half-open aiobreaker lets every call through, not one trial: the first outage opens the
circuit again, and a success closes it.
`ServiceBreaker.state` says ``half-open`` as soon as the timeout has passed, while the metrics
count that transition when the next call arrives and aiobreaker takes it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, Final, Literal, Protocol, TypeVar, TypeVarTuple

import aiobreaker
import attrs
import structlog

from colima_ref.domain import errors
from colima_ref.observability.metrics import Outcome

log = structlog.get_logger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

State = Literal["closed", "open", "half-open"]
Transition = Literal["closed", "half_open", "open"]

DEFAULT_FAIL_MAX: Final = 5
DEFAULT_RESET_TIMEOUT: Final = 60.0  # seconds

_TRANSITIONS: Final[Mapping[aiobreaker.CircuitBreakerState, Transition]] = {
    aiobreaker.CircuitBreakerState.CLOSED: "closed",
    aiobreaker.CircuitBreakerState.HALF_OPEN: "half_open",
    aiobreaker.CircuitBreakerState.OPEN: "open",
}


class BreakerRecorder(Protocol):
    """Where a breaker reports its failures and transitions (``observability.metrics.Metrics``)."""

    def breaker_failure(self, service: str) -> None: ...

    def breaker_changed(self, service: str, state: Transition) -> None: ...

    def dependency_call(
        self, service: str, operation: str, outcome: Outcome, seconds: float
    ) -> None: ...


def counts_as_outage(service: str, exc: BaseException) -> bool:
    """Whether ``exc`` says ``service`` itself is down: only a ServiceUnavailableError that is
    an outage, or our TimeoutError, naming ``service`` (or no service at all).

    An answer is not an outage, whatever its status: a missing secret, an unknown key, input
    the backend refuses (a 4xx), or a refused login or permission (a 503 with ``outage``
    False). Neither is another service's outage: PostgreSQL reading its password from a Vault
    that is down raises VaultUnavailableError (service ``vault``), which must open Vault's
    breaker, not PostgreSQL's.
    """
    if isinstance(exc, errors.CircuitBreakerError):
        return False
    if isinstance(exc, errors.ServiceUnavailableError):
        if not exc.outage:
            return False
    elif not isinstance(exc, errors.OperationTimeoutError):
        return False
    named = exc.details.get("service")
    return named is None or named == service


@attrs.define
class ServiceBreaker:
    """The circuit breaker of one service (``postgres``...): adapters await every backend call
    through `call`.

    ``fail_max`` consecutive outages (see `counts_as_outage`) open the circuit; calls then raise
    CircuitBreakerError at once, with ``retry_after`` the whole seconds left (at least 1) and
    ``details["service"]``. After ``reset_timeout`` seconds calls go through again as trials: a
    success closes the circuit, an outage opens it for another ``reset_timeout``. Any other
    exception passes through and counts as an answer, so it resets the failure count.

    ``node`` names the one node of the service it guards, when the service has a breaker per
    node (a Redis Cluster): its logs and refusals name that node too.
    """

    service: str
    fail_max: int = DEFAULT_FAIL_MAX
    reset_timeout: float = DEFAULT_RESET_TIMEOUT
    recorder: BreakerRecorder | None = attrs.field(default=None, repr=False)
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    node: str | None = None
    _opened_at: float | None = attrs.field(default=None, init=False)
    _breaker: Any = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._breaker = aiobreaker.CircuitBreaker(
            fail_max=self.fail_max,
            timeout_duration=timedelta(seconds=self.reset_timeout),
            exclude=[lambda exc: not counts_as_outage(self.service, exc)],
            listeners=[_Listener(self)],
            name=self.service,
        )

    async def call(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts, operation: str) -> T:
        """Await ``fn(*args)`` unless the circuit is open, recording it as one ``operation``
        (the port method: ``get``, ``current_timestamp``...) of this service.

        Every call, refused ones included, goes to the recorder with its duration and outcome:
        ``success``, ``rejected`` (the circuit refused it), ``timeout`` (our or the builtin
        TimeoutError), ``cancelled`` or ``error`` (anything else). The call whose outage opens
        the circuit counts by that outage, since it did reach the backend.

        Raises:
            CircuitBreakerError: the circuit is open, or this call was the outage that opened
                it (chained from that outage).
            Exception: whatever ``fn`` raises, while the circuit stays closed.
        """
        started = time.perf_counter()
        try:
            try:
                result: T = await self._breaker.call_async(fn, *args)
            except aiobreaker.CircuitBreakerError as exc:
                # Its cause is the outage when this call opened the circuit.
                raise self._refusal() from exc.__cause__ or exc
        except BaseException as exc:
            self._record(operation, _outcome_of(exc), started)
            raise
        self._record(operation, "success", started)
        return result

    def _record(self, operation: str, outcome: Outcome, started: float) -> None:
        if self.recorder is not None:
            seconds = time.perf_counter() - started
            self.recorder.dependency_call(self.service, operation, outcome, seconds)

    @property
    def state(self) -> State:
        """``closed``, ``open``, or ``half-open`` once the reset timeout has elapsed."""
        current = self._breaker.current_state
        if current is aiobreaker.CircuitBreakerState.CLOSED:
            return "closed"
        if current is aiobreaker.CircuitBreakerState.OPEN and self._seconds_left() > 0:
            return "open"
        return "half-open"

    @property
    def failures(self) -> int:
        """Consecutive outages counted since the circuit last closed."""
        count: int = self._breaker.fail_counter
        return count

    def snapshot(self) -> Mapping[str, object]:
        """``state``, ``failures``, ``fail_max`` and, while open, ``retry_after`` (seconds)."""
        view: dict[str, object] = {
            "state": self.state,
            "failures": self.failures,
            "fail_max": self.fail_max,
        }
        if view["state"] == "open":
            view["retry_after"] = _whole_seconds(self._seconds_left())
        return view

    def _refusal(self) -> errors.CircuitBreakerError:
        details: dict[str, object] = {"state": self.state, "failures": self.failures}
        guarded = self.service
        if self.node is not None:
            details["node"] = self.node
            guarded = f"{self.service} node {self.node}"
        return errors.CircuitBreakerError(
            f"The {guarded} circuit breaker is open: calls are suspended",
            details,
            service=self.service,
            retry_after=_whole_seconds(self._seconds_left()),
        )

    def _seconds_left(self) -> float:
        if self._opened_at is None:
            return 0.0
        return self._opened_at + self.reset_timeout - self.clock()

    def _entered(
        self, before: aiobreaker.CircuitBreakerState | None, state: aiobreaker.CircuitBreakerState
    ) -> None:
        if state is aiobreaker.CircuitBreakerState.OPEN:
            # Again on every opening: aiobreaker also restarts its timeout when calls that began
            # while it was closed fail after it opened.
            self._opened_at = self.clock()
        if before is state:
            return
        transition = _TRANSITIONS[state]
        if state is aiobreaker.CircuitBreakerState.OPEN:
            log.warning("circuit_breaker.opened", **self._names(), retry_after=self.reset_timeout)
        else:
            log.info(f"circuit_breaker.{transition}", **self._names())
        if self.recorder is not None:
            self.recorder.breaker_changed(self.service, transition)

    def _names(self) -> dict[str, str]:
        if self.node is None:
            return {"service": self.service}
        return {"service": self.service, "node": self.node}

    def _failed(self) -> None:
        if self.recorder is not None:
            self.recorder.breaker_failure(self.service)


def _outcome_of(exc: BaseException) -> Outcome:
    # A refusal chained from an outage is the call that opened the circuit: it reached the
    # backend, so it is recorded as that outage rather than as rejected.
    if isinstance(exc, errors.CircuitBreakerError):
        if exc.__cause__ is None or isinstance(exc.__cause__, aiobreaker.CircuitBreakerError):
            return "rejected"
        return _outcome_of(exc.__cause__)
    if isinstance(exc, TimeoutError | errors.OperationTimeoutError):
        return "timeout"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "error"


def _whole_seconds(seconds: float) -> int:
    # Retry-After is whole seconds; 0 would invite a retry into a circuit that is still open.
    return max(1, math.ceil(seconds))


class _Listener(aiobreaker.CircuitBreakerListener):  # type: ignore[misc]
    def __init__(self, owner: ServiceBreaker) -> None:
        self._owner = owner

    def state_change(self, _breaker: object, old: Any, new: Any) -> None:
        self._owner._entered(None if old is None else old.state, new.state)

    def failure(self, _breaker: object, _exc: BaseException) -> None:
        self._owner._failed()


async def through(
    breaker: ServiceBreaker | None,
    fn: Callable[[*Ts], Awaitable[T]],
    *args: *Ts,
    operation: str,
) -> T:
    """Await ``fn(*args)`` as ``operation`` through ``breaker``, or directly when there is none.

    Without a breaker (a health probe) the call is neither guarded nor recorded: probes are
    timed by the health report, and a dependency series per probe would double-count them.
    """
    if breaker is None:
        return await fn(*args)
    return await breaker.call(fn, *args, operation=operation)


def breakers_for(
    services: Iterable[str],
    *,
    fail_max: int = DEFAULT_FAIL_MAX,
    reset_timeout: float = DEFAULT_RESET_TIMEOUT,
    recorder: BreakerRecorder | None = None,
) -> dict[str, ServiceBreaker]:
    """One fresh breaker per service name, all with the same limits and recorder."""
    return {
        service: ServiceBreaker(
            service, fail_max=fail_max, reset_timeout=reset_timeout, recorder=recorder
        )
        for service in services
    }
