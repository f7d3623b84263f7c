from __future__ import annotations

from typing import Protocol

from colima_ref.domain.models import Secret


class SecretStore(Protocol):
    """Credentials by path (``postgres``, ``redis-1``...).

    Raises ResourceNotFoundError for a path that holds no secret, VaultUnavailableError when the
    store is down, sealed, refuses our token or does not answer in time (see ``details.reason``).
    """

    async def read(self, path: str) -> Secret: ...
