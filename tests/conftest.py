"""What every test shares: the ``live`` marker."""

from __future__ import annotations

import pytest

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
