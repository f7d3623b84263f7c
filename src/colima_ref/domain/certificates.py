"""The HTTPS listener's certificate: what an issuer hands over, and what the service reports of
the one it serves (its serial and expiry, never its body or key)."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import attrs

from colima_ref.domain.models import ServiceHealth
from colima_ref.ports.probes import HealthProbe


@attrs.frozen
class CertificateFacts:
    """What may be shown of a certificate: its serial (as Vault writes it) and its expiry (UTC)."""

    serial: str
    expires_at: datetime.datetime

    def as_details(self) -> dict[str, str]:
        return {"expires_at": self.expires_at.isoformat(), "serial": self.serial}


@attrs.frozen
class IssuedCertificate:
    """A certificate with its private key, both PEM. Neither is ever in a repr."""

    certificate: str = attrs.field(repr=False)
    private_key: str = attrs.field(repr=False)
    facts: CertificateFacts


@attrs.define
class ServedCertificate:
    """The certificate new TLS handshakes get, as it changes; ``subscribe`` hears of each one."""

    current: CertificateFacts | None = None
    _listeners: list[Callable[[CertificateFacts], None]] = attrs.field(factory=list, init=False)

    def subscribe(self, listener: Callable[[CertificateFacts], None]) -> None:
        self._listeners.append(listener)
        if self.current is not None:
            listener(self.current)

    def replace(self, facts: CertificateFacts) -> None:
        self.current = facts
        for listener in self._listeners:
            listener(facts)


@attrs.frozen
class ReportingCertificate:
    """A HealthProbe (Vault's) whose details also name the served certificate, as
    ``tls_certificate``: Vault issued it, so Vault's report is where an operator looks."""

    probe: HealthProbe
    served: ServedCertificate

    async def check(self) -> ServiceHealth:
        health = await self.probe.check()
        facts = self.served.current
        if facts is None:
            return health
        details = {**health.info.get("details", {}), "tls_certificate": facts.as_details()}
        return attrs.evolve(health, info={**health.info, "details": details})
