"""`scripts/devstack.sh with`, which `make test` runs pytest through, on a running devstack: it
starts nothing, stops nothing, hands the command the devstack's addresses and its exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from live_support import ROOT, addresses, listening

pytestmark = pytest.mark.integration

PRINT_ENV = "import json, os, sys; print(json.dumps(dict(os.environ))); sys.exit(7)"


def test_with_on_a_running_devstack_starts_nothing_and_passes_the_command_its_addresses(
    devstack: dict[str, str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    ran = subprocess.run(
        ["bash", str(ROOT / "scripts" / "devstack.sh"), "with", sys.executable, "-c", PRINT_ENV],
        env={**os.environ, "DEVSTACK_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert ran.returncode == 7, ran.stderr
    seen = json.loads(ran.stdout.splitlines()[0])
    assert "this run starts nothing" in ran.stderr
    assert {name: seen[name] for name in ("VAULT_ADDR", "MONGODB_PORT", "REDIS_NODES")} == {
        name: devstack[name] for name in ("VAULT_ADDR", "MONGODB_PORT", "REDIS_NODES")
    }
    assert "COLIMA_BACKEND" not in seen
    assert not (state / "sessions" / "started").exists()
    assert list((state / "sessions").iterdir()) == []
    assert all(listening(*where) for found in addresses(devstack).values() for where in found)
