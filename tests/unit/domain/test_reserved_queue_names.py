"""RabbitMQ reserves queue names that start with ``amq.``: they are refused before the broker
sees them, and only they."""

from __future__ import annotations

import pytest

from colima_ref.domain import validation
from colima_ref.domain.errors import ValidationError


@pytest.mark.parametrize("name", ["amq.rt", "amq.", "amq.gen-x1", "amq.rabbitmq.reply-to"])
def test_a_queue_name_with_the_reserved_prefix_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validation.queue_name(name)

    assert caught.value.details == {"field": "queue_name"}
    assert "'amq.'" in caught.value.message


@pytest.mark.parametrize("name", ["AMQ.rt", "Amq.rt", "amq-rt", "amqp", "x.amq.y", "amq"])
def test_a_name_the_broker_does_not_reserve_is_accepted(name: str) -> None:
    """RabbitMQ's check is case-sensitive and on the prefix only."""
    assert validation.queue_name(name) == name
