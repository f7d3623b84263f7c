"""How a pooled SQL adapter is opened: where its server is, how it logs in, its pool's bounds."""

from __future__ import annotations

import abc
import contextlib
from typing import ClassVar, Generic, Self, TypeVar, Unpack

import attrs

from colima_ref.adapters.breaker import ServiceBreaker
from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.login import Login, LoginOptions, Service, options_from
from colima_ref.domain.models import Secret
from colima_ref.settings import Endpoint, Settings

P = TypeVar("P")


@attrs.define
class SqlPoolAdapter(abc.ABC, Generic[P]):
    """What `PostgresDatabase` and `MySqlDatabase` share: how each is opened, and its pool ``P``
    behind one `Login`. Each adds how its driver builds and closes a pool, and its queries."""

    service: ClassVar[Service]

    _host: str
    _port: int
    _options: LoginOptions = attrs.field(repr=False)
    _min_size: int = 1
    _max_size: int = 10
    _login: Login[P] = attrs.field(init=False, repr=False)

    @_login.default
    def _pool_login(self) -> Login[P]:
        return Login(
            service=self.service, build=self._build, close_client=self._close, **self._options
        )

    @classmethod
    def open(
        cls,
        *,
        host: str,
        port: int,
        min_size: int = 1,
        max_size: int = 10,
        **options: Unpack[LoginOptions],
    ) -> contextlib.aclosing[Self]:
        """A database that connects on first use and closes its pool when the block exits.

        Nothing is read or connected before the first call, so this succeeds while the server
        or the secret store is down.
        """
        return contextlib.aclosing(cls(host, port, options, min_size, max_size))

    @classmethod
    def from_settings(
        cls, settings: Settings, credentials: CredentialSource, breaker: ServiceBreaker | None
    ) -> contextlib.aclosing[Self]:
        """`open` on the server's endpoint in ``settings``, with the pool sizes and timeouts of
        ``backends``."""
        endpoint = cls.endpoint_in(settings)
        return cls.open(
            host=endpoint.host,
            port=endpoint.port,
            min_size=settings.backends.pool_min,
            max_size=settings.backends.pool_max,
            **options_from(settings, credentials, breaker),
        )

    @staticmethod
    @abc.abstractmethod
    def endpoint_in(settings: Settings) -> Endpoint:
        """Where ``settings`` say this adapter's server listens."""

    async def aclose(self) -> None:
        """Close the pool and every connection in it. The next call would build a new one."""
        await self._login.aclose()

    @abc.abstractmethod
    async def _build(self, secret: Secret) -> P:
        """A pool logged in with ``secret``'s user and password."""

    @staticmethod
    @abc.abstractmethod
    async def _close(pool: P) -> None:
        """Close ``pool`` and every connection in it."""
