from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import attrs

from colima_ref.ports.breakers import BreakerStatus
from colima_ref.ports.cache import Cache
from colima_ref.ports.cluster import ClusterTopology
from colima_ref.ports.databases import DocumentDatabase, SqlDatabase
from colima_ref.ports.messaging import MessageBroker
from colima_ref.ports.probes import HealthProbe
from colima_ref.ports.secrets import SecretStore

Backend = Literal["memory", "live"]

SERVICE_NAMES = ("vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq")


@attrs.frozen
class Services:
    """Everything the HTTP edge talks to, built once by the composition root.

    ``breakers`` holds the circuit breaker of each service that has one, for health reports.
    """

    backend: Backend
    secrets: SecretStore
    postgres: SqlDatabase
    mysql: SqlDatabase
    mongodb: DocumentDatabase
    cache: Cache
    cluster: ClusterTopology
    broker: MessageBroker
    probes: Mapping[str, HealthProbe]
    breakers: Mapping[str, BreakerStatus] = attrs.field(factory=dict)
