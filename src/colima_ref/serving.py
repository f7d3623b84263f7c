"""``colima-ref serve --https-port``: one app over HTTP and HTTPS from one process.

Two ``uvicorn.Server`` instances share one event loop and one app, so one set of backend
connections serves both. Neither runs the app's lifespan: `SharedLifespan` runs it once, before
either listener opens and after both have drained, and hands its state to every request as a
server running the lifespan would (the ASGI lifespan-state extension).

While it serves, each uvicorn server takes SIGINT and SIGTERM for itself and, when it is done,
puts back the handler it found and raises the signal again. A signal therefore reaches only the
server that started last; `serve_together` passes its ``should_exit`` on to the others, and the
handler installed here before them receives the re-raised signals and lets the process finish
its shutdown.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from types import FrameType
from typing import Any

import structlog
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colima_ref.bootstrap import build_app, open_certificate_issuer
from colima_ref.domain.certificates import ServedCertificate
from colima_ref.domain.errors import BaseAPIException
from colima_ref.head_deadline import HeadDeadlineMiddleware
from colima_ref.settings import Settings
from colima_ref.tls import CertificateRenewal, private_directory

log = structlog.get_logger(__name__)

# uvicorn's exit status for an app or listener that fails to start.
STARTUP_FAILURE = 3
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StartupFailedError(Exception):
    """The certificate could not be issued or the app's lifespan failed: nothing is served."""


class LifespanFailedError(StartupFailedError):
    """The app answered a lifespan event with its ``.failed`` message (or never answered)."""


class SharedLifespan:
    """Runs ``app``'s lifespan once for every server serving this wrapper with
    ``lifespan="off"``, and gives each request a copy of the state it yielded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._state: dict[str, Any] = {}
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            # A copy each, as uvicorn's: what one request sets on its state stays its own.
            scope = {**scope, "state": self._state.copy()}
        await self.app(scope, receive, send)

    async def startup(self) -> None:
        """Run the app's startup. Raises LifespanFailedError, caused by what the app raised."""
        log.info("Waiting for application startup.")
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self._state}
        self._task = asyncio.create_task(self._run(scope))
        await self._to_app.put({"type": "lifespan.startup"})
        await self._answer("lifespan.startup.complete")
        log.info("Application startup complete.")

    async def shutdown(self) -> None:
        """Run the app's shutdown; a failure is logged with its traceback, not raised."""
        await self._to_app.put({"type": "lifespan.shutdown"})
        try:
            await self._answer("lifespan.shutdown.complete")
        except LifespanFailedError:
            log.exception("Application shutdown failed.")
            return
        assert self._task is not None
        await self._task
        log.info("Application shutdown complete.")

    async def _run(self, scope: Scope) -> None:
        await self.app(scope, self._to_app.get, self._from_app.put)

    async def _answer(self, expected: str) -> None:
        """Wait for the app's answer to the last event. Raises LifespanFailedError, caused by
        what the app raised, unless the answer is ``expected``."""
        assert self._task is not None
        message = asyncio.create_task(self._from_app.get())
        done, _ = await asyncio.wait({message, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if message in done and message.result()["type"] == expected:
            return
        message.cancel()
        # After a ``.failed`` message the app raises what failed.
        await asyncio.wait({self._task})
        raise LifespanFailedError(expected) from self._task.exception()


async def serve_together(
    servers: Sequence[uvicorn.Server], sockets: Sequence[socket.socket]
) -> None:
    """Run each server on its bound socket until one of them is told to exit, then stop them
    all together."""
    running = [
        asyncio.create_task(server.serve(sockets=[sock]))
        for server, sock in zip(servers, sockets, strict=True)
    ]
    pending = set(running)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=0.1)
        if any(server.should_exit for server in servers) or len(pending) < len(running):
            for server in servers:
                server.should_exit = True
        if any(server.force_exit for server in servers):
            for server in servers:
                server.force_exit = True
    for task in running:
        task.result()


def serve_http_and_https(
    settings: Settings,
    options: Mapping[str, Any],
    *,
    port: int,
    https_port: int,
) -> None:
    """Serve the app on ``port`` (HTTP) and ``https_port`` (HTTPS), each listener with the
    uvicorn ``options`` of ``serve``'s single one, until SIGTERM or SIGINT.

    The certificate comes from SSL_CERTFILE/SSL_KEYFILE, or from Vault's PKI engine
    (VAULT_PKI_ROLE), renewed at two thirds of its life.

    Raises:
        SystemExit: 3 when a port is taken, the certificate cannot be issued or the app fails
            to start; nothing is served then.
        SettingsError: live, and Vault is given no login method or two.
    """
    served = ServedCertificate()
    app = SharedLifespan(HeadDeadlineMiddleware(build_app(settings, tls_certificate=served)))
    common: dict[str, Any] = {**options, "lifespan": "off"}
    loop_factory = uvicorn.Config(app, **common).get_loop_factory()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        try:
            runner.run(_serve(settings, app, served, common, port=port, https_port=https_port))
        except StartupFailedError as exc:
            # A lifespan that fails is a bug or a broken backend set-up: its traceback helps.
            log.error("server not started", reason=str(exc), exc_info=exc.__cause__)
            raise SystemExit(STARTUP_FAILURE) from None


async def _serve(
    settings: Settings,
    app: SharedLifespan,
    served: ServedCertificate,
    common: dict[str, Any],
    *,
    port: int,
    https_port: int,
) -> None:
    servers: list[uvicorn.Server] = []
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for server in servers:
            server.should_exit = True

    previous = {signum: signal.signal(signum, stop) for signum in _SIGNALS}
    try:
        async with AsyncExitStack() as stack:
            tls, renewal = await _tls_options(settings, served, stack)
            configs = [
                uvicorn.Config(app, port=port, **common),
                uvicorn.Config(app, port=https_port, **common, **tls),
            ]
            # Bound before anything opens: a port in use ends the start here (uvicorn logs it
            # and exits 3), with no certificate issued and no backend connected.
            sockets = [config.bind_socket() for config in configs]
            for sock in sockets:
                stack.callback(sock.close)
            if renewal is not None:
                await _first_certificate(renewal, stack)
            await app.startup()
            stack.push_async_callback(app.shutdown)
            servers += [uvicorn.Server(config) for config in configs]
            log.info("serving https", https_port=https_port, certificate=_source(settings))
            if not stopping:
                await serve_together(servers, sockets)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


async def _tls_options(
    settings: Settings, served: ServedCertificate, stack: AsyncExitStack
) -> tuple[dict[str, Any], CertificateRenewal | None]:
    tls = settings.tls
    if not tls.pki_role:
        return {"ssl_certfile": tls.certfile, "ssl_keyfile": tls.keyfile}, None
    issuer = await stack.enter_async_context(open_certificate_issuer(settings))
    renewal = CertificateRenewal(issuer, served, stack.enter_context(private_directory()))
    options = {
        "ssl_certfile": renewal.certfile,
        "ssl_keyfile": renewal.keyfile,
        "ssl_context_factory": renewal.context_factory,
    }
    return options, renewal


async def _first_certificate(renewal: CertificateRenewal, stack: AsyncExitStack) -> None:
    try:
        await renewal.issue()
    except (BaseAPIException, OSError) as exc:
        # An operational failure (Vault down, the role refused): its words, no traceback.
        raise StartupFailedError(f"the TLS certificate could not be issued: {exc}") from None
    renewing = asyncio.create_task(renewal.keep_renewed(), name="tls-renewal")
    stack.push_async_callback(_cancelled, renewing)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _source(settings: Settings) -> str:
    tls = settings.tls
    if tls.pki_role:
        return f"vault pki {tls.pki_mount}/issue/{tls.pki_role}"
    return "files"
