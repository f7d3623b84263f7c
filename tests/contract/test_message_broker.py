"""Behaviour every MessageBroker shares. Queue names are unique per test, counts are compared as
growth and each queue is deleted afterwards, so a shared live broker is safe to run against."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from colima_ref.ports.messaging import MessageBroker

from .conftest import open_adapter, remove_queue


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[MessageBroker]:
    async with open_adapter(MessageBroker, request.param) as opened:
        yield opened


@pytest.fixture
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    name = f"contract-{uuid.uuid4().hex}"
    yield name
    await remove_queue(request.node.callspec.params["broker"], name)


async def test_publishing_to_a_new_queue_creates_it(broker: MessageBroker, queue: str) -> None:
    await broker.publish(queue, b'{"type": "email"}')

    info = await broker.queue_info(queue)

    assert info.queue == queue
    assert info.exists is True


async def test_each_published_message_raises_the_count_by_exactly_one(
    broker: MessageBroker, queue: str
) -> None:
    await broker.publish(queue, b'{"n": 1}')
    before = (await broker.queue_info(queue)).message_count

    await broker.publish(queue, b'{"n": 2}')

    assert (await broker.queue_info(queue)).message_count == before + 1


async def test_an_unknown_queue_does_not_exist_and_asking_does_not_create_it(
    broker: MessageBroker, queue: str
) -> None:
    first = await broker.queue_info(queue)
    second = await broker.queue_info(queue)

    assert (first.exists, first.message_count, first.consumer_count) == (False, 0, 0)
    assert second.exists is False
