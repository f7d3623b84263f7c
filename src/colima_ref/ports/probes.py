from __future__ import annotations

from typing import Protocol

from colima_ref.domain.models import ServiceHealth


class HealthProbe(Protocol):
    """Reports whether one backend answers.

    Returns an unhealthy ServiceHealth for a backend that answers badly (sealed, cluster down);
    may raise ServiceUnavailableError or TimeoutError when it cannot be reached at all.
    """

    async def check(self) -> ServiceHealth: ...
