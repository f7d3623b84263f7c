"""The Vault client reads the proxy and CA environment once, and still honours it."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
import requests

from colima_ref.adapters.vault import _hvac_client

HEALTH = {"initialized": True, "sealed": False, "standby": False, "version": "proxied"}


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself, remembering what it was asked for."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        body = json.dumps(HEALTH).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def proxy() -> Iterator[str]:
    _Proxy.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_go_through_the_proxy_the_environment_names(
    proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = _hvac_client("http://vault.invalid:8200", "token", 2.0)

    health = client.sys.read_health_status(method="GET")

    assert health["version"] == "proxied"
    assert _Proxy.seen == ["http://vault.invalid:8200/v1/sys/health"]


def test_a_host_in_no_proxy_is_reached_directly(
    proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "vault.invalid")
    client = _hvac_client("http://vault.invalid:8200", "token", 2.0)

    with pytest.raises(requests.ConnectionError):
        client.sys.read_health_status(method="GET")
    assert _Proxy.seen == []


def test_a_ca_bundle_from_the_environment_is_used_unless_vault_names_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VAULT_CACERT", raising=False)
    monkeypatch.delenv("VAULT_CAPATH", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    from_requests_env = _hvac_client("https://vault.invalid:8200", "token", 2.0)
    monkeypatch.setenv("VAULT_CACERT", "/etc/vault/ca.pem")
    vault_names_its_own = _hvac_client("https://vault.invalid:8200", "token", 2.0)

    assert from_requests_env.session.verify == "/etc/ssl/corporate.pem"
    assert vault_names_its_own.session.verify != "/etc/ssl/corporate.pem"
