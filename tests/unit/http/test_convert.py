"""A health check's info reaches the body as cattrs would unstructure it, plain JSON or not."""

from __future__ import annotations

import datetime
import enum
from typing import Any

from cattrs.preconf.json import make_converter
from hypothesis import given
from hypothesis import strategies as st

from colima_ref.domain.health import CheckResult
from colima_ref.domain.models import ServiceHealth
from colima_ref.http.convert import converter

reference = make_converter()


class Mode(enum.Enum):
    PRIMARY = "primary"


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
# Values cattrs turns into something else: a datetime into its ISO text, an enum into its
# value, a tuple into a list.
CONVERTED = (
    st.datetimes(timezones=st.just(datetime.UTC))
    | st.just(Mode.PRIMARY)
    | st.tuples(st.integers(), st.text(max_size=3))
)
VALUES = st.recursive(
    SCALARS | CONVERTED,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    info=st.dictionaries(
        st.text(max_size=6).filter(lambda k: k not in {"status", "latency_ms"}), VALUES, max_size=4
    )
)
def test_the_body_holds_the_info_as_cattrs_unstructures_it(info: dict[str, Any]) -> None:
    body = converter.unstructure(CheckResult(ServiceHealth(healthy=True, info=info), 1.234))

    assert body == {"status": "healthy", "latency_ms": 1.23, **reference.unstructure(info)}


def test_a_plain_info_is_shown_as_it_is() -> None:
    info = {"details": {"initialized": True, "sealed": False}, "version": "2.4.1", "nodes": [1, 2]}

    body = converter.unstructure(
        CheckResult(ServiceHealth(healthy=False, info=info, error="x"), 0.5)
    )

    assert body == {"status": "unhealthy", "latency_ms": 0.5, **info, "error": "x"}
