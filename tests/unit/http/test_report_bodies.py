"""A health body is rendered again unless the results are the very same objects and the rest
equal, so sharing it never shows an answer the runs did not give."""

from __future__ import annotations

from colima_ref.domain.health import CheckResult
from colima_ref.domain.models import ServiceHealth
from colima_ref.http.report_bodies import ReportBodies


def result(latency_ms: float = 1.0) -> CheckResult:
    return CheckResult(ServiceHealth(healthy=True), latency_ms)


class Renders:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> bytes:
        self.count += 1
        return b"body %d" % self.count


def test_the_same_results_and_extras_get_the_body_rendered_for_them() -> None:
    bodies, render = ReportBodies(), Renders()
    shared = [result(), result()]

    first = bodies.body(shared, ("closed", "live"), render)
    again = bodies.body(list(shared), ("closed", "live"), render)

    assert (first, again, render.count) == (b"body 1", b"body 1", 1)


def test_an_equal_but_new_result_is_rendered_again() -> None:
    bodies, render = ReportBodies(), Renders()
    bodies.body([result(1.0)], "x", render)

    # A later run with the same answer and latency is still a later run.
    assert bodies.body([result(1.0)], "x", render) == b"body 2"


def test_changed_extras_are_rendered_again() -> None:
    bodies, render = ReportBodies(), Renders()
    shared = [result()]
    bodies.body(shared, {"postgres": {"state": "closed"}}, render)

    assert bodies.body(shared, {"postgres": {"state": "open"}}, render) == b"body 2"
    assert bodies.body(shared[:0], {"postgres": {"state": "open"}}, render) == b"body 3"
