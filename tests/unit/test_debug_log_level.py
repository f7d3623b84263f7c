"""``DEBUG=true`` "enables detailed logging" (the specification): LOG_LEVEL defaults to DEBUG,
and a LOG_LEVEL given still wins."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from colima_ref.asgi import make_app
from colima_ref.settings import ENVIRONMENT, Settings
from log_capture import log_stream


@pytest.mark.parametrize(
    ("env", "level"),
    [
        ({}, "INFO"),
        ({"DEBUG": "false"}, "INFO"),
        ({"DEBUG": "true"}, "DEBUG"),
        ({"DEBUG": "yes", "LOG_LEVEL": " "}, "DEBUG"),
        ({"DEBUG": "true", "LOG_LEVEL": "INFO"}, "INFO"),
        ({"DEBUG": "true", "LOG_LEVEL": "warning"}, "WARNING"),
    ],
)
def test_debug_makes_debug_the_log_level_unless_one_is_given(
    env: dict[str, str], level: str
) -> None:
    assert Settings.from_env(env).log_level == level


@pytest.mark.parametrize(
    ("env", "debug_written"),
    [
        ({"DEBUG": "true"}, True),
        ({"DEBUG": "true", "LOG_LEVEL": "INFO"}, False),
        ({}, False),
    ],
)
def test_an_app_built_with_debug_writes_debug_lines(
    env: dict[str, str],
    debug_written: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for variable in ENVIRONMENT:
        monkeypatch.delenv(variable.name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with log_stream():  # only to put the logging configuration back afterwards
        make_app()
        logging.getLogger("some.driver").debug("a driver detail")
        structlog.get_logger("colima_ref.test").debug("an app detail")
        structlog.get_logger("colima_ref.test").info("a fact")

    written = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    debug = {(line["name"], line["message"]) for line in written if line["levelname"] == "DEBUG"}
    ours = {("some.driver", "a driver detail"), ("colima_ref.test", "an app detail")}
    assert ours <= debug if debug_written else debug == set()
    assert ("colima_ref.test", "a fact") in [(line["name"], line["message"]) for line in written]
