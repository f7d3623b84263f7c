"""colima_ref: a reference service wired to Vault, SQL, document, cache and broker backends.

The public API is exactly the names in ``__all__``; every other module and name is private and
may change without notice. ``import colima_ref`` loads none of it: each name is imported on
first use, so a program that only reads ``__version__`` (the CLI's ``--version``) or builds an
app on the in-memory adapters never loads the live drivers (psycopg, pymongo, hvac, asyncmy,
aiormq) behind the others.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from colima_ref._version import __version__

if TYPE_CHECKING:
    from colima_ref.adapters import memory
    from colima_ref.bootstrap import build_app, open_services
    from colima_ref.domain.errors import (
        AuthenticationError,
        BaseAPIException,
        CacheConnectionError,
        CircuitBreakerError,
        ConfigurationError,
        DatabaseConnectionError,
        MessageQueueError,
        OperationTimeoutError,
        RateLimitError,
        ResourceNotFoundError,
        ServiceUnavailableError,
        ValidationError,
        VaultUnavailableError,
    )
    from colima_ref.http.app import create_app
    from colima_ref.ports.breakers import BreakerStatus
    from colima_ref.ports.cache import Cache
    from colima_ref.ports.cluster import ClusterTopology
    from colima_ref.ports.databases import DocumentDatabase, SqlDatabase
    from colima_ref.ports.messaging import MessageBroker
    from colima_ref.ports.probes import HealthProbe
    from colima_ref.ports.secrets import SecretStore
    from colima_ref.ports.services import Services
    from colima_ref.settings import HttpSettings, Settings, SettingsError

# Each public name and the module that defines it; `memory` is a module of its own.
_HOMES = {
    "create_app": "colima_ref.http.app",
    "build_app": "colima_ref.bootstrap",
    "open_services": "colima_ref.bootstrap",
    "Settings": "colima_ref.settings",
    "HttpSettings": "colima_ref.settings",
    "SettingsError": "colima_ref.settings",
    "Services": "colima_ref.ports.services",
    "BreakerStatus": "colima_ref.ports.breakers",
    "Cache": "colima_ref.ports.cache",
    "ClusterTopology": "colima_ref.ports.cluster",
    "DocumentDatabase": "colima_ref.ports.databases",
    "SqlDatabase": "colima_ref.ports.databases",
    "MessageBroker": "colima_ref.ports.messaging",
    "HealthProbe": "colima_ref.ports.probes",
    "SecretStore": "colima_ref.ports.secrets",
    **dict.fromkeys(
        (
            "BaseAPIException",
            "ServiceUnavailableError",
            "VaultUnavailableError",
            "DatabaseConnectionError",
            "CacheConnectionError",
            "MessageQueueError",
            "CircuitBreakerError",
            "ConfigurationError",
            "ValidationError",
            "ResourceNotFoundError",
            "AuthenticationError",
            "RateLimitError",
            "OperationTimeoutError",
        ),
        "colima_ref.domain.errors",
    ),
}
_MODULES = {"memory": "colima_ref.adapters.memory"}

__all__ = [
    "AuthenticationError",
    "BaseAPIException",
    "BreakerStatus",
    "Cache",
    "CacheConnectionError",
    "CircuitBreakerError",
    "ClusterTopology",
    "ConfigurationError",
    "DatabaseConnectionError",
    "DocumentDatabase",
    "HealthProbe",
    "HttpSettings",
    "MessageBroker",
    "MessageQueueError",
    "OperationTimeoutError",
    "RateLimitError",
    "ResourceNotFoundError",
    "SecretStore",
    "ServiceUnavailableError",
    "Services",
    "Settings",
    "SettingsError",
    "SqlDatabase",
    "ValidationError",
    "VaultUnavailableError",
    "__version__",
    "build_app",
    "create_app",
    "memory",
    "open_services",
]

# Hidden from type checkers, which read the imports above instead; so a misspelt name is still
# an error for them rather than a call of this.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name in _MODULES:
            value = import_module(_MODULES[name])
        elif name in _HOMES:
            value = getattr(import_module(_HOMES[name]), name)
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
