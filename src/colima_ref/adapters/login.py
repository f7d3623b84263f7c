"""Login: the client of one service, built from the secret that logs it in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, Required, TypedDict, TypeVar

import attrs

from colima_ref.adapters.breaker import ServiceBreaker, through
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.domain import errors
from colima_ref.domain.models import Secret
from colima_ref.settings import Settings

C = TypeVar("C")
T = TypeVar("T")


class LoginRefusedError(Exception):
    """The service refused the secret's login; the driver's error is the cause.

    An adapter's error translation raises it, and `Login` tries once more with a fresh secret.
    """


class LoginOptions(TypedDict, total=False):
    """What every live adapter's ``open`` takes besides where its service is."""

    credentials: Required[CredentialSource]
    secret_path: str  # by default the service's own (`Service.secret_path`)
    connect_timeout: float  # seconds
    operation_timeout: float  # seconds
    breaker: ServiceBreaker | None


def options_from(
    settings: Settings, credentials: CredentialSource, breaker: ServiceBreaker | None = None
) -> LoginOptions:
    """The `LoginOptions` of ``settings.backends``, for an adapter's ``from_settings``."""
    return LoginOptions(
        credentials=credentials,
        connect_timeout=settings.backends.connect_timeout,
        operation_timeout=settings.backends.operation_timeout,
        breaker=breaker,
    )


@attrs.frozen
class Service:
    """A service as its adapter's errors name it."""

    key: str  # "postgres", the ``service`` of errors and breakers
    name: str  # "PostgreSQL", in messages
    error: type[errors.ServiceUnavailableError]
    secret_path: str  # where its secret lives unless the adapter is told otherwise


def _never_broken(_client: object) -> bool:
    return False


@attrs.define(kw_only=True)
class Login(Generic[C]):
    """The client of ``service``: built on first use from the secret at ``secret_path``, rebuilt
    once with a freshly read secret when the service refuses the login.

    ``run`` awaits one call on the client as ``operation``: through ``breaker`` unless it is a
    health probe, and within ``operation_timeout``. Calls refused by the same client share one
    rebuild, under one lock; a second refusal raises the service's error (outage False, since
    the service answered), and so does a missing secret. A client that is ``broken`` is replaced.
    """

    service: Service
    build: Callable[[Secret], Awaitable[C]]
    close_client: Callable[[C], Awaitable[None]]
    credentials: CredentialSource
    secret_path: str = attrs.field()
    connect_timeout: float = 2.0
    operation_timeout: float = 5.0
    breaker: ServiceBreaker | None = None
    broken: Callable[[C], bool] = _never_broken
    current: C | None = attrs.field(default=None, init=False)
    _lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False, repr=False)

    @secret_path.default
    def _service_secret_path(self) -> str:
        return self.service.secret_path

    async def run(
        self, call: Callable[[C], Awaitable[T]], *, operation: str, probe: bool = False
    ) -> T:
        """``call(client)`` through the breaker, recorded as ``operation``; a health ``probe``
        bypasses the breaker and is not recorded."""
        return await through(None if probe else self.breaker, self.call, call, operation=operation)

    async def aclose(self) -> None:
        """Close the client. The next call builds a new one."""
        async with self._lock:
            if self.current is not None:
                await self.close_client(self.current)
                self.current = None

    async def call(self, call: Callable[[C], Awaitable[T]]) -> T:
        """``call(client)`` on the logged-in client, past no breaker; raises
        OperationTimeoutError when it takes longer than the operation timeout."""
        try:
            async with asyncio.timeout(self.operation_timeout):
                return await self._logged_in(call)
        except TimeoutError as exc:
            raise errors.OperationTimeoutError(
                f"{self.service.name} did not answer within {self.operation_timeout:g} s",
                {"service": self.service.key},
            ) from exc

    async def _logged_in(self, call: Callable[[C], Awaitable[T]]) -> T:
        client = await self._client()
        try:
            return await call(client)
        except LoginRefusedError:
            client = await self._client(refused=client)
        try:
            return await call(client)
        except LoginRefusedError as exc:
            # Not kept: it would go on logging in with the refused password.
            async with self._lock:
                await self._drop(client, refused=True)
            raise self._refusal(exc) from exc.__cause__

    async def _client(self, refused: C | None = None) -> C:
        """The current client, built if need be; a new one if ``refused`` is still current."""
        current = self.current
        if refused is None and current is not None and not self.broken(current):
            return current
        async with self._lock:
            current = self.current
            if current is not None and (current is refused or self.broken(current)):
                await self._drop(current, refused=current is refused)
            if self.current is None:
                self.current = await self._built()
            return self.current

    async def _drop(self, client: C, *, refused: bool) -> None:
        """Forget ``client`` unless another caller already did (lock held)."""
        if self.current is client:
            self.current = None
            if refused:
                self.credentials.invalidate(self.secret_path)
            await self.close_client(client)

    async def _built(self) -> C:
        # A service that checks the login as the client connects refuses it here.
        try:
            return await self.build(await self._secret())
        except LoginRefusedError:
            self.credentials.invalidate(self.secret_path)
        try:
            return await self.build(await self._secret())
        except LoginRefusedError as exc:
            self.credentials.invalidate(self.secret_path)
            raise self._refusal(exc) from exc.__cause__

    async def _secret(self) -> Secret:
        try:
            return await self.credentials.get(self.secret_path)
        except errors.ResourceNotFoundError as exc:
            raise self.service.error(
                f"The secret store holds no {self.service.name} credentials",
                {"secret_path": self.secret_path},
                service=self.service.key,
                outage=False,
            ) from exc

    def _refusal(self, exc: LoginRefusedError) -> errors.ServiceUnavailableError:
        cause = exc.__cause__
        return self.service.error(
            f"{self.service.name} refused the credentials from the secret store",
            {} if cause is None else {"cause": type(cause).__name__},
            service=self.service.key,
            outage=False,
        )
