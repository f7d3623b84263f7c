"""The composition root: the one place that picks adapters and wires them into Services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from starlette.applications import Starlette

from colima_ref.adapters import memory
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.mongo import MongoDocumentDatabase
from colima_ref.adapters.mysql import MySqlDatabase
from colima_ref.adapters.postgres import PostgresDatabase
from colima_ref.adapters.rabbitmq import RabbitMqBroker
from colima_ref.adapters.redis import RedisCache, RedisClusterTopology, RedisConnection
from colima_ref.adapters.vault import VaultSecretStore, auth_from
from colima_ref.domain.errors import ConfigurationError
from colima_ref.http.app import create_app
from colima_ref.ports.services import Services
from colima_ref.settings import Settings, SettingsError

log = structlog.get_logger(__name__)


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open the backend ``settings.backend`` names, yield its Services, close it on exit.

    A live backend is never replaced by memory. It opens while any of its services (Vault
    included) is down: every adapter connects on first use, so the app starts degraded, answers
    503 for what is missing and recovers by itself.

    Raises:
        ConfigurationError: live, and Vault is given no login method or two.
    """
    log.info("backend selected", backend=settings.backend, reason=settings.backend_source)
    if settings.backend == "memory":
        yield memory.services()
        return
    async with _open_live(settings) as services:
        yield services


@asynccontextmanager
async def _open_live(settings: Settings) -> AsyncIterator[Services]:
    vault, limits = settings.vault, settings.backends
    async with AsyncExitStack() as stack:
        secrets = await stack.enter_async_context(
            VaultSecretStore.open(
                addr=vault.addr,
                token=vault.token,
                role_id=vault.role_id,
                secret_id=vault.secret_id,
                mount=vault.mount,
                prefix=vault.path_prefix,
                request_timeout=vault.timeout,
            )
        )
        creds = CredentialSource(secrets, ttl=limits.credential_ttl)
        postgres = await stack.enter_async_context(
            PostgresDatabase.open(
                host=settings.postgres.host,
                port=settings.postgres.port,
                credentials=creds,
                connect_timeout=limits.connect_timeout,
                operation_timeout=limits.operation_timeout,
                min_size=limits.pool_min,
                max_size=limits.pool_max,
            )
        )
        mysql = await stack.enter_async_context(
            MySqlDatabase.open(
                host=settings.mysql.host,
                port=settings.mysql.port,
                credentials=creds,
                connect_timeout=limits.connect_timeout,
                operation_timeout=limits.operation_timeout,
                min_size=limits.pool_min,
                max_size=limits.pool_max,
            )
        )
        mongodb = await stack.enter_async_context(
            MongoDocumentDatabase.open(
                host=settings.mongodb.host,
                port=settings.mongodb.port,
                credentials=creds,
                connect_timeout=limits.connect_timeout,
                operation_timeout=limits.operation_timeout,
                max_size=limits.pool_max,
            )
        )
        redis = await stack.enter_async_context(
            RedisConnection.open(
                nodes=settings.redis.seeds,
                credentials=creds,
                cluster=bool(settings.redis.nodes),
                connect_timeout=limits.connect_timeout,
                operation_timeout=limits.operation_timeout,
                max_connections=limits.pool_max,
            )
        )
        broker = await stack.enter_async_context(
            RabbitMqBroker.open(
                host=settings.rabbitmq.host,
                port=settings.rabbitmq.port,
                credentials=creds,
                default_vhost=settings.rabbitmq_vhost,
                connect_timeout=limits.connect_timeout,
                operation_timeout=limits.operation_timeout,
            )
        )
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
        )


def build_app(settings: Settings) -> Starlette:
    """The whole HTTP contract on the backend ``settings`` selects, opened by the lifespan.

    Raises:
        SettingsError: live, and Vault is given no login method or two; checked here, before
            the server starts, so the operator reads one line instead of a failed lifespan.
    """
    if settings.backend == "live":
        _check_vault_login(settings)
    return create_app(lambda: open_services(settings), settings)


def _check_vault_login(settings: Settings) -> None:
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
