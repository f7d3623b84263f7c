"""``colima-ref serve``: validate the settings, configure logging and run uvicorn."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import structlog
import uvicorn

from colima_ref import __version__
from colima_ref.logs import configure_logging
from colima_ref.server_protocol import OneWriteHttpToolsProtocol
from colima_ref.settings import ENVIRONMENT, LOG_LEVELS, Settings, SettingsError

PROG = "colima-ref"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def _environment_table() -> str:
    width = max(len(var.name) for var in ENVIRONMENT)
    rows = [
        f"  {var.name:<{width}}  {var.description} (default: {var.default})" for var in ENVIRONMENT
    ]
    return "environment variables (a flag above wins over its variable):\n" + "\n".join(rows)


def _port(text: str) -> int:
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 65535:
        return int(text)
    raise argparse.ArgumentTypeError(f"must be a port number 1-65535, got {text!r}")


def _positive(text: str) -> int:
    if text.isascii() and text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``colima-ref``, with every option and variable in its help."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Reference API in front of Vault, PostgreSQL, MySQL, MongoDB, Redis Cluster\n"
            "and RabbitMQ.\n\n"
            "commands:\n"
            "  serve  run the HTTP server (--host, --port, --workers, --backend, --log-level;\n"
            f"         see `{PROG} serve --help`)"
        ),
        epilog=_environment_table(),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the HTTP server",
        description=(
            "Serve the whole HTTP contract with uvicorn (httptools, and uvloop when installed),\n"
            "writing each response's head and body in one piece.\n"
            "The settings are checked before the server starts: a malformed variable stops it\n"
            "with one line on stderr and exit code 2."
        ),
        epilog=_environment_table(),
        formatter_class=_HelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port to bind")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes; with the memory backend each worker keeps its own state",
    )
    serve.add_argument(
        "--backend",
        choices=("memory", "live"),
        help="memory: demo adapters, no infrastructure; live: the real services "
        "(overrides COLIMA_BACKEND)",
    )
    serve.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="minimum level of the JSON log lines on stdout (overrides LOG_LEVEL)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line.

    Raises:
        SystemExit: 2 for a bad flag or a malformed variable (one line on stderr, no traceback).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {
        name: value
        for name, value in (("COLIMA_BACKEND", args.backend), ("LOG_LEVEL", args.log_level))
        if value is not None
    }
    try:
        settings = Settings.from_env({**os.environ, **overrides})
    except SettingsError as exc:
        parser.exit(2, f"{PROG}: error: {exc}\n")
    # uvicorn's workers import the app factory afresh and read os.environ: the flags go there too.
    os.environ.update(overrides)
    configure_logging(settings.log_level)
    structlog.get_logger(__name__).info(
        "starting server",
        host=args.host,
        port=args.port,
        workers=args.workers,
        backend=settings.backend,
        reason=settings.backend_source,
    )
    uvicorn.run(
        "colima_ref.asgi:make_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="auto",
        # httptools comes with uvicorn[standard]; this protocol is its subclass.
        http=OneWriteHttpToolsProtocol,
        lifespan="on",
        access_log=False,
        log_config=None,
        proxy_headers=False,
        server_header=False,
    )
