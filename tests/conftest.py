"""What every test shares: a clean process-wide secret registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from colima_ref.observability.redaction import SECRETS


@pytest.fixture(autouse=True)
def forget_secrets_registered_by_the_test() -> Iterator[None]:
    """Loading a credential registers its values for log redaction process-wide; a value one
    test loads (Hypothesis draws ones as short as "ok", a live test's wrong password is "x")
    must not be masked in a later test's output, whichever directory either test is in."""
    before = SECRETS.exact
    yield
    SECRETS.discard(SECRETS.exact - before)
