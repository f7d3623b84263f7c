"""The contract suite's rule for live services: skip when one is down, fail under CI=true."""

from __future__ import annotations

import pytest

from colima_ref.adapters import memory
from colima_ref.ports.secrets import SecretStore

from .conftest import open_adapter, require_reachable, service_of, unreachable


def test_an_unreachable_service_skips_with_its_name_and_the_reason() -> None:
    with pytest.raises(pytest.skip.Exception, match=r"postgres is unreachable \(refused\)"):
        unreachable("postgres", "refused", env={})


def test_an_unreachable_service_fails_the_run_under_ci() -> None:
    with pytest.raises(pytest.fail.Exception, match="CI=true requires every service"):
        unreachable("postgres", "refused", env={"CI": "true"})


async def test_a_failing_probe_counts_as_unreachable_and_names_the_error() -> None:
    probe = memory.InMemoryMessageBroker(failing=True)

    with pytest.raises(pytest.skip.Exception, match=r"rabbitmq is unreachable.*MessageQueueError"):
        await require_reachable("rabbitmq", probe, env={})


async def test_a_healthy_probe_lets_the_test_run() -> None:
    await require_reachable("rabbitmq", memory.InMemoryMessageBroker(), env={"CI": "true"})


def test_opening_an_unregistered_backend_names_the_missing_opener() -> None:
    with pytest.raises(LookupError, match="no opener for SecretStore on 'nowhere'"):
        open_adapter(SecretStore, "nowhere")


@pytest.mark.parametrize(("backend", "service"), [("memory:mysql", "mysql"), ("mysql", "mysql")])
def test_a_backend_id_names_its_service(backend: str, service: str) -> None:
    assert service_of(backend) == service
