"""What every test shares: a clean process-wide secret registry, and the ``live`` marker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from colima_ref.observability.redaction import SECRETS

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


@pytest.fixture(autouse=True)
def forget_secrets_registered_by_the_test() -> Iterator[None]:
    """Loading a credential registers its values for log redaction process-wide; a value one
    test loads (Hypothesis draws ones as short as "ok", a live test's wrong password is "x")
    must not be masked in a later test's output, whichever directory either test is in."""
    before = SECRETS.exact
    yield
    SECRETS.discard(SECRETS.exact - before)
