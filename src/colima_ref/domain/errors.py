"""The error tree of the HTTP contract. The class name is the ``error`` field of every error body.

    BaseAPIException
    ├── ServiceUnavailableError (503)
    │   ├── VaultUnavailableError
    │   ├── DatabaseConnectionError
    │   ├── CacheConnectionError
    │   ├── MessageQueueError
    │   └── CircuitBreakerError
    ├── ConfigurationError (500)
    ├── ValidationError (422)
    ├── ResourceNotFoundError (404)
    ├── AuthenticationError (401)
    ├── RateLimitError (429)
    └── OperationTimeoutError (504), named ``TimeoutError`` in error bodies

Messages and details must never carry a secret value: they reach responses and logs as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class BaseAPIException(Exception):  # noqa: N818 - the name is part of the public contract
    """Root of every error the API reports with the uniform error body."""

    status_code: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal server error"

    def __init__(
        self, message: str | None = None, details: Mapping[str, Any] | None = None
    ) -> None:
        self.message = message or self.default_message
        self.details: dict[str, Any] = dict(details or {})
        super().__init__(self.message)

    @property
    def error(self) -> str:
        """The name clients see in the ``error`` field."""
        return type(self).__name__


class ServiceUnavailableError(BaseAPIException):
    """The request cannot be served now because of ``service``.

    ``outage`` is False when the service is up and answered, refusing us: our login, our
    permissions, a secret it does not hold. Calling it less would not help it recover, so no
    circuit breaker counts such an error; only the service's unavailability does.
    """

    status_code = 503
    default_message = "Service is currently unavailable"

    def __init__(
        self,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        service: str | None = None,
        retry_after: int | None = None,
        outage: bool = True,
    ) -> None:
        merged = dict(details or {})
        if service is not None:
            merged.setdefault("service", service)
        super().__init__(message, merged)
        self.retry_after = retry_after
        self.outage = outage

    @property
    def service(self) -> str | None:
        value = self.details.get("service")
        return value if isinstance(value, str) else None


class VaultUnavailableError(ServiceUnavailableError):
    default_message = "Vault service is currently unavailable"


class DatabaseConnectionError(ServiceUnavailableError):
    default_message = "Database is currently unavailable"


class CacheConnectionError(ServiceUnavailableError):
    default_message = "Cache is currently unavailable"


class MessageQueueError(ServiceUnavailableError):
    default_message = "Message broker is currently unavailable"


class CircuitBreakerError(ServiceUnavailableError):
    default_message = "Circuit breaker is open: the service is failing and calls are suspended"


class ConfigurationError(BaseAPIException):
    status_code = 500
    default_message = "Configuration error"


class ValidationError(BaseAPIException):
    status_code = 422
    default_message = "Request validation failed"

    @classmethod
    def for_field(cls, field: str, message: str, **extra: Any) -> ValidationError:
        """A validation error that names the failing field in ``details.field``."""
        return cls(message, {"field": field, **extra})


class ResourceNotFoundError(BaseAPIException):
    status_code = 404
    default_message = "Resource not found"


class AuthenticationError(BaseAPIException):
    status_code = 401
    default_message = "Authentication failed"


class RateLimitError(BaseAPIException):
    status_code = 429
    default_message = "Rate limit exceeded"


class OperationTimeoutError(BaseAPIException):
    """A backend took longer than the operation timeout. Not named after the builtin it would
    shadow; the contract's error body still says ``TimeoutError``."""

    status_code = 504
    default_message = "The operation timed out"

    @property
    def error(self) -> str:
        return "TimeoutError"
