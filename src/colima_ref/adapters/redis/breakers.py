"""NodeBreakers: a circuit breaker per Redis Cluster node, and the service's state from theirs.

A cluster's failure domain is a node: a master that dies takes its slots with it until a replica
takes over, while the other masters keep answering. One breaker for the whole cluster turned the
loss of one master into an outage of every key.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Final, cast

import attrs
import structlog

from colima_ref.adapters.breaker import (
    DEFAULT_FAIL_MAX,
    DEFAULT_RESET_TIMEOUT,
    BreakerRecorder,
    ServiceBreaker,
    State,
    Transition,
)
from colima_ref.observability.metrics import Outcome

log = structlog.get_logger(__name__)

_STATE_OF: Final[Mapping[Transition, State]] = {
    "closed": "closed",
    "half_open": "half-open",
    "open": "open",
}
_TRANSITION_OF: Final[Mapping[State, Transition]] = {
    state: transition for transition, state in _STATE_OF.items()
}


def service_state(states: Iterable[State]) -> State:
    """The state of a service from those of its parts' breakers: ``closed`` when every one is
    (or there are none), ``open`` when every one is, and ``half-open`` otherwise: some calls
    are refused while others go through."""
    seen = set(states)
    if seen <= {"closed"}:
        return "closed"
    if seen == {"open"}:
        return "open"
    return "half-open"


@attrs.define
class NodeBreakers:
    """The circuit breakers of a Redis service: one per cluster node (``host:port``), made on
    first use, and ``whole`` for what no one node answers: commands sent to every master (SCAN),
    the cluster's own reports, and every call made before the client knows which node owns
    which slot. A standalone server only ever uses ``whole``.

    The service's state is `service_state` of the nodes' breakers. ``whole`` counts when it is
    not closed, or when there is no node breaker yet: while closed it says nothing about the
    nodes. `snapshot` reports that state, with each node's breaker under ``nodes``. The
    ``recorder`` hears every call and failure of every breaker, and a transition only when the
    service's state changes, so the ``circuit_breaker_*`` series stay one per service.

    Raises nothing itself; each breaker raises CircuitBreakerError (naming its node) as
    ServiceBreaker does.
    """

    service: str = "redis"
    fail_max: int = DEFAULT_FAIL_MAX
    reset_timeout: float = DEFAULT_RESET_TIMEOUT
    recorder: BreakerRecorder | None = attrs.field(default=None, repr=False)
    whole: ServiceBreaker = attrs.field(init=False, repr=False)
    _nodes: dict[str, ServiceBreaker] = attrs.field(factory=dict, init=False, repr=False)
    # The state each breaker last entered, by node (None for `whole`): the metrics follow the
    # transitions as calls make them, while `state` reads each breaker's clock.
    _entered: dict[str | None, State] = attrs.field(factory=dict, init=False, repr=False)
    _reported: State = attrs.field(default="closed", init=False)

    def __attrs_post_init__(self) -> None:
        self.whole = self._breaker(None)

    def for_node(self, name: str, listed: Callable[[], Collection[str]]) -> ServiceBreaker:
        """The breaker of the node ``name`` (``host:port``).

        A node without a breaker yet (a replica that took over, a cluster grown) is a sign the
        topology changed: first the breakers of nodes ``listed()`` (the cluster's nodes now)
        leaves out are dropped, so the open breaker of a master that failed over stops counting
        once nothing is routed to it.
        """
        breaker = self._nodes.get(name)
        if breaker is None:
            self._forget_all_but(listed())
            breaker = self._nodes[name] = self._breaker(name)
        return breaker

    @property
    def state(self) -> State:
        """The service's state, as `snapshot` reports it."""
        return _derived(self.whole.state, [node.state for node in self._nodes.values()])

    def snapshot(self) -> Mapping[str, object]:
        """``state``, ``failures`` (the most any breaker counts), ``fail_max``, ``retry_after``
        while open (the soonest trial), and ``nodes``: each node breaker's own snapshot."""
        state = self.state
        view: dict[str, object] = {
            "state": state,
            "failures": max(part.failures for part in (self.whole, *self._nodes.values())),
            "fail_max": self.fail_max,
        }
        nodes = {name: node.snapshot() for name, node in self._nodes.items()}
        if state == "open":
            # Open means every breaker that counts is open, and each snapshot says when.
            counted = [*nodes.values(), self.whole.snapshot()]
            view["retry_after"] = min(
                cast(int, part["retry_after"]) for part in counted if "retry_after" in part
            )
        if nodes:
            view["nodes"] = nodes
        return view

    def _breaker(self, node: str | None) -> ServiceBreaker:
        return ServiceBreaker(
            self.service,
            fail_max=self.fail_max,
            reset_timeout=self.reset_timeout,
            recorder=_PartRecorder(self, node),
            node=node,
        )

    def _forget_all_but(self, listed: Collection[str]) -> None:
        for name in [name for name in self._nodes if name not in listed]:
            log.info(
                "circuit_breaker.dropped",
                service=self.service,
                node=name,
                state=self._nodes.pop(name).state,
            )
            self._entered.pop(name, None)
        self._report()

    def _part_entered(self, node: str | None, transition: Transition) -> None:
        self._entered[node] = _STATE_OF[transition]
        self._report()

    def _report(self) -> None:
        entered = self._entered
        state = _derived(
            entered.get(None, "closed"), [entered.get(name, "closed") for name in self._nodes]
        )
        if state != self._reported:
            self._reported = state
            if self.recorder is not None:
                self.recorder.breaker_changed(self.service, _TRANSITION_OF[state])


def _derived(whole: State, nodes: Sequence[State]) -> State:
    # A closed `whole` says nothing about the nodes; an open one refuses calls all the same.
    return service_state([*nodes, whole] if whole != "closed" or not nodes else nodes)


@attrs.frozen
class _PartRecorder:
    """What one breaker of a NodeBreakers reports: calls and failures go to the group's
    recorder as they are, transitions to the group, which derives the service's."""

    group: NodeBreakers
    node: str | None

    def breaker_failure(self, service: str) -> None:
        if self.group.recorder is not None:
            self.group.recorder.breaker_failure(service)

    def breaker_changed(self, service: str, state: Transition) -> None:
        self.group._part_entered(self.node, state)

    def dependency_call(
        self, service: str, operation: str, outcome: Outcome, seconds: float
    ) -> None:
        if self.group.recorder is not None:
            self.group.recorder.dependency_call(service, operation, outcome, seconds)
