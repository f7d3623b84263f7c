"""What every test shares: the ``live`` marker, and the private servers both the contract suite
and the integration tests provision accounts on, each started once per run, when a test first
asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers.mongo import Secantus, secantus
from servers.postgres import PrivateServer, private_postgres
from servers.rabbitmq import Account, rabbitmq_account
from servers.redis import PrivateCluster, private_cluster

SERVICE_MARKERS = ("integration", "vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "live: needs a real service; given to every test carrying one of "
        f"{', '.join(SERVICE_MARKERS)} (`-m 'not live'` runs without any)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Runs before ``-m`` deselects, so ``-m "not live"`` sees the marker."""
    for item in items:
        if any(item.get_closest_marker(name) for name in SERVICE_MARKERS):
            item.add_marker(pytest.mark.live)


@pytest.fixture(scope="session")
def private_postgres_server() -> Iterator[PrivateServer]:
    """A PostgreSQL that checks passwords; a test that stops it starts it again."""
    with private_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def secantus_server() -> Iterator[Secantus]:
    with secantus() as server:
        yield server


@pytest.fixture(scope="session")
def redis_private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    with private_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def rabbitmq_test_account() -> Iterator[Account]:
    """A vhost and user of the run's own on the shared broker; tests may rotate its password."""
    with rabbitmq_account() as account:
        yield account
