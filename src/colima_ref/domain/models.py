"""Domain values handed between ports, domain services and the HTTP edge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

SLOT_COUNT = 16384

HealthStatus = Literal["healthy", "unhealthy"]
NodeRole = Literal["master", "replica"]


@attrs.frozen
class Secret:
    """The key/value pairs stored at one secret path. Values never appear in a repr."""

    path: str
    data: Mapping[str, str] = attrs.field(repr=False)


@attrs.frozen
class ServiceHealth:
    """What one backend's health probe saw.

    ``info`` is shown beside ``status`` in health responses (a version, a cluster state...).
    ``error`` explains an unhealthy status in words safe to show a client.
    """

    healthy: bool
    info: Mapping[str, Any] = attrs.field(factory=dict)
    error: str | None = None

    @property
    def status(self) -> HealthStatus:
        return "healthy" if self.healthy else "unhealthy"


@attrs.frozen
class QueryResult:
    """A test query sent to a database and the value it returned, as text."""

    query: str
    result: str


@attrs.frozen
class CacheEntry:
    """A cached value and its remaining lifetime in seconds (None: it never expires)."""

    value: str
    ttl: int | None


def _valid_slot(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value < SLOT_COUNT:
        raise ValueError(f"{attribute.name} must be a slot in 0..{SLOT_COUNT - 1}, got {value}")


@attrs.frozen(order=True)
class SlotRange:
    """An inclusive range of hash slots."""

    start: int = attrs.field(validator=_valid_slot)
    end: int = attrs.field(validator=_valid_slot)

    def __attrs_post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"slot range ends ({self.end}) before it starts ({self.start})")

    @property
    def count(self) -> int:
        return self.end - self.start + 1


@attrs.frozen
class ClusterNode:
    """One node of a Redis Cluster as CLUSTER NODES reports it."""

    node_id: str
    host: str
    port: int
    role: NodeRole
    flags: tuple[str, ...] = ()
    master_id: str | None = None
    ping_sent: str = "0"
    pong_recv: str = "0"
    config_epoch: int = 0
    link_state: str = "connected"
    slots: tuple[SlotRange, ...] = ()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@attrs.frozen
class QueueInfo:
    """What the broker knows of a queue. An unknown queue has ``exists=False`` and zero counts."""

    queue: str
    exists: bool
    message_count: int = 0
    consumer_count: int = 0
