from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class BreakerStatus(Protocol):
    """What a service's circuit breaker reports to health checks, without guarding anything.

    ``snapshot()`` has at least ``state`` (``closed``, ``open`` or ``half-open``) and
    ``failures``, plus ``retry_after`` (whole seconds) while open.
    """

    def snapshot(self) -> Mapping[str, object]: ...
