"""The ASGI entry points: ``uvicorn --factory colima_ref.asgi:make_app`` for a host's own
uvicorn, `make_served_app` for ``colima-ref serve``."""

from __future__ import annotations

import os
import sys

from starlette.applications import Starlette
from starlette.types import ASGIApp

from colima_ref.bootstrap import build_app
from colima_ref.head_deadline import HeadDeadlineMiddleware
from colima_ref.logs import configure_logging
from colima_ref.settings import Settings, SettingsError


def make_app() -> Starlette:
    """Read the settings from the environment, configure logging and build the app.

    Raises:
        SystemExit: code 2 with one line on stderr when a variable is malformed; uvicorn would
            print a traceback for any other error raised by a factory.
    """
    try:
        settings = Settings.from_env(os.environ)
        configure_logging(settings.log_level)
        return build_app(settings)
    except SettingsError as exc:
        print(f"colima-ref: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def make_served_app() -> ASGIApp:
    """`make_app` behind `HeadDeadlineMiddleware`, for the `HeadDeadlineProtocol` that
    ``colima-ref serve`` runs.

    Raises:
        SystemExit: as `make_app` does.
    """
    return HeadDeadlineMiddleware(make_app())
