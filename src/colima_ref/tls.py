"""The HTTPS listener's certificate when Vault issues it: issued before the listener opens, and
again at two thirds of its life, while the listener keeps serving.

uvicorn takes a certificate as files, so each one is written to a private directory (0700,
removed on exit) that only this process reads. The listener's ``ssl.SSLContext`` is kept
(uvicorn's ``ssl_context_factory``), and each new certificate is loaded into it: new handshakes
get the new certificate, connections already open keep theirs, nothing is restarted.

A renewal that fails keeps the certificate being served, logs one warning per attempt and tries
again after 1, 2, 4... seconds, at most a third of the certificate's remaining validity (so
several tries still fall before it expires) and at most `MAX_RETRY` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import shutil
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import structlog

from colima_ref.domain.certificates import IssuedCertificate, ServedCertificate
from colima_ref.domain.errors import ServiceUnavailableError
from colima_ref.ports.certificates import CertificateIssuer

log = structlog.get_logger(__name__)

RENEW_AT: Final = 2 / 3
MIN_RETRY: Final = 1.0  # seconds
MAX_RETRY: Final = 300.0  # seconds


@contextlib.contextmanager
def private_directory() -> Iterator[Path]:
    """A directory only this user may enter, removed with what it holds on exit."""
    path = Path(tempfile.mkdtemp(prefix="colima-ref-tls-"))  # mkdtemp creates it 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class CertificateRenewal:
    """Keeps the certificate ``issuer`` gives in ``directory`` and in every SSL context made by
    `context_factory`, and ``served`` told which one new handshakes get. ``retry`` is the first
    and the longest wait between failed renewals, in seconds."""

    def __init__(
        self,
        issuer: CertificateIssuer,
        served: ServedCertificate,
        directory: Path,
        *,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        retry: tuple[float, float] = (MIN_RETRY, MAX_RETRY),
    ) -> None:
        self.issuer = issuer
        self.served = served
        self.certfile = directory / "certificate.pem"
        self.keyfile = directory / "private-key.pem"
        self._clock = clock
        self._min_retry, self._max_retry = retry
        self._contexts: list[ssl.SSLContext] = []

    def context_factory(
        self, _config: object, default: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        """uvicorn's ``ssl_context_factory``: its own context (from `certfile` and `keyfile`),
        kept so that renewals can load the next certificate into it."""
        context = default()
        self._contexts.append(context)
        return context

    async def issue(self) -> None:
        """Issue a certificate and serve it from the next handshake on.

        Raises ServiceUnavailableError when the issuer fails; what is served stays as it was.
        """
        issued = await self.issuer.issue()
        self._write(issued)
        for context in self._contexts:
            context.load_cert_chain(self.certfile, self.keyfile)
        self.served.replace(issued.facts)
        log.info(
            "tls.certificate.issued",
            serial=issued.facts.serial,
            expires_at=issued.facts.expires_at.isoformat(),
        )

    async def keep_renewed(self) -> None:
        """Renew at two thirds of each certificate's life, until cancelled. Call after `issue`."""
        while True:
            await asyncio.sleep(self._seconds_left() * RENEW_AT)
            await self._renew()

    async def _renew(self) -> None:
        backoff = self._min_retry
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.issue()
            except (ServiceUnavailableError, OSError) as exc:
                left = self._seconds_left()
                delay = backoff if left <= 0 else min(backoff, max(left / 3, self._min_retry))
                log.warning(
                    "tls.certificate.renewal_failed",
                    attempt=attempt,
                    reason=getattr(exc, "details", {}).get("reason", type(exc).__name__),
                    serving=self.served.current.serial if self.served.current else None,
                    seconds_left=round(left, 2),
                    retry_in=round(delay, 2),
                )
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self._max_retry)
            else:
                return

    def _seconds_left(self) -> float:
        current = self.served.current
        if current is None:
            return 0.0
        return (current.expires_at - self._clock()).total_seconds()

    def _write(self, issued: IssuedCertificate) -> None:
        # Written whole under a new name, then renamed: a reader never sees half a key.
        for path, text in ((self.keyfile, issued.private_key), (self.certfile, issued.certificate)):
            partial = path.with_suffix(".new")
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(text)
            partial.replace(path)
