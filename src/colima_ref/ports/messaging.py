from __future__ import annotations

from typing import Protocol

from colima_ref.domain.models import QueueInfo


class MessageBroker(Protocol):
    """Durable queues and persistent messages.

    ``publish`` returns only once the broker has taken the message (publisher confirm), declaring
    the queue durable if needed. ``queue_info`` of an unknown queue reports ``exists=False`` and
    does not create it. Both raise MessageQueueError when the broker cannot be reached.
    """

    async def publish(self, queue: str, body: bytes) -> None: ...

    async def queue_info(self, queue: str) -> QueueInfo: ...
