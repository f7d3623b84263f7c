"""``colima-ref serve``: validate the settings, configure logging and run uvicorn."""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import structlog
import uvicorn

import colima_ref
from colima_ref import __version__
from colima_ref.head_deadline import HEAD_TIMEOUT, HeadDeadlineProtocol
from colima_ref.http.middleware.request_validation import MAX_HEAD_BYTES
from colima_ref.logs import configure_logging
from colima_ref.settings import (
    ENVIRONMENT,
    MalformedError,
    Settings,
    SettingsError,
    parse_count,
    parse_port,
)

PROG = "colima-ref"
# After SIGTERM, requests in flight get this long to finish before uvicorn cancels them.
GRACEFUL_SHUTDOWN = 10  # seconds
# --reload watches the package's source where it is imported from: src/colima_ref in a checkout.
PACKAGE_DIR = Path(colima_ref.__file__).parent

T = TypeVar("T")


def _environment_table() -> str:
    width = max(len(variable.name) for variable in ENVIRONMENT)
    rows = [
        f"  {variable.name:<{width}}  {variable.description} (default: {variable.default_text})"
        for variable in ENVIRONMENT
    ]
    return "environment variables (a serve flag wins over its variable):\n" + "\n".join(rows)


def _checked(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type refusing what ``parse`` refuses, in the words of a settings error."""

    def check(text: str) -> T:
        try:
            return parse(text)
        except MalformedError as exc:
            raise argparse.ArgumentTypeError(f"must be {exc.expected}, got {text!r}") from None

    return check


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``colima-ref``, with every option and variable in its help."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Reference API in front of Vault, PostgreSQL, MySQL, MongoDB, Redis Cluster\n"
            "and RabbitMQ.\n\n"
            "commands:\n"
            "  serve  run the HTTP server (--host, --port, --https-port, --workers, --reload,\n"
            f"         --backend, --log-level; see `{PROG} serve --help`)"
        ),
        epilog=_environment_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the HTTP server",
        description=(
            "Serve the whole HTTP contract with uvicorn (h11, and uvloop when installed).\n"
            f"A request head must end within {MAX_HEAD_BYTES // 1024} KiB and, like an idle\n"
            f"connection, within {HEAD_TIMEOUT} s; SIGTERM lets requests in flight finish\n"
            f"(at most {GRACEFUL_SHUTDOWN} s) and exits 0.\n"
            "The settings are checked before the server starts: a malformed variable stops it\n"
            "with one line on stderr and exit code 2."
        ),
        epilog=_environment_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument(
        "--port",
        type=_checked(parse_port),
        default=8000,
        help="TCP port to bind (default: %(default)s)",
    )
    serve.add_argument(
        "--https-port",
        type=_checked(parse_port),
        default=None,
        help="also serve HTTPS on this port, in the same process (with SSL_CERTFILE or "
        "VAULT_PKI_ROLE; see README, HTTPS)",
    )
    serve.add_argument(
        "--workers",
        type=_checked(parse_count),
        default=1,
        help="worker processes (default: %(default)s); more than 1 needs METRICS_ENABLED=false, "
        "since a /metrics scrape would reach one worker at random: run one worker per process "
        "or container and scrape each; with the memory backend each worker keeps its own state",
    )
    _add_reload_argument(serve)
    for variable in ENVIRONMENT:
        if variable.flag:
            help_text = f"{variable.description}; overrides {variable.name}"
            serve.add_argument(
                variable.flag,
                dest=variable.name,
                type=_checked(variable.parse),
                # Absent from the parsed arguments unless given, so the variable applies.
                default=argparse.SUPPRESS,
                # argparse expands %-formats in help.
                help=f"{help_text} (default: {variable.default_text})".replace("%", "%%"),
            )
    return parser


def _add_reload_argument(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--reload",
        action="store_true",
        help=f"restart the server when a .py file under {PACKAGE_DIR} changes (the "
        "developer loop, `make dev`); one worker only",
    )


def _refused_topology(workers: int, reload: bool, settings: Settings) -> str | None:
    """Why ``serve`` cannot run this many workers as asked, or None when it can."""
    if reload and workers > 1:
        return "--reload runs a single worker; drop --workers or --reload"
    if workers > 1 and settings.metrics_enabled:
        return (
            f"--workers {workers} with METRICS_ENABLED=true would answer each /metrics scrape "
            "from one worker at random; run one worker per process or container and scrape "
            "each instance, or set METRICS_ENABLED=false"
        )
    return None


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _serve_https(
    parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings
) -> None:
    from colima_ref.serving import serve_http_and_https  # the TLS code only when asked for

    if args.workers != 1 or args.reload:
        parser.exit(
            2, f"{PROG}: error: --https-port serves from one process: no --workers, no --reload\n"
        )
    if not (settings.tls.certfile or settings.tls.pki_role):
        parser.exit(2, f"{PROG}: error: --https-port needs SSL_CERTFILE or VAULT_PKI_ROLE\n")
    try:
        serve_http_and_https(
            settings,
            listener_options(args.host),
            port=args.port,
            https_port=args.https_port,
        )
    except SettingsError as exc:
        parser.exit(2, f"{PROG}: error: {exc}\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line.

    Raises:
        SystemExit: 2 for a bad flag, a malformed variable or workers it refuses (more than one
            with --reload or with metrics on): one line on stderr, no traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {v.name: getattr(args, v.name) for v in ENVIRONMENT if hasattr(args, v.name)}
    try:
        settings = Settings.from_env({**os.environ, **overrides})
    except SettingsError as exc:
        parser.exit(2, f"{PROG}: error: {exc}\n")
    if refusal := _refused_topology(args.workers, args.reload, settings):
        parser.exit(2, f"{PROG}: error: {refusal}\n")
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
    # While it serves, uvicorn handles SIGTERM itself (a graceful shutdown); then it puts back the
    # handler it found and raises the signal again (its cooperative signal handling). The default
    # handler would then end the process by the signal (status 143) after a clean stop; this one
    # exits 0, as it does for a SIGTERM that comes before uvicorn has taken over.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if args.https_port is not None:
        _serve_https(parser, args, settings)
        return
    uvicorn.run(
        "colima_ref.asgi:make_served_app",
        factory=True,
        port=args.port,
        workers=args.workers,
        reload=args.reload,
        reload_dirs=[str(PACKAGE_DIR)] if args.reload else None,
        lifespan="on",
        **listener_options(args.host),
    )


def listener_options(host: str) -> dict[str, Any]:
    """The uvicorn options of every listener ``serve`` runs, HTTP or HTTPS."""
    return {
        "host": host,
        "loop": "auto",
        "http": HeadDeadlineProtocol,
        # h11 answers 400 and closes once a request head has grown past this without ending;
        # uvicorn's httptools protocol has no such bound, which is why we serve with h11.
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "timeout_keep_alive": HEAD_TIMEOUT,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN,
        "ws": "none",
        "access_log": False,
        "log_config": None,
        "proxy_headers": False,
        "server_header": False,
    }
