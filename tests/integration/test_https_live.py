"""``serve --https-port`` with a certificate Vault's PKI engine issues (the devstack's `pki/` and
role `colima-ref`): the handshake, renewal under a kept-alive connection, Vault down at renewal,
and neither the key nor the certificate's body in a log line or a response."""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import hvac
import pytest
from live_support import (
    QUIET,
    WHOLE_STACK,
    LiveServer,
    Relay,
    addresses,
    assert_clean_shutdown,
    free_port,
    skip_or_fail,
)
from tls_support import KeptAlive, as_peer_serial, client_context, served_serial

pytestmark = WHOLE_STACK

# Renewed at two thirds: 20 s after each issue.
SHORT_TTL = {"TLS_TTL": "30s"}


@pytest.fixture(scope="module")
def pki(devstack: dict[str, str], vault_admin: hvac.Client) -> dict[str, str]:
    """The devstack's variables, once its PKI engine, role and CA file are there."""
    role, mount = devstack.get("VAULT_PKI_ROLE"), devstack.get("VAULT_PKI_MOUNT", "pki")
    ca = devstack.get("DEVSTACK_CA_CERT", "")
    hint = "run `scripts/devstack.sh pki` (or `make devstack-up`)"
    if not role:
        skip_or_fail(f"scripts/devstack.sh env names no VAULT_PKI_ROLE; {hint}")
    try:
        vault_admin.secrets.pki.read_role(role, mount_point=mount)
    except hvac.exceptions.VaultError:
        skip_or_fail(f"the devstack's Vault has no PKI role {mount}/roles/{role}; {hint}")
    if not Path(ca).is_file():
        skip_or_fail(f"the devstack CA certificate is not at {ca!r}; {hint}")
    return devstack


def https_server(env: dict[str, str], workdir: Path) -> tuple[LiveServer, int]:
    https_port = free_port()
    server = LiveServer(
        # A private TMPDIR: the certificate's directory must be gone after the process.
        {**env, **QUIET, "TMPDIR": str(workdir / "tmp")},
        workdir,
        arguments=("--https-port", str(https_port)),
    )
    (workdir / "tmp").mkdir()
    server.start()
    return server, https_port


@pytest.fixture
def served(pki: dict[str, str], tmp_path: Path) -> Iterator[tuple[LiveServer, int]]:
    server, https_port = https_server(pki, tmp_path)
    yield server, https_port
    server.stop_if_running()


def statuses(report: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return report["status"], {name: body["status"] for name, body in report["services"].items()}


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.5)


def assert_nothing_secret_in(texts: list[str], certificate_der: bytes) -> None:
    """No PEM block, and not even a line of the certificate's base64 body, in ``texts``."""
    body = base64.b64encode(certificate_der).decode()
    for text in texts:
        assert "PRIVATE KEY" not in text
        assert "-----BEGIN" not in text
        for start in range(0, len(body) - 64, 64):
            assert body[start : start + 64] not in text


def test_a_client_trusting_the_dev_ca_gets_the_same_health_over_https(
    served: tuple[LiveServer, int], pki: dict[str, str]
) -> None:
    server, https_port = served
    ca = pki["DEVSTACK_CA_CERT"]
    with httpx2.Client(
        base_url=f"https://127.0.0.1:{https_port}", verify=client_context(ca), timeout=15
    ) as https:
        over_https = https.get("/health/all")
        vault = https.get("/health/vault").json()
        metrics = https.get("/metrics").text
    over_http = server.get("/health/all")

    assert over_https.status_code == over_http.status_code == 200
    assert statuses(over_https.json()) == statuses(over_http.json())
    certificate = vault["details"]["tls_certificate"]
    assert as_peer_serial(certificate["serial"]) == served_serial(https_port, ca)
    expires_at = datetime.datetime.fromisoformat(certificate["expires_at"]).timestamp()
    gauge = next(
        line.split()[1]
        for line in metrics.splitlines()
        if line.startswith("tls_certificate_expiry_timestamp_seconds ")
    )
    assert float(gauge) == expires_at
    assert_nothing_secret_in(
        [over_https.text, json.dumps(vault), metrics, server.stdout, server.stderr],
        peer_certificate(https_port, ca),
    )


def peer_certificate(port: int, ca: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port), ca_certs=ca))


def test_the_certificate_is_renewed_while_a_kept_alive_connection_goes_on(
    pki: dict[str, str], tmp_path: Path
) -> None:
    server, https_port = https_server({**pki, **SHORT_TTL}, tmp_path)
    ca = pki["DEVSTACK_CA_CERT"]
    first_der = peer_certificate(https_port, ca)
    kept = KeptAlive(https_port, ca)
    try:
        answers = [kept.get("/health/")[0]]
        # A request every second keeps the connection inside its 5 s idle deadline.
        deadline = time.monotonic() + 40
        while served_serial(https_port, ca) == kept.serial:
            assert time.monotonic() < deadline, "the certificate was not renewed within 40 s"
            answers.append(kept.get("/health/")[0])
            time.sleep(1)
        answers.append(kept.get("/health/")[0])
        renewed = served_serial(https_port, ca)
        renewed_der = peer_certificate(https_port, ca)
        reported = server.get("/health/vault").json()["details"]["tls_certificate"]["serial"]
    finally:
        kept.close()
    code = server.stop()

    assert set(answers) == {200}
    assert len(answers) >= 3
    assert kept.same_connection
    assert as_peer_serial(reported) == renewed != kept.serial
    assert server.stdout.count('"tls.certificate.issued"') >= 2
    assert_clean_shutdown(server, code)
    assert list((tmp_path / "tmp").iterdir()) == []
    for der in (first_der, renewed_der):
        assert_nothing_secret_in([server.stdout, server.stderr], der)


def test_vault_down_at_renewal_keeps_the_certificate_and_warns_once_per_attempt(
    pki: dict[str, str], tmp_path: Path
) -> None:
    ((host, port),) = addresses(pki)["vault"]
    relay = Relay((host, port))
    relay.restore()
    env = {**pki, **SHORT_TTL, "VAULT_ADDR": f"http://127.0.0.1:{relay.port}"}
    try:
        server, https_port = https_server(env, tmp_path)
        ca = pki["DEVSTACK_CA_CERT"]
        issued = served_serial(https_port, ca)
        relay.cut()

        def warnings() -> list[dict[str, Any]]:
            lines = [json.loads(line) for line in server.stdout.splitlines() if line.strip()]
            return [line for line in lines if line["message"] == "tls.certificate.renewal_failed"]

        wait_for(lambda: len(warnings()) >= 3, 35, "three failed renewals")
        still = served_serial(https_port, ca)
        relay.restore()
        wait_for(
            lambda: served_serial(https_port, ca) != issued, 15, "renewal after Vault came back"
        )
        code = server.stop()
    finally:
        relay.close()

    failed = warnings()
    assert still == issued
    assert [line["attempt"] for line in failed] == list(range(1, len(failed) + 1))
    assert {line["levelname"] for line in failed} == {"WARNING"}
    assert {line["reason"] for line in failed} <= {"unreachable", "timeout"}
    assert all(0 < line["retry_in"] <= max(line["seconds_left"], 1) for line in failed)
    assert_clean_shutdown(server, code)


def test_a_certificate_vault_will_not_issue_stops_the_start_with_status_3(
    pki: dict[str, str], tmp_path: Path
) -> None:
    server = LiveServer(
        {**pki, "VAULT_PKI_ROLE": "no-such-role"},
        tmp_path,
        arguments=("--https-port", str(free_port())),
    )
    with pytest.raises(pytest.fail.Exception, match="server exited with 3"):
        server.start()

    errors = [line for line in server.stdout.splitlines() if '"levelname":"ERROR"' in line]
    assert len(errors) == 1
    assert "the TLS certificate could not be issued: Vault refused our request" in errors[0]
    assert "Traceback" not in server.stdout + server.stderr
