"""OpenBao dev servers of the tests' own on free loopback ports, so sealing or killing one never
disturbs the shared devstack on 8200. Each holds ``POSTGRES`` at secret/postgres, an ``approle``
auth method and a ``reader`` policy for secret/*."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import hvac
import pytest
import requests
from live_support import free_port, skip_or_fail

BAO = Path(sys.executable).with_name("bao")
ROOT = "root"
READER_POLICY = 'path "secret/data/*" { capabilities = ["read"] }'
POSTGRES = {"user": "app", "password": "vault-test-password", "port": 5432}


@attrs.define
class DevVault:
    """One `bao server -dev` on 127.0.0.1, restartable on the same port."""

    workdir: Path
    port: int = attrs.field(factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    unseal_key: str = ""

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log_path = self.workdir / f"bao-{self.port}.log"
        # HOME is private so the dev server's token helper never writes the user's ~/.vault-token.
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.workdir)}
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(BAO),
                    "server",
                    "-dev",
                    f"-dev-root-token-id={ROOT}",
                    f"-dev-listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = re.search(r"Unseal Key: (\S+)", log_path.read_text(errors="replace"))
            if found and self.answers():
                self.unseal_key = found.group(1)
                # Closed here: an hvac client left to the collector warns of its open socket in
                # whichever later test the collection happens to run.
                root = self.root()
                try:
                    root.sys.enable_auth_method("approle")
                    root.sys.create_or_update_policy("reader", READER_POLICY)
                finally:
                    root.adapter.close()
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"bao dev server on port {self.port} did not start, see {log_path}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def root(self) -> hvac.Client:
        return hvac.Client(url=self.addr, token=ROOT, timeout=2)

    def put(self, path: str, data: dict[str, Any], mount: str = "secret") -> None:
        client = self.root()
        client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point=mount)
        client.adapter.close()

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.addr}/v1/sys/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False


def start_dev_vault(workdir: Path) -> DevVault:
    if not BAO.exists():
        skip_or_fail(f"the bao binary is not installed at {BAO} (uv sync --group devstack)")
    vault = DevVault(workdir)
    vault.start()
    vault.put("postgres", POSTGRES)
    return vault


@attrs.frozen
class AppRole:
    name: str
    role_id: str
    secret_id: str


def make_approle(vault: DevVault, **token_settings: Any) -> AppRole:
    """A fresh AppRole reading secret/*, so logins can be counted per test."""
    root = vault.root()
    name = f"app-{uuid.uuid4().hex[:8]}"
    root.auth.approle.create_or_update_approle(name, token_policies=["reader"], **token_settings)
    role_id = root.auth.approle.read_role_id(name)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(name)["data"]["secret_id"]
    root.adapter.close()
    return AppRole(name, role_id, secret_id)
