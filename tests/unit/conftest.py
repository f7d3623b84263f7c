"""What every unit test shares: a clean process-wide secret registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from colima_ref.observability.redaction import SECRETS


@pytest.fixture(autouse=True)
def forget_secrets_registered_by_the_test() -> Iterator[None]:
    """Loading a credential registers its values for log redaction process-wide; a value one
    test loads (Hypothesis draws ones as short as "ok") must not be masked in the next test's
    output."""
    before = SECRETS.exact
    yield
    SECRETS.discard(SECRETS.exact - before)
