"""A service that answers, refusing us, is up: no refusal counts toward its circuit breaker.

The adapters raise these for a refused login, permission or missing secret (``outage`` False)
and for input the service refuses (a 4xx). Only unavailability opens the circuit.
"""

from __future__ import annotations

import pytest

from colima_ref.adapters.breaker import ServiceBreaker, counts_as_outage
from colima_ref.domain import errors

REFUSALS = [
    errors.DatabaseConnectionError("refused login", service="postgres", outage=False),
    errors.DatabaseConnectionError("refused login", service="mysql", outage=False),
    errors.DatabaseConnectionError("no role", service="mongodb", outage=False),
    errors.CacheConnectionError("refused login", service="redis", outage=False),
    errors.MessageQueueError("refused login", service="rabbitmq", outage=False),
    errors.VaultUnavailableError("token refused", service="vault", outage=False),
    errors.ValidationError.for_field("queue_name", "refused by the broker"),
    errors.ResourceNotFoundError("denied by policy", {"reason": "permission denied"}),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda exc: f"{exc.error}-{exc.details}")
async def test_refusals_pass_through_and_leave_the_circuit_closed(
    refusal: errors.BaseAPIException,
) -> None:
    service = refusal.details.get("service", "rabbitmq")
    breaker = ServiceBreaker(service, fail_max=3)

    async def refused() -> None:
        raise refusal

    for _ in range(breaker.fail_max + 2):
        with pytest.raises(type(refusal)) as caught:
            await breaker.call(refused, operation="call")
        assert caught.value is refusal

    assert breaker.snapshot() == {"state": "closed", "failures": 0, "fail_max": 3}


def test_the_same_error_counts_when_it_says_the_service_is_unavailable() -> None:
    assert counts_as_outage("postgres", errors.DatabaseConnectionError(service="postgres"))
    assert not counts_as_outage(
        "postgres", errors.DatabaseConnectionError(service="postgres", outage=False)
    )


def test_an_error_is_an_outage_unless_told_otherwise() -> None:
    assert errors.ServiceUnavailableError().outage
    assert not errors.MessageQueueError(outage=False).outage
