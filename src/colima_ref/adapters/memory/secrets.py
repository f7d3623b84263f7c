from __future__ import annotations

from collections.abc import Mapping

import attrs

from colima_ref.adapters.breaker import ServiceBreaker
from colima_ref.adapters.memory.outage import round_trip
from colima_ref.domain.errors import ResourceNotFoundError, VaultUnavailableError
from colima_ref.domain.models import Secret, ServiceHealth

# Demo credentials shaped like the specification's Vault paths. They guard nothing: the in-memory
# databases accept any login.
DEMO_SECRETS: Mapping[str, Mapping[str, str]] = {
    "postgres": {
        "user": "dev_admin",
        "password": "demo-postgres-password",
        "database": "dev_database",
        "host": "postgres",
        "port": "5432",
    },
    "mysql": {
        "user": "dev_admin",
        "password": "demo-mysql-password",
        "database": "dev_database",
        "host": "mysql",
        "port": "3306",
    },
    "mongodb": {
        "user": "dev_admin",
        "password": "demo-mongodb-password",
        "database": "dev_database",
        "host": "mongodb",
        "port": "27017",
    },
    "redis-1": {"password": "demo-redis-password", "host": "redis-1", "port": "6379"},
    "rabbitmq": {
        "user": "dev_admin",
        "password": "demo-rabbitmq-password",
        "host": "rabbitmq",
        "port": "5672",
        "vhost": "dev_vhost",
    },
}


def _copy(secrets: Mapping[str, Mapping[str, str]] | None) -> dict[str, dict[str, str]]:
    source = DEMO_SECRETS if secrets is None else secrets
    return {path: dict(data) for path, data in source.items()}


@attrs.define
class InMemorySecretStore:
    """A SecretStore and HealthProbe over a dict, seeded with demo credentials by default.

    ``read`` raises ResourceNotFoundError for an unknown path; every call raises
    VaultUnavailableError while ``failing`` is set. With a ``breaker``, every call but ``check``
    passes through it.
    """

    _secrets: dict[str, dict[str, str]] = attrs.field(
        default=None, converter=_copy, alias="secrets", repr=False
    )
    failing: bool = False
    breaker: ServiceBreaker | None = attrs.field(default=None, repr=False)

    async def read(self, path: str) -> Secret:
        await self._reach("read")
        try:
            data = self._secrets[path]
        except KeyError:
            raise ResourceNotFoundError(
                f"No secret at path {path!r}", {"secret_path": path}
            ) from None
        return Secret(path=path, data=dict(data))

    def put(self, path: str, data: Mapping[str, str]) -> None:
        """Replace what ``path`` holds with ``data`` (how tests rotate a credential)."""
        self._secrets[path] = dict(data)

    async def check(self) -> ServiceHealth:
        self._fail_if_told()
        return ServiceHealth(
            healthy=True,
            info={
                "details": {"initialized": True, "sealed": False, "standby": False},
                "backend": "memory",
            },
        )

    async def _reach(self, operation: str) -> None:
        await round_trip(self.breaker, self._fail_if_told, operation=operation)

    def _fail_if_told(self) -> None:
        if self.failing:
            raise VaultUnavailableError("In-memory Vault is set to fail", service="vault")
