"""The composition root: the one place that picks adapters and wires them into Services."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import structlog
from starlette.applications import Starlette

from colima_ref._version import __version__
from colima_ref.adapters import memory
from colima_ref.adapters.breaker import BreakerRecorder, breakers_for
from colima_ref.domain.certificates import ReportingCertificate, ServedCertificate
from colima_ref.domain.errors import ConfigurationError
from colima_ref.http.app import create_app
from colima_ref.http.middleware.response_cache import VAULT_RESPONSES
from colima_ref.observability.metrics import Metrics
from colima_ref.observability.redaction import hiding_secrets_of
from colima_ref.ports.certificates import CertificateIssuer
from colima_ref.ports.services import SERVICE_NAMES, Services
from colima_ref.settings import Settings, SettingsError

log = structlog.get_logger(__name__)


@asynccontextmanager
async def open_services(
    settings: Settings,
    recorder: BreakerRecorder | None = None,
    on_rotated: Callable[[str], None] | None = None,
) -> AsyncIterator[Services]:
    """Open the backend ``settings.backend`` names, yield its Services, close it on exit.

    Every service gets a circuit breaker as ``settings.circuit_breaker`` says, reporting its
    failures and transitions to ``recorder`` (the app's Metrics). ``on_rotated(path)`` hears of
    each credential the live adapters find changed in Vault (the in-memory ones never rotate).

    A live backend is never replaced by memory. It opens while any of its services (Vault
    included) is down: every adapter connects on first use, so the app starts degraded, answers
    503 for what is missing and recovers by itself.

    Raises:
        ConfigurationError: live, and Vault is given no login method or two.
    """
    log.info("backend selected", backend=settings.backend, reason=settings.backend_source)
    breaker = settings.circuit_breaker
    if settings.backend == "memory":
        yield memory.services(
            fail_max=breaker.fail_max, reset_timeout=breaker.reset_timeout, recorder=recorder
        )
        return
    async with _open_live(settings, recorder, on_rotated) as services:
        yield services


@asynccontextmanager
async def _open_live(
    settings: Settings,
    recorder: BreakerRecorder | None,
    on_rotated: Callable[[str], None] | None,
) -> AsyncIterator[Services]:
    # Imported here, not at the top: the drivers behind them (psycopg, pymongo, hvac with
    # requests, asyncmy, aiormq) are megabytes of a process that the memory backend spares.
    from colima_ref.adapters.credentials import CredentialSource
    from colima_ref.adapters.mongo import MongoDocumentDatabase
    from colima_ref.adapters.mysql import MySqlDatabase
    from colima_ref.adapters.postgres import PostgresDatabase
    from colima_ref.adapters.rabbitmq import RabbitMqBroker
    from colima_ref.adapters.redis import (
        NodeBreakers,
        RedisCache,
        RedisClusterTopology,
        RedisConnection,
    )
    from colima_ref.adapters.vault import VaultSecretStore

    policy = settings.circuit_breaker
    breakers = breakers_for(
        [name for name in SERVICE_NAMES if name != "redis"],
        fail_max=policy.fail_max,
        reset_timeout=policy.reset_timeout,
        recorder=recorder,
    )
    # A Redis Cluster fails a node at a time: a breaker per node, the service's state from theirs.
    redis_breakers = NodeBreakers(
        "redis", fail_max=policy.fail_max, reset_timeout=policy.reset_timeout, recorder=recorder
    )
    async with AsyncExitStack() as stack:
        opened = stack.enter_async_context
        secrets = await opened(VaultSecretStore.from_settings(settings, breakers["vault"]))
        creds = CredentialSource(
            secrets, ttl=settings.backends.credential_ttl, on_rotated=on_rotated
        )
        stack.enter_context(hiding_secrets_of(secrets, creds))
        postgres = await opened(
            PostgresDatabase.from_settings(settings, creds, breakers["postgres"])
        )
        mysql = await opened(MySqlDatabase.from_settings(settings, creds, breakers["mysql"]))
        mongodb = await opened(
            MongoDocumentDatabase.from_settings(settings, creds, breakers["mongodb"])
        )
        redis = await opened(RedisConnection.from_settings(settings, creds, redis_breakers))
        broker = await opened(RabbitMqBroker.from_settings(settings, creds, breakers["rabbitmq"]))
        cluster = RedisClusterTopology(redis)
        yield Services(
            backend="live",
            secrets=secrets,
            postgres=postgres,
            mysql=mysql,
            mongodb=mongodb,
            cache=RedisCache(redis),
            cluster=cluster,
            broker=broker,
            probes={
                "vault": secrets,
                "postgres": postgres,
                "mysql": mysql,
                "mongodb": mongodb,
                "redis": cluster,
                "rabbitmq": broker,
            },
            breakers={**breakers, "redis": redis_breakers},
        )


def build_app(settings: Settings, *, tls_certificate: ServedCertificate | None = None) -> Starlette:
    """The whole HTTP contract on the backend ``settings`` selects, opened by the lifespan.

    ``tls_certificate``, the certificate an HTTPS listener serves, shows in Vault's health
    details and as the ``tls_certificate_expiry_timestamp_seconds`` gauge.

    Raises:
        SettingsError: live, and Vault is given no login method or two; checked here, before
            the server starts, so the operator reads one line instead of a failed lifespan.
    """
    if settings.backend == "live":
        _check_vault_login(settings)
    metrics = Metrics(name=settings.app_name, version=__version__)

    def credential_rotated(_path: str) -> None:
        # The Vault routes may have cached the old user or host for minutes.
        app.state.response_cache.invalidate_soon(VAULT_RESPONSES)

    if tls_certificate is not None:
        tls_certificate.subscribe(
            lambda facts: metrics.tls_certificate_expires(facts.expires_at.timestamp())
        )
    app = create_app(
        lambda: _serving(settings, metrics, credential_rotated, tls_certificate),
        settings.http,
        metrics=metrics,
    )
    return app


@asynccontextmanager
async def open_certificate_issuer(settings: Settings) -> AsyncIterator[CertificateIssuer]:
    """The issuer of the HTTPS certificate: Vault's PKI engine, with its own Vault login.

    Raises:
        ConfigurationError: no VAULT_PKI_ROLE, or Vault is given no login method or two.
    """
    from colima_ref.adapters.vault import VaultCertificateIssuer  # as in _open_live

    async with VaultCertificateIssuer.from_settings(settings) as issuer:
        with hiding_secrets_of(issuer.store):
            yield issuer


@asynccontextmanager
async def _serving(
    settings: Settings,
    metrics: Metrics,
    on_rotated: Callable[[str], None],
    tls_certificate: ServedCertificate | None = None,
) -> AsyncIterator[Services]:
    """`open_services`, with what exists once it is open kept out of the garbage collector's
    full passes until it closes.

    A server process holds many objects from imports, clients and pools that live as long as it
    does, and every full collection would walk all of them, pausing requests under load. Frozen
    (gc.freeze), they are skipped; what requests create is still collected as before. Unfrozen
    on the way out, so an app built and closed in a longer-lived process (a test) leaks nothing.
    """
    async with open_services(settings, metrics, on_rotated) as services:
        if tls_certificate is not None:
            vault = ReportingCertificate(services.probes["vault"], tls_certificate)
            services = attrs.evolve(services, probes={**services.probes, "vault": vault})
        gc.collect()
        gc.freeze()
        try:
            yield services
        finally:
            gc.unfreeze()


def _check_vault_login(settings: Settings) -> None:
    from colima_ref.adapters.vault import auth_from  # live only, as in _open_live

    vault = settings.vault
    try:
        auth_from(token=vault.token, role_id=vault.role_id, secret_id=vault.secret_id)
    except ConfigurationError:
        given = [
            name
            for name, value in (
                ("VAULT_TOKEN", vault.token),
                ("VAULT_ROLE_ID", vault.role_id),
                ("VAULT_SECRET_ID", vault.secret_id),
            )
            if value
        ]
        # Names only: the values are secrets.
        raise SettingsError(
            "VAULT_TOKEN",
            "set, or else VAULT_ROLE_ID and VAULT_SECRET_ID (exactly one Vault login)",
            " and ".join(given) or "none of them",
        ) from None
