"""In-memory adapters for every port: demo mode runs on them and tests use them as fakes.

Each class also answers ``check()`` (HealthProbe) and has a ``failing`` switch that makes every
call raise its service's ServiceUnavailableError subclass.
"""

from __future__ import annotations

from colima_ref.adapters.memory.cache import InMemoryCache
from colima_ref.adapters.memory.cluster import InMemoryClusterTopology
from colima_ref.adapters.memory.databases import InMemoryDocumentDatabase, InMemorySqlDatabase
from colima_ref.adapters.memory.messaging import InMemoryMessageBroker
from colima_ref.adapters.memory.secrets import DEMO_SECRETS, InMemorySecretStore
from colima_ref.ports.services import Services

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


def services() -> Services:
    """A fresh, healthy in-memory Services bundle; each probe is the adapter it reports on.

    The ``redis`` probe is the cluster topology, whose health carries the cluster fields the
    contract shows; the cache shares no state with it.
    """
    secrets = InMemorySecretStore()
    postgres = InMemorySqlDatabase("PostgreSQL")
    mysql = InMemorySqlDatabase("MySQL")
    mongodb = InMemoryDocumentDatabase()
    cluster = InMemoryClusterTopology()
    broker = InMemoryMessageBroker()
    return Services(
        backend="memory",
        secrets=secrets,
        postgres=postgres,
        mysql=mysql,
        mongodb=mongodb,
        cache=InMemoryCache(),
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
    )
