"""The fixtures of the live-server tests; the helpers they and the tests use are in
live_support.py, which test modules import by that name (see its docstring for why).

Everything runs against what `scripts/devstack.sh up` leaves on 127.0.0.1 (`make test` starts it
for the run when it is not running). A service that is not listening, or a Vault on the devstack's
port that is not the devstack's, skips the test with the reason, or fails it when CI=true.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import hvac
import pytest
import requests
from live_support import (
    DEVSTACK_HINT,
    SECRET_PATHS,
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
        skip_or_fail(f"scripts/devstack.sh env failed ({type(exc).__name__}); {DEVSTACK_HINT}")
    for service, where in addresses(env).items():
        for host, port in where:
            if not listening(host, port):
                skip_or_fail(f"{service} is not listening on {host}:{port}; {DEVSTACK_HINT}")
    require_the_devstacks_vault(env)
    return env


def require_the_devstacks_vault(env: dict[str, str]) -> None:
    """Every live test reads its credentials from Vault: one that is someone else's (another
    project's dev server on the same port) is named here once, not in a hundred failures."""
    addr = env["VAULT_ADDR"]
    client = hvac.Client(url=addr, token=env["VAULT_TOKEN"], timeout=5)
    try:
        if not client.is_authenticated():
            skip_or_fail(f"the Vault at {addr} rejects the devstack's token: not the devstack's")
        for path in SECRET_PATHS:
            try:
                client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point="secret", raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                skip_or_fail(f"the Vault at {addr} holds no secret/{path}: not the devstack's")
    except (requests.RequestException, hvac.exceptions.VaultError) as exc:
        skip_or_fail(f"the Vault at {addr} does not answer as a Vault ({type(exc).__name__})")
    finally:
        client.adapter.close()


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
