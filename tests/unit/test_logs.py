from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from colima_ref.logs import asctime, configure_logging, write_line
from colima_ref.observability.line_sink import FLUSH_INTERVAL


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A stream to log into; the global logging state is put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access = logging.getLogger("uvicorn.access")
    access_disabled = access.disabled
    yield io.StringIO()
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    access.disabled = access_disabled


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# logging's asctime, as the specification's example shows it: 2025-10-27 12:34:56,789
ASCTIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}")


def parsed_asctime(text: str) -> datetime.datetime:
    when = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f")
    return when.replace(tzinfo=datetime.UTC)


def test_a_structlog_line_is_json_with_the_specifications_fields_and_request_id(
    stream: io.StringIO,
) -> None:
    configure_logging("INFO", stream=stream)
    structlog.contextvars.bind_contextvars(request_id="req-1")

    structlog.get_logger("colima_ref.http").info("cache hit", key="k1")

    [line] = lines(stream)
    assert line["message"] == "cache hit"
    assert line["levelname"] == "INFO"
    assert line["name"] == "colima_ref.http"
    assert line["request_id"] == "req-1"
    assert line["key"] == "k1"
    assert ASCTIME.fullmatch(line["asctime"])
    assert not {"event", "level", "logger", "timestamp"} & set(line)


def test_a_stdlib_line_goes_through_the_same_renderer(stream: io.StringIO) -> None:
    configure_logging("INFO", stream=stream)
    structlog.contextvars.bind_contextvars(request_id="req-2")

    logging.getLogger("hvac.adapters").warning("retrying %s in %d s", "read", 2)

    [line] = lines(stream)
    assert line["message"] == "retrying read in 2 s"
    assert line["levelname"] == "WARNING"
    assert line["name"] == "hvac.adapters"
    assert line["request_id"] == "req-2"
    assert ASCTIME.fullmatch(line["asctime"])


def test_a_stdlib_exception_is_rendered_as_a_traceback_string(stream: io.StringIO) -> None:
    configure_logging("INFO", stream=stream)

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("psycopg").exception("query failed")

    [line] = lines(stream)
    assert line["levelname"] == "ERROR"
    assert "RuntimeError: boom" in line["exception"]


def test_records_below_the_level_are_dropped_on_both_paths(stream: io.StringIO) -> None:
    configure_logging("warning", stream=stream)

    structlog.get_logger("colima_ref").info("quiet")
    logging.getLogger("aiormq").info("quiet too")
    structlog.get_logger("colima_ref").error("loud")

    assert [line["message"] for line in lines(stream)] == ["loud"]


def test_uvicorn_access_lines_are_not_written(stream: io.StringIO) -> None:
    configure_logging("DEBUG", stream=stream)

    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET / HTTP/1.1" 200')
    logging.getLogger("uvicorn.error").info("Started server process")

    assert [line["name"] for line in lines(stream)] == ["uvicorn.error"]


def test_configuring_twice_writes_each_stdlib_record_once(stream: io.StringIO) -> None:
    configure_logging("INFO", stream=io.StringIO())
    configure_logging("INFO", stream=stream)

    logging.getLogger("uvicorn.error").info("once")

    assert len(lines(stream)) == 1


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="verbose"):
        configure_logging("verbose", stream=io.StringIO())


def file_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def log_file(stream: io.StringIO, tmp_path: Path) -> Iterator[Path]:
    """A real file configure_logging writes to, so request lines go out in batches (``stream``
    puts the global logging state back afterwards)."""
    path = tmp_path / "log.jsonl"
    with path.open("w", encoding="utf-8") as file:
        configure_logging("INFO", stream=file)
        yield path


async def test_a_request_line_keeps_the_time_of_its_call_though_rendered_later(
    log_file: Path,
) -> None:
    before = datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0)
    write_line("colima_ref.http", logging.INFO, "HTTP request completed", {"path": "/x"})
    called = datetime.datetime.now(tz=datetime.UTC)
    await asyncio.sleep(FLUSH_INTERVAL * 3)

    [line] = file_lines(log_file)
    assert list(line)[:4] == ["asctime", "name", "levelname", "message"]
    assert line["message"] == "HTTP request completed"
    assert line["path"] == "/x"
    assert line["levelname"] == "INFO"
    assert line["name"] == "colima_ref.http"
    assert before <= parsed_asctime(line["asctime"]) <= called


async def test_an_unencodable_value_costs_only_its_own_field_not_the_batch(
    log_file: Path,
) -> None:
    write_line("colima_ref.http", logging.INFO, "first", {"n": 1})
    write_line("colima_ref.http", logging.INFO, "huge", {"n": 2**70, "path": "/y"})
    write_line("colima_ref.http", logging.INFO, "third", {"n": 3})
    await asyncio.sleep(FLUSH_INTERVAL * 3)

    first, huge, third = file_lines(log_file)
    assert (first["n"], third["n"]) == (1, 3)
    assert huge["n"] == repr(2**70)
    assert huge["path"] == "/y"


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


async def test_a_request_line_and_a_structlog_line_carry_the_same_own_fields(
    log_file: Path,
) -> None:
    write_line("colima_ref.http", logging.WARNING, "fast", {"path": "/x"})
    structlog.get_logger("colima_ref.http").warning("chained", path="/x")
    await asyncio.sleep(FLUSH_INTERVAL * 3)

    fast, chained = file_lines(log_file)
    for line in (fast, chained):
        assert {key: line[key] for key in ("name", "levelname", "path")} == {
            "name": "colima_ref.http",
            "levelname": "WARNING",
            "path": "/x",
        }
    assert set(fast) == set(chained) == {"asctime", "name", "levelname", "message", "path"}
