"""What `configure_logging` writes during a test, read back as JSON lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog


def text_stream() -> io.TextIOWrapper:
    """A text stream over a byte buffer, as stdout is."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)


@contextmanager
def log_stream() -> Iterator[io.TextIOWrapper]:
    """A stream to log into; the global logging state is put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access = logging.getLogger("uvicorn.access")
    access_disabled = access.disabled
    try:
        yield text_stream()
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        root.handlers[:] = handlers
        root.setLevel(level)
        access.disabled = access_disabled


def written(stream: io.TextIOWrapper) -> str:
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue().decode()


def lines(stream: io.TextIOWrapper) -> list[dict[str, Any]]:
    return [json.loads(line) for line in written(stream).splitlines()]
