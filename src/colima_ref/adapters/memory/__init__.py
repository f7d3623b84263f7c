"""In-memory adapters for every port: demo mode runs on them and tests use them as fakes.

Each class also answers ``check()`` (HealthProbe) and has a ``failing`` switch that makes every
call raise its service's ServiceUnavailableError subclass.
"""

from __future__ import annotations

from colima_ref.adapters.breaker import (
    DEFAULT_FAIL_MAX,
    DEFAULT_RESET_TIMEOUT,
    BreakerRecorder,
    breakers_for,
)
from colima_ref.adapters.memory.cache import InMemoryCache
from colima_ref.adapters.memory.cluster import InMemoryClusterTopology
from colima_ref.adapters.memory.databases import InMemoryDocumentDatabase, InMemorySqlDatabase
from colima_ref.adapters.memory.messaging import InMemoryMessageBroker
from colima_ref.adapters.memory.secrets import DEMO_SECRETS, InMemorySecretStore
from colima_ref.ports.services import SERVICE_NAMES, Services

__all__ = [
    "DEMO_SECRETS",
    "InMemoryCache",
    "InMemoryClusterTopology",
    "InMemoryDocumentDatabase",
    "InMemoryMessageBroker",
    "InMemorySecretStore",
    "InMemorySqlDatabase",
    "services",
]


def services(
    *,
    fail_max: int = DEFAULT_FAIL_MAX,
    reset_timeout: float = DEFAULT_RESET_TIMEOUT,
    recorder: BreakerRecorder | None = None,
) -> Services:
    """A fresh, healthy in-memory Services bundle; each probe is the adapter it reports on.

    The ``redis`` probe is the cluster topology, whose health carries the cluster fields the
    contract shows; the cache shares no state with it, only the ``redis`` circuit breaker. Every
    service has a breaker (``fail_max``, ``reset_timeout`` seconds) reporting to ``recorder``.
    """
    breakers = breakers_for(
        SERVICE_NAMES, fail_max=fail_max, reset_timeout=reset_timeout, recorder=recorder
    )
    secrets = InMemorySecretStore(breaker=breakers["vault"])
    postgres = InMemorySqlDatabase("PostgreSQL", breaker=breakers["postgres"])
    mysql = InMemorySqlDatabase("MySQL", breaker=breakers["mysql"])
    mongodb = InMemoryDocumentDatabase(breaker=breakers["mongodb"])
    cluster = InMemoryClusterTopology(breaker=breakers["redis"])
    broker = InMemoryMessageBroker(breaker=breakers["rabbitmq"])
    return Services(
        backend="memory",
        secrets=secrets,
        postgres=postgres,
        mysql=mysql,
        mongodb=mongodb,
        cache=InMemoryCache(breaker=breakers["redis"]),
        cluster=cluster,
        broker=broker,
        probes={
            "vault": secrets,
            "postgres": postgres,
            "mysql": mysql,
            "mongodb": mongodb,
            "redis": cluster,
            "rabbitmq": broker,
        },
        breakers=breakers,
    )
