"""JSON-lines logging for structlog and the standard library, configured once per process."""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor

from colima_ref.observability.redaction import redact_secrets

_HANDLER_NAME = "colima_ref"
_DEFAULT_LOGGER_NAME = "colima_ref"


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that keeps the name it was asked for, so a line says which module wrote it."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        name = args[0] if args and isinstance(args[0], str) else _DEFAULT_LOGGER_NAME
        return _NamedWriteLogger(self._file, name)


def _add_timestamp(_logger: object, _method_name: str, event_dict: EventDict) -> EventDict:
    # The datetime itself: orjson writes it as ISO 8601 with a Z (``OPT_UTC_Z``), the text
    # TimeStamper(fmt="iso", utc=True) made in Python for 1.9 us a line.
    event_dict["timestamp"] = datetime.datetime.now(tz=datetime.UTC)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_timestamp,
    ]


def _orjson_dumps(obj: Any, **_kwargs: Any) -> str:
    # About 5x faster than json.dumps for our lines (measured: 0.7 us against 3.9 us).
    options = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z
    return orjson.dumps(obj, default=repr, option=options).decode()


def _rendering_processors() -> list[Processor]:
    # Redaction after format_exc_info, so that it also searches tracebacks as text.
    return [
        structlog.processors.format_exc_info,
        redact_secrets,
        structlog.processors.EventRenamer("message"),
        structlog.processors.JSONRenderer(serializer=_orjson_dumps),
    ]


def configure_logging(level: str, *, stream: TextIO | None = None) -> None:
    """Write structlog and stdlib records (uvicorn, hvac, aiormq, psycopg...) as JSON lines.

    ``level`` is a stdlib level name such as ``"INFO"``; ``stream`` defaults to ``sys.stdout`` as it
    is at call time. Calling it again replaces the previous configuration. uvicorn's access log
    is disabled: the HTTP layer writes its own line per request.

    Raises:
        ValueError: ``level`` is not a level name.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    out = sys.stdout if stream is None else stream

    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            *_rendering_processors(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_NamedWriteLoggerFactory(out),
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_rendering_processors(),
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
