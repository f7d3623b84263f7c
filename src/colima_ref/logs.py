"""JSON-lines logging for structlog and the standard library, configured once per process."""

from __future__ import annotations

import functools
import logging
import sys
import time
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from colima_ref.observability.redaction import redact_secrets

_HANDLER_NAME = "colima_ref"
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


@functools.lru_cache(maxsize=4)
def _utc_second(whole_seconds: int) -> str:
    # Most lines share their second with the line before.
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole_seconds))


def asctime(created: float) -> str:
    """``created`` (a ``time.time()``) as logging's asctime, in UTC: ``2025-10-27 12:34:56,789``."""
    whole = int(created)
    return f"{_utc_second(whole)},{int((created - whole) * 1000):03d}"


def _specification_fields(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """The specification's own fields (python-json-logger's) first: asctime, name, levelname and
    message (structlog's ``event``), then the line's."""
    record: logging.LogRecord | None = event_dict.get("_record")
    if record is None:
        created, name, levelname = time.time(), logger.name, method_name.upper()
    else:
        created, name, levelname = record.created, record.name, record.levelname
    head = {
        "asctime": asctime(created),
        "name": name,
        "levelname": levelname,
        "message": event_dict.pop("event", None),
    }
    head.update(event_dict)
    return head


def _orjson_text(obj: Any, **kwargs: Any) -> str:
    # logging's formatters return text; structlog's own lines stay bytes.
    return orjson.dumps(obj, **kwargs).decode()


def _chain(serializer: Any) -> list[Processor]:
    # Redaction after format_exc_info, so that it also searches tracebacks as text.
    return [
        structlog.processors.format_exc_info,
        redact_secrets,
        structlog.processors.JSONRenderer(serializer=serializer, option=_ORJSON_OPTIONS),
    ]


def configure_logging(level: str, *, stream: TextIO | None = None) -> None:
    """Write structlog and stdlib records (uvicorn, hvac, aiormq, psycopg...) as JSON lines.

    ``level`` is a stdlib level name such as ``"INFO"``; ``stream`` (a text stream over a byte
    buffer) defaults to ``sys.stdout`` as it is at call time. Every line is written and flushed
    when it is logged. Calling it again replaces the previous configuration. uvicorn's access
    log is disabled: the HTTP layer writes its own line per request.

    Raises:
        ValueError: ``level`` is not a level name.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    stream = sys.stdout if stream is None else stream
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _specification_fields,
            *_chain(orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(stream.buffer),
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.contextvars.merge_contextvars, _specification_fields],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_chain(_orjson_text),
            ],
        )
    )
    root = logging.getLogger()
    for previous in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(numeric)

    logging.getLogger("uvicorn.access").disabled = True
    # uvicorn attaches its own handlers only when given a log_config; make sure its records
    # reach the root handler instead of being printed twice.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
