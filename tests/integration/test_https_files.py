"""``serve --https-port`` with SSL_CERTFILE/SSL_KEYFILE: the same app, one process, both ports.

No service needed: the memory backend, and a self-signed certificate made by the openssl tool.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from live_support import LiveServer, assert_clean_shutdown, free_port, skip_or_fail
from tls_support import client_context, served_serial

from colima_ref.head_deadline import HEAD_TIMEOUT


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, valid for a day."""
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl tool is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ),
            *("-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture
def both(tmp_path: Path, self_signed: tuple[Path, Path]) -> Iterator[tuple[LiveServer, int]]:
    cert, key = self_signed
    https_port = free_port()
    server = LiveServer(
        # The devstack's environment names its PKI role, a second certificate source.
        {"RATE_LIMIT_ENABLED": "false", "VAULT_PKI_ROLE": ""},
        tmp_path,
        backend="memory",
        arguments=(
            *("--https-port", str(https_port)),
            *("--ssl-certfile", str(cert), "--ssl-keyfile", str(key)),
        ),
    )
    server.start()
    yield server, https_port
    server.stop_if_running()


def statuses(report: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    services = {name: body["status"] for name, body in report["services"].items()}
    return report["status"], report["backend"], services


def test_https_serves_the_same_app_as_http(
    both: tuple[LiveServer, int], self_signed: tuple[Path, Path]
) -> None:
    """A value cached over HTTPS is read back over HTTP: one app, one in-memory backend."""
    server, https_port = both
    cert, key = self_signed
    with httpx2.Client(
        base_url=f"https://127.0.0.1:{https_port}", verify=client_context(cert), timeout=10
    ) as https:
        stored = https.post("/examples/cache/tls-key", params={"value": "over-tls", "ttl": 60})
        read_back = server.get("/examples/cache/tls-key")
        health = https.get("/health/all")

    assert stored.status_code == 200, stored.text
    assert read_back.status_code == 200
    assert read_back.json()["value"] == "over-tls"
    assert statuses(health.json()) == statuses(server.get("/health/all").json())
    assert served_serial(https_port, cert)
    key_body = key.read_text().splitlines()[1]
    assert key_body not in server.stdout + server.stderr


def test_an_idle_https_connection_is_closed_at_the_head_deadline(
    both: tuple[LiveServer, int], self_signed: tuple[Path, Path]
) -> None:
    """The HTTPS listener runs the same protocol: no request within 5 s of the handshake, closed."""
    _, https_port = both
    cert, _ = self_signed
    with (
        socket.create_connection(("127.0.0.1", https_port), timeout=HEAD_TIMEOUT + 5) as raw,
        client_context(cert).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        opened = time.monotonic()
        tls.sendall(b"GET /health/ HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        assert tls.recv(1024) == b""
        closed_after = time.monotonic() - opened

    assert HEAD_TIMEOUT - 0.5 < closed_after < HEAD_TIMEOUT + 2


def test_sigterm_stops_both_listeners_and_exits_0(both: tuple[LiveServer, int]) -> None:
    server, https_port = both

    code = server.stop()

    assert_clean_shutdown(server, code)
    assert server.stdout.count("Application shutdown complete.") == 1
    assert server.stdout.count("Shutting down") == 2
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", https_port), timeout=5)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ([], "--https-port needs SSL_CERTFILE or VAULT_PKI_ROLE"),
        (
            ["--workers", "2", "--ssl-certfile", "c.pem"],
            "--https-port serves from one process: no --workers, no --reload",
        ),
        (
            ["--reload", "--ssl-certfile", "c.pem"],
            "--https-port serves from one process: no --workers, no --reload",
        ),
    ],
)
def test_https_port_without_a_certificate_or_with_workers_is_refused(
    arguments: list[str], error: str
) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "colima_ref", "serve", "--backend", "memory"),
            *("--port", str(free_port()), "--https-port", str(free_port()), *arguments),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        # Metrics off: with them on, more than one worker is refused before HTTPS is looked at.
        env={**os.environ, "SSL_CERTFILE": "", "VAULT_PKI_ROLE": "", "METRICS_ENABLED": "false"},
    )

    assert result.returncode == 2
    assert result.stderr == f"colima-ref: error: {error}\n"
