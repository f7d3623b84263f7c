"""Two real server processes sharing one Redis rate-limit storage enforce one global limit; the
app closes its connections to that storage when it shuts down.

Needs the standalone Redis at REDIS_URL (default redis://127.0.0.1:6379/0, no auth): the test
skips with the reason when it is unreachable, or fails when CI=true.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx2
import pytest
import redis
from live_support import free_port, skip_or_fail
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from colima_ref.adapters import memory
from colima_ref.http.app import create_app
from colima_ref.ports.services import Services
from colima_ref.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.redis]

REDIS_URL = os.environ.get("RATE_LIMIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
STARTUP_TIMEOUT = 20.0  # seconds


def require_redis() -> None:
    parts = urlsplit(REDIS_URL)
    address = (parts.hostname or "127.0.0.1", parts.port or 6379)
    try:
        with socket.create_connection(address, timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        skip_or_fail(f"Redis at {address[0]}:{address[1]} is unreachable ({type(exc).__name__})")
        return
    if not reply.startswith(b"+PONG"):
        skip_or_fail(f"Redis at {address[0]}:{address[1]} did not answer PING ({reply!r})")


def wait_until_serving(process: subprocess.Popen[bytes], base_url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with code {process.returncode} before serving")
        try:
            # /health/ has its own policy, so polling it spends nothing of the tested limit.
            if httpx2.get(f"{base_url}/health/", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            time.sleep(0.1)
    pytest.fail(f"server at {base_url} did not answer within {STARTUP_TIMEOUT} s")


@pytest.fixture
def two_servers() -> Iterator[list[str]]:
    """Two ``python -m colima_ref serve`` processes sharing one Redis storage and key prefix."""
    require_redis()
    env = {
        **os.environ,
        "COLIMA_BACKEND": "memory",
        "RATE_LIMIT_DEFAULT": "10/minute",
        "RATE_LIMIT_STORAGE_URL": REDIS_URL,
        # A fresh prefix per run, so counters of earlier runs (or other tests) never count here.
        "RATE_LIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        "LOG_LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _ in range(2):
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "colima_ref", "serve", "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for process, url in zip(processes, urls, strict=True):
            wait_until_serving(process, url)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                _, stderr = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                _, stderr = process.communicate()
            # An unclosed Redis client on shutdown shows up here as a ResourceWarning or error.
            assert b"Traceback" not in stderr, stderr.decode(errors="replace")


def test_two_processes_sharing_redis_storage_enforce_one_global_limit(
    two_servers: list[str],
) -> None:
    statuses: list[int] = []
    with httpx2.Client(timeout=5) as client:
        for n in range(20):
            response = client.get(f"{two_servers[n % 2]}/")
            statuses.append(response.status_code)

    assert statuses.count(200) == 10
    assert statuses[:10] == [200] * 10
    assert statuses[10:] == [429] * 10


def test_an_unreachable_storage_lets_requests_through_and_counts_each_one() -> None:
    app = create_app(
        _memory_services,
        Settings.from_env(
            {
                "RATE_LIMIT_DEFAULT": "1/minute",
                # Nothing listens on port 1, so every storage call is refused at once.
                "RATE_LIMIT_STORAGE_URL": "redis://127.0.0.1:1/0",
            }
        ).http,
    )

    with TestClient(app) as client:
        statuses = [client.get("/").status_code for _ in range(3)]
        metrics = client.get("/metrics").text

    assert statuses == [200, 200, 200]
    errors = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "rate_limit_storage_errors_total"
    ]
    # /metrics itself is limited too, and its request is counted before it renders.
    assert errors == [4]


def _client_names() -> set[str]:
    with redis.Redis.from_url(REDIS_URL) as admin:
        return {client["name"] for client in admin.client_list()}


def test_shutting_the_app_down_closes_its_connections_to_the_storage() -> None:
    require_redis()
    name = f"colima-ref-test-{uuid.uuid4().hex}"
    app = create_app(
        _memory_services,
        Settings.from_env(
            {
                # redis-py takes client_name from the URL, so the connection is ours to find.
                "RATE_LIMIT_STORAGE_URL": f"{REDIS_URL}?client_name={name}",
                "RATE_LIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
            }
        ).http,
    )

    with TestClient(app) as client:
        assert client.get("/").status_code == 200
        assert name in _client_names()

    deadline = time.monotonic() + 2
    while name in _client_names():
        assert time.monotonic() < deadline, "the storage's connection outlived the app"
        time.sleep(0.05)


@asynccontextmanager
async def _memory_services() -> AsyncIterator[Services]:
    yield memory.services()
