"""CertificateRenewal on a scripted issuer: what is served while renewals fail, and the files."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from colima_ref.domain.certificates import CertificateFacts, IssuedCertificate, ServedCertificate
from colima_ref.domain.errors import VaultUnavailableError
from colima_ref.tls import CertificateRenewal, private_directory

DOWN = VaultUnavailableError("Vault is unavailable: unreachable", {"reason": "unreachable"})


def certificate(serial: str, seconds: float) -> IssuedCertificate:
    expires_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return IssuedCertificate(
        f"CERT {serial}\n", f"KEY {serial}\n", CertificateFacts(serial, expires_at)
    )


class ScriptedIssuer:
    def __init__(self, *outcomes: IssuedCertificate | Exception) -> None:
        self.outcomes = list(outcomes)

    async def issue(self) -> IssuedCertificate:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


async def test_vault_down_at_renewal_keeps_serving_and_warns_once_per_attempt(
    tmp_path: Path,
) -> None:
    served = ServedCertificate()
    issuer = ScriptedIssuer(certificate("aa", 1.5), DOWN, DOWN, DOWN, DOWN, certificate("bb", 60))
    renewal = CertificateRenewal(issuer, served, tmp_path, retry=(0.05, 10.0))
    await renewal.issue()

    seen = set()
    with capture_logs() as logs:
        renewing = asyncio.create_task(renewal.keep_renewed())
        async with asyncio.timeout(5):
            while served.current is not None and served.current.serial == "aa":
                seen.add(renewal.certfile.read_text())
                await asyncio.sleep(0.01)
        renewing.cancel()

    warnings = [line for line in logs if line["event"] == "tls.certificate.renewal_failed"]
    assert [line["attempt"] for line in warnings] == [1, 2, 3, 4]
    assert {line["log_level"] for line in warnings} == {"warning"}
    assert {line["serving"] for line in warnings} == {"aa"}
    assert seen == {"CERT aa\n"}
    # Each wait doubles (0.05, 0.1, 0.2...) but never past a third of what is left of the
    # certificate being served, which the third and fourth reach.
    waits = [line["retry_in"] for line in warnings]
    assert waits[:2] == [0.05, 0.1]
    assert waits[2] < 0.2
    assert waits[3] < 0.4
    for line in warnings:
        assert line["retry_in"] <= max(line["seconds_left"] / 3, 0.05) + 0.01
    assert renewal.certfile.read_text() == "CERT bb\n"
    assert renewal.keyfile.read_text() == "KEY bb\n"


async def test_the_key_file_is_the_owners_alone_and_the_directory_goes_at_exit() -> None:
    with private_directory() as directory:
        renewal = CertificateRenewal(
            ScriptedIssuer(certificate("aa", 60)), ServedCertificate(), directory
        )
        await renewal.issue()
        modes = directory.stat().st_mode & 0o777, renewal.keyfile.stat().st_mode & 0o777

    assert modes == (0o700, 0o600)
    assert not directory.exists()


async def test_a_failed_first_issue_serves_nothing(tmp_path: Path) -> None:
    served = ServedCertificate()
    renewal = CertificateRenewal(ScriptedIssuer(DOWN), served, tmp_path)

    with pytest.raises(VaultUnavailableError):
        await renewal.issue()

    assert served.current is None
    assert not renewal.certfile.exists()
