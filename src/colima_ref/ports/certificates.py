from __future__ import annotations

from typing import Protocol

from colima_ref.domain.certificates import IssuedCertificate


class CertificateIssuer(Protocol):
    """Issues a new certificate and private key for the HTTPS listener on each call.

    Raises ServiceUnavailableError (VaultUnavailableError) when the issuer cannot be reached,
    refuses, or does not answer in time.
    """

    async def issue(self) -> IssuedCertificate: ...
