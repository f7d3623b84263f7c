from __future__ import annotations

from typing import Protocol

from colima_ref.domain.models import QueryResult


class SqlDatabase(Protocol):
    """A relational database that can answer the contract's test query.

    Raises DatabaseConnectionError when it cannot be reached or rejects our login, TimeoutError
    when the query outlives the operation timeout.
    """

    async def current_timestamp(self) -> QueryResult: ...


class DocumentDatabase(Protocol):
    """A document database. Raises DatabaseConnectionError or TimeoutError like SqlDatabase."""

    async def collection_names(self) -> list[str]: ...
