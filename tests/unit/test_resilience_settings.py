"""CIRCUIT_BREAKER_* and READINESS_SERVICES: defaults, parsing, and
refusals naming the variable."""

from __future__ import annotations

import pytest

from colima_ref.settings import BreakerSettings, Settings, SettingsError


def test_breakers_default_to_five_outages_and_sixty_seconds_and_readiness_to_no_service() -> None:
    settings = Settings.from_env({})

    assert settings.circuit_breaker == BreakerSettings(fail_max=5, reset_timeout=60.0)
    assert settings.readiness_services == ()


def test_breaker_limits_and_readiness_services_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "CIRCUIT_BREAKER_FAIL_MAX": "3",
            "CIRCUIT_BREAKER_RESET_TIMEOUT": "0.5",
            "READINESS_SERVICES": " Vault, postgres ,vault",
        }
    )

    assert settings.circuit_breaker == BreakerSettings(fail_max=3, reset_timeout=0.5)
    assert settings.readiness_services == ("vault", "postgres")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CIRCUIT_BREAKER_FAIL_MAX", "0"),
        ("CIRCUIT_BREAKER_FAIL_MAX", "five"),
        ("CIRCUIT_BREAKER_FAIL_MAX", "-1"),
        ("CIRCUIT_BREAKER_RESET_TIMEOUT", "0"),
        ("CIRCUIT_BREAKER_RESET_TIMEOUT", "nan"),
        ("CIRCUIT_BREAKER_RESET_TIMEOUT", "1m"),
        ("READINESS_SERVICES", "postgres,elasticsearch"),
    ],
)
def test_a_malformed_value_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: value})

    assert refused.value.variable == variable
