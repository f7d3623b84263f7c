"""The fixtures of the live-server tests; the helpers they and the tests use are in
live_support.py, which test modules import by that name (see its docstring for why).

Everything runs against what `scripts/devstack.sh up` leaves on 127.0.0.1. A service that is not
listening skips the test with the reason, or fails it when CI=true.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import hvac
import pytest
from live_support import (
    SUMMARIES,
    VaultFolder,
    addresses,
    listening,
    read_devstack_env,
    skip_or_fail,
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for summary in terminalreporter.config.stash.get(SUMMARIES, []):
        terminalreporter.write_line("")
        for line in summary.splitlines():
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def devstack() -> dict[str, str]:
    """The devstack's variables, once every service they name is listening."""
    try:
        env = read_devstack_env()
    except (OSError, subprocess.SubprocessError) as exc:
        skip_or_fail(f"scripts/devstack.sh env failed ({type(exc).__name__})")
    for service, where in addresses(env).items():
        for host, port in where:
            if not listening(host, port):
                skip_or_fail(f"{service} is not listening on {host}:{port}")
    return env


@pytest.fixture(scope="session")
def vault_admin(devstack: dict[str, str]) -> Iterator[hvac.Client]:
    client = hvac.Client(url=devstack["VAULT_ADDR"], token=devstack["VAULT_TOKEN"], timeout=5)
    yield client
    client.adapter.close()


@pytest.fixture
def vault_folder(vault_admin: hvac.Client) -> Iterator[VaultFolder]:
    folder = VaultFolder(vault_admin)
    folder.copy_devstack()
    try:
        yield folder
    finally:
        folder.delete()
