from __future__ import annotations

import attrs

from colima_ref.adapters.breaker import ServiceBreaker
from colima_ref.adapters.memory.outage import round_trip
from colima_ref.domain.errors import MessageQueueError
from colima_ref.domain.models import QueueInfo, ServiceHealth


@attrs.define
class InMemoryMessageBroker:
    """A MessageBroker and HealthProbe keeping each queue's messages in a list, with no consumers.

    ``publish`` creates the queue; ``queue_info`` never does. Every call raises MessageQueueError
    while ``failing`` is set. With a ``breaker``, every call but ``check`` passes through it.
    """

    failing: bool = False
    breaker: ServiceBreaker | None = attrs.field(default=None, repr=False)
    _queues: dict[str, list[bytes]] = attrs.field(factory=dict, init=False, repr=False)

    async def publish(self, queue: str, body: bytes) -> None:
        await self._reach("publish")
        self._queues.setdefault(queue, []).append(body)

    async def queue_info(self, queue: str) -> QueueInfo:
        await self._reach("queue_info")
        messages = self._queues.get(queue)
        if messages is None:
            return QueueInfo(queue=queue, exists=False)
        return QueueInfo(queue=queue, exists=True, message_count=len(messages))

    def messages(self, queue: str) -> list[bytes]:
        """The bodies queued on ``queue`` so far, oldest first (empty for an unknown queue)."""
        return list(self._queues.get(queue, ()))

    async def check(self) -> ServiceHealth:
        self._fail_if_told()
        return ServiceHealth(healthy=True, info={"backend": "memory"})

    async def _reach(self, operation: str) -> None:
        await round_trip(self.breaker, self._fail_if_told, operation=operation)

    def _fail_if_told(self) -> None:
        if self.failing:
            raise MessageQueueError("In-memory broker is set to fail", service="rabbitmq")
