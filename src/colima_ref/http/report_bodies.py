"""The /health/all body that concurrent requests sharing the same probe runs all send."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from colima_ref.domain.health import CheckResult


class ReportBodies:
    """The last body rendered for a health report, and what it was rendered from.

    Concurrent /health/all requests join the same probe runs (`ProbeRuns`) and so get the very
    same `CheckResult` objects; unstructuring and rendering them again for each request was a
    fifth of the endpoint's cost under load. The last body is handed out again only when every
    result is the object it was rendered from and ``extras`` (the breakers' snapshots, the
    backend) are equal: exactly the bytes a fresh render gives. Nothing outlives the next
    report that differs, so no answer is older than the runs it came from.
    """

    def __init__(self) -> None:
        self._results: tuple[CheckResult, ...] = ()
        self._extras: object = None
        self._body = b""

    def body(
        self, results: Sequence[CheckResult], extras: object, render: Callable[[], bytes]
    ) -> bytes:
        """The body of ``results`` and ``extras``: the last one when they are the same."""
        last = self._results
        if (
            len(results) == len(last)
            and all(result is seen for result, seen in zip(results, last, strict=True))
            and extras == self._extras
        ):
            return self._body
        body = render()
        self._results, self._extras, self._body = tuple(results), extras, body
        return body
