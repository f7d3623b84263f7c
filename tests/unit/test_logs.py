from __future__ import annotations

import datetime
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import structlog

from colima_ref.logs import asctime, configure_logging
from colima_ref.observability.redaction import hiding_secrets_of
from log_capture import lines, log_stream, text_stream, written


@pytest.fixture
def stream() -> Iterator[io.TextIOWrapper]:
    with log_stream() as captured:
        yield captured


# logging's asctime, as the specification's example shows it: 2025-10-27 12:34:56,789
ASCTIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}")
SPECIFICATION_FIELDS = ["asctime", "name", "levelname", "message"]


def parsed_asctime(text: str) -> datetime.datetime:
    when = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f")
    return when.replace(tzinfo=datetime.UTC)


def test_a_structlog_line_is_json_with_the_specifications_fields_and_request_id(
    stream: io.TextIOWrapper,
) -> None:
    configure_logging("INFO", stream=stream)
    structlog.contextvars.bind_contextvars(request_id="req-1")
    before = datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0)

    structlog.get_logger("colima_ref.http").info("cache hit", key="k1")

    [line] = lines(stream)
    assert list(line)[:4] == SPECIFICATION_FIELDS
    assert line["message"] == "cache hit"
    assert line["levelname"] == "INFO"
    assert line["name"] == "colima_ref.http"
    assert line["request_id"] == "req-1"
    assert line["key"] == "k1"
    assert ASCTIME.fullmatch(line["asctime"])
    assert before <= parsed_asctime(line["asctime"]) <= datetime.datetime.now(tz=datetime.UTC)
    assert not {"event", "level", "logger", "timestamp"} & set(line)


def test_a_stdlib_line_has_the_same_fields(stream: io.TextIOWrapper) -> None:
    configure_logging("INFO", stream=stream)
    structlog.contextvars.bind_contextvars(request_id="req-2")

    logging.getLogger("hvac.adapters").warning("retrying %s in %d s", "read", 2)

    [line] = lines(stream)
    assert list(line)[:4] == SPECIFICATION_FIELDS
    assert line["message"] == "retrying read in 2 s"
    assert line["levelname"] == "WARNING"
    assert line["name"] == "hvac.adapters"
    assert line["request_id"] == "req-2"
    assert ASCTIME.fullmatch(line["asctime"])


def test_a_structlog_and_a_stdlib_line_carry_the_same_own_fields(
    stream: io.TextIOWrapper,
) -> None:
    configure_logging("INFO", stream=stream)

    structlog.get_logger("colima_ref.http").warning("ours", path="/x")
    logging.getLogger("colima_ref.http").warning("theirs")

    ours, theirs = lines(stream)
    assert set(ours) - {"path"} == set(theirs) == set(SPECIFICATION_FIELDS)
    assert (ours["name"], ours["levelname"]) == (theirs["name"], theirs["levelname"])


def test_a_stdlib_exception_is_rendered_as_a_traceback_string(stream: io.TextIOWrapper) -> None:
    configure_logging("INFO", stream=stream)

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("psycopg").exception("query failed")

    [line] = lines(stream)
    assert line["levelname"] == "ERROR"
    assert "RuntimeError: boom" in line["exception"]


def test_records_below_the_level_are_dropped_on_both_paths(stream: io.TextIOWrapper) -> None:
    configure_logging("warning", stream=stream)

    structlog.get_logger("colima_ref").info("quiet")
    logging.getLogger("aiormq").info("quiet too")
    structlog.get_logger("colima_ref").error("loud")

    assert [line["message"] for line in lines(stream)] == ["loud"]


def test_uvicorn_access_lines_are_not_written(stream: io.TextIOWrapper) -> None:
    configure_logging("DEBUG", stream=stream)

    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET / HTTP/1.1" 200')
    logging.getLogger("uvicorn.error").info("Started server process")

    assert [line["name"] for line in lines(stream)] == ["uvicorn.error"]


def test_configuring_twice_writes_each_stdlib_record_once(stream: io.TextIOWrapper) -> None:
    configure_logging("INFO", stream=text_stream())
    configure_logging("INFO", stream=stream)

    logging.getLogger("uvicorn.error").info("once")

    assert len(lines(stream)) == 1


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="verbose"):
        configure_logging("verbose", stream=text_stream())


def test_every_line_is_in_the_file_when_the_call_returns(
    stream: io.TextIOWrapper, tmp_path: Path
) -> None:
    """Nothing waits in the process: a server killed right after a request has logged it."""
    path = tmp_path / "log.jsonl"
    with path.open("w", encoding="utf-8") as file:
        configure_logging("INFO", stream=file)

        structlog.get_logger("colima_ref.http").info("HTTP request completed", path="/x")
        logging.getLogger("uvicorn.error").info("Shutting down")

        assert [json.loads(line)["message"] for line in path.read_text().splitlines()] == [
            "HTTP request completed",
            "Shutting down",
        ]


@attrs.frozen
class Holder:
    """An object that loaded secrets, as the Vault login and the credential cache are."""

    values: frozenset[str]

    def secret_values(self) -> frozenset[str]:
        return self.values


@pytest.mark.parametrize(
    ("logger", "message"),
    [
        ("aiormq.connection", "Connecting to amqp://app:{password}@mq:5672/dev_vhost"),
        ("hvac.adapters", "request failed with X-Vault-Token: {password}"),
        ("psycopg.pool", "error connecting in 'pool-1': password={password} host=db"),
    ],
)
def test_a_library_logging_a_held_secret_writes_a_line_without_it(
    stream: io.TextIOWrapper, logger: str, message: str
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    configure_logging("DEBUG", stream=stream)

    with hiding_secrets_of(Holder(frozenset({password}))):
        logging.getLogger(logger).warning(message.format(password=password))

    [line] = lines(stream)
    assert line["message"] == message.format(password="***")
    assert password not in written(stream)


def test_a_library_logging_a_url_with_an_unknown_password_writes_a_line_without_it(
    stream: io.TextIOWrapper,
) -> None:
    configure_logging("INFO", stream=stream)

    logging.getLogger("aiormq.connection").info("Connecting to amqp://guest:n0tL0aded@mq/")

    [line] = lines(stream)
    assert line["message"] == "Connecting to amqp://guest:***@mq/"


def test_a_secret_is_shown_again_once_its_holder_is_closed(stream: io.TextIOWrapper) -> None:
    value = f"temporary-{uuid.uuid4().hex}"
    configure_logging("INFO", stream=stream)

    with hiding_secrets_of(Holder(frozenset({value}))):
        structlog.get_logger("colima_ref").info("open", note=value)
    structlog.get_logger("colima_ref").info("closed", note=value)

    assert [line["note"] for line in lines(stream)] == ["***", value]


@pytest.mark.parametrize(
    ("created", "shown"),
    [
        (1761568496.789, "2025-10-27 12:34:56,789"),
        (1761568496.0, "2025-10-27 12:34:56,000"),
        (1761568499.9996, "2025-10-27 12:34:59,999"),
    ],
)
def test_asctime_is_loggings_format_in_utc_with_milliseconds(created: float, shown: str) -> None:
    assert asctime(created) == shown
