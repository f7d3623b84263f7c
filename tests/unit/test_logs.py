from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from colima_ref.logs import configure_logging, write_line
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


def test_a_structlog_line_is_json_with_level_message_timestamp_logger_and_request_id(
    stream: io.StringIO,
) -> None:
    configure_logging("INFO", stream=stream)
    structlog.contextvars.bind_contextvars(request_id="req-1")

    structlog.get_logger("colima_ref.http").info("cache hit", key="k1")

    [line] = lines(stream)
    assert line["message"] == "cache hit"
    assert line["level"] == "info"
    assert line["logger"] == "colima_ref.http"
    assert line["request_id"] == "req-1"
    assert line["key"] == "k1"
    assert line["timestamp"].endswith("Z")
    assert "event" not in line


def test_a_stdlib_line_goes_through_the_same_renderer(stream: io.StringIO) -> None:
    configure_logging("INFO", stream=stream)
    structlog.contextvars.bind_contextvars(request_id="req-2")

    logging.getLogger("hvac.adapters").warning("retrying %s in %d s", "read", 2)

    [line] = lines(stream)
    assert line["message"] == "retrying read in 2 s"
    assert line["level"] == "warning"
    assert line["logger"] == "hvac.adapters"
    assert line["request_id"] == "req-2"
    assert line["timestamp"].endswith("Z")


def test_a_stdlib_exception_is_rendered_as_a_traceback_string(stream: io.StringIO) -> None:
    configure_logging("INFO", stream=stream)

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("psycopg").exception("query failed")

    [line] = lines(stream)
    assert line["level"] == "error"
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

    assert [line["logger"] for line in lines(stream)] == ["uvicorn.error"]


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
    write_line("colima_ref.http", logging.INFO, "HTTP request completed", {"path": "/x"})
    called = datetime.datetime.now(tz=datetime.UTC)
    await asyncio.sleep(FLUSH_INTERVAL * 3)

    [line] = file_lines(log_file)
    assert line["message"] == "HTTP request completed"
    assert line["path"] == "/x"
    assert line["level"] == "info"
    assert line["logger"] == "colima_ref.http"
    assert datetime.datetime.fromisoformat(line["timestamp"]) <= called


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
