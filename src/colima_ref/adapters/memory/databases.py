from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

import attrs

from colima_ref.adapters.breaker import ServiceBreaker
from colima_ref.adapters.memory.outage import round_trip
from colima_ref.domain.errors import DatabaseConnectionError
from colima_ref.domain.models import QueryResult, ServiceHealth

SqlEngine = Literal["PostgreSQL", "MySQL"]

_TEST_QUERY: dict[SqlEngine, str] = {
    "PostgreSQL": "SELECT current_timestamp",
    "MySQL": "SELECT NOW()",
}
_SERVICE: dict[SqlEngine, str] = {"PostgreSQL": "postgres", "MySQL": "mysql"}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _as_text(engine: SqlEngine, moment: datetime) -> str:
    """Render ``moment`` the way the engine's text protocol shows it, in a UTC session."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if engine == "MySQL":
        # NOW() has no fractional seconds and no offset.
        return text
    # PostgreSQL trims trailing zeros of the fraction and writes a whole-hour offset as "+00".
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return f"{text}.{fraction}+00" if fraction else f"{text}+00"


@attrs.define
class InMemorySqlDatabase:
    """A SqlDatabase and HealthProbe answering the test query from an injectable clock.

    Every call raises DatabaseConnectionError while ``failing`` is set. With a ``breaker``,
    every call but ``check`` passes through it.
    """

    engine: SqlEngine
    clock: Callable[[], datetime] = attrs.field(default=_utc_now, repr=False)
    failing: bool = False
    breaker: ServiceBreaker | None = attrs.field(default=None, repr=False)

    async def current_timestamp(self) -> QueryResult:
        await self._reach("current_timestamp")
        result = _as_text(self.engine, self.clock())
        return QueryResult(query=_TEST_QUERY[self.engine], result=result)

    async def check(self) -> ServiceHealth:
        self._fail_if_told()
        return ServiceHealth(healthy=True, info={"version": f"{self.engine} (in-memory)"})

    async def _reach(self, operation: str) -> None:
        await round_trip(self.breaker, self._fail_if_told, operation=operation)

    def _fail_if_told(self) -> None:
        if self.failing:
            raise DatabaseConnectionError(
                f"In-memory {self.engine} is set to fail", service=_SERVICE[self.engine]
            )


@attrs.define
class InMemoryDocumentDatabase:
    """A DocumentDatabase and HealthProbe holding a fixed list of collection names.

    Every call raises DatabaseConnectionError while ``failing`` is set. With a ``breaker``,
    every call but ``check`` passes through it.
    """

    collections: tuple[str, ...] = ("users", "sessions", "logs")
    failing: bool = False
    breaker: ServiceBreaker | None = attrs.field(default=None, repr=False)

    async def collection_names(self) -> list[str]:
        await self._reach("collection_names")
        return list(self.collections)

    async def check(self) -> ServiceHealth:
        self._fail_if_told()
        return ServiceHealth(healthy=True, info={"version": "MongoDB (in-memory)"})

    async def _reach(self, operation: str) -> None:
        await round_trip(self.breaker, self._fail_if_told, operation=operation)

    def _fail_if_told(self) -> None:
        if self.failing:
            raise DatabaseConnectionError("In-memory MongoDB is set to fail", service="mongodb")
