"""The helpers the live-server and contract tests share: the devstack's variables, a real server
process on a free port, TCP relays a test can cut, a Vault folder of copied secrets, secret stores
to hand an adapter, and the rule for a missing service (skip, or fail when CI=true).

They live here rather than in conftest.py because every directory's conftest.py is imported under
the one module name ``conftest``, so ``from conftest import ...`` would get whichever conftest
pytest loaded last. pyproject.toml puts this directory on ``pythonpath``, so test modules import
them with ``from live_support import ...`` whatever paths pytest is given. conftest.py keeps the
fixtures.

Everything runs against what `scripts/devstack.sh up` leaves on 127.0.0.1. A service that is not
listening skips the test with the reason, or fails it when CI=true.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

import attrs
import httpx2
import hvac
import pytest

from colima_ref.adapters.credentials import CredentialSource
from colima_ref.adapters.memory import InMemorySecretStore
from colima_ref.domain.models import Secret
from colima_ref.head_deadline import HEAD_TIMEOUT
from colima_ref.ports.secrets import SecretStore

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0
SECRET_PATHS = ("postgres", "mysql", "mongodb", "redis-1", "rabbitmq")
# The marks of a test that runs the whole app on the live backend: it needs every service.
WHOLE_STACK = [
    pytest.mark.integration,
    pytest.mark.vault,
    pytest.mark.postgres,
    pytest.mark.mysql,
    pytest.mark.mongodb,
    pytest.mark.redis,
    pytest.mark.rabbitmq,
]
# The limiter and the response cache would answer for the backend under test, and a breaker
# opened by the outage would hold the endpoint shut for 60 s after the backend returns: a short
# reset timeout keeps the breaker in play while recovery stays measurable within 10 s.
QUIET = {
    "RATE_LIMIT_ENABLED": "false",
    "RESPONSE_CACHE_ENABLED": "false",
    "CIRCUIT_BREAKER_RESET_TIMEOUT": "1",
}


# Tables a test leaves for the end of the run (the fault matrix, the durability counts):
# conftest.py's pytest_terminal_summary prints them, where output capture does not hide them.
SUMMARIES = pytest.StashKey[list[str]]()


DEVSTACK_HINT = "start it with `make devstack-up`"

# A client drops an idle connection before the server closes it (HEAD_TIMEOUT after its last
# answer); with equal timeouts a request sent as the server closes fails with ReadError, the
# keep-alive race of HTTP/1.1, which is no fault of the server under test.
KEEPALIVE_EXPIRY = HEAD_TIMEOUT / 2
CLIENT_LIMITS = httpx2.Limits(keepalive_expiry=KEEPALIVE_EXPIRY)


def skip_or_fail(reason: str, env: Mapping[str, str] = os.environ) -> NoReturn:
    """Skip the test because something it needs is missing, or fail it when CI=true.

    ``reason`` must be safe to print: no credential, no connection URL.
    """
    if env.get("CI") == "true":
        pytest.fail(
            f"{reason}. CI=true requires every service and tool the tests need", pytrace=False
        )
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def every_text_of(exc: BaseException) -> str:
    """The str, repr and details of an error and of everything chained to it."""
    texts = []
    current: BaseException | None = exc
    while current is not None:
        texts += [str(current), repr(current), repr(getattr(current, "details", None))]
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


def credentials_for(path: str, secret: Mapping[str, str]) -> CredentialSource:
    """What an adapter logs in with when the secret store holds only ``secret`` at ``path``."""
    return CredentialSource(InMemorySecretStore(secrets={path: secret}))


@attrs.define
class CountingStore:
    """A SecretStore that counts its reads, to see an adapter ask again after a refusal."""

    inner: SecretStore
    reads: int = 0

    async def read(self, path: str) -> Secret:
        self.reads += 1
        return await self.inner.read(path)


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def read_devstack_env() -> dict[str, str]:
    """The variables `scripts/devstack.sh env` prints, as a dict."""
    printed = subprocess.run(
        ["bash", str(ROOT / "scripts" / "devstack.sh"), "env"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    env = {}
    for line in printed.splitlines():
        name, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            env[name.strip()] = value.strip().strip("'\"")
    return env


def addresses(env: Mapping[str, str]) -> dict[str, list[tuple[str, int]]]:
    vault = urlsplit(env["VAULT_ADDR"])
    nodes = [node.rpartition(":") for node in env.get("REDIS_NODES", "").split(",") if node]
    return {
        "vault": [(vault.hostname or "127.0.0.1", vault.port or 8200)],
        **{
            service: [(env[f"{service.upper()}_HOST"], int(env[f"{service.upper()}_PORT"]))]
            for service in ("postgres", "mysql", "mongodb", "rabbitmq")
        },
        "redis": [(host, int(port)) for host, _, port in nodes]
        or [(env["REDIS_HOST"], int(env["REDIS_PORT"]))],
    }


def read_secret(client: hvac.Client, path: str) -> dict[str, str]:
    response = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )
    data: dict[str, str] = response["data"]["data"]
    return data


def write_secret(client: hvac.Client, path: str, data: Mapping[str, str]) -> None:
    client.secrets.kv.v2.create_or_update_secret(path=path, secret=dict(data), mount_point="secret")


@attrs.define
class VaultFolder:
    """A fresh folder of ``secret/`` holding copies of the devstack's service secrets, so a test
    can change them (VAULT_PATH_PREFIX) while ``secret/postgres`` and the others stay intact."""

    client: hvac.Client
    prefix: str = attrs.field(factory=lambda: f"colima-test-{secrets.token_hex(4)}")

    def copy_devstack(self) -> None:
        for path in SECRET_PATHS:
            self.write(path, read_secret(self.client, path))

    def write(self, path: str, data: Mapping[str, str]) -> None:
        write_secret(self.client, f"{self.prefix}/{path}", data)

    def delete(self) -> None:
        for path in SECRET_PATHS:
            self.client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=f"{self.prefix}/{path}", mount_point="secret"
            )


@attrs.define
class LiveServer:
    """``python -m colima_ref serve --backend live`` (or ``memory``) on a free port, its output in
    two files; ``arguments`` go after ``--port``."""

    env: dict[str, str]
    workdir: Path
    backend: str = "live"
    port: int = attrs.field(factory=free_port)
    arguments: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    client: httpx2.Client = attrs.field(init=False)
    # Where stdout and stderr ended when SIGTERM was sent.
    offsets: tuple[int, int] = (0, 0)

    def __attrs_post_init__(self) -> None:
        self.client = httpx2.Client(base_url=self.base_url, timeout=15, limits=CLIENT_LIMITS)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout(self) -> str:
        return (self.workdir / "stdout").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return (self.workdir / "stderr").read_text(errors="replace")

    def start(self) -> None:
        argv = [sys.executable, "-m", "colima_ref", "serve", "--backend", self.backend]
        with (
            (self.workdir / "stdout").open("wb") as out,
            (self.workdir / "stderr").open("wb") as err,
        ):
            self.process = subprocess.Popen(
                [*argv, "--port", str(self.port), *self.arguments],
                env={**os.environ, **self.env, "PYTHONWARNINGS": "always::ResourceWarning"},
                stdout=out,
                stderr=err,
                cwd=ROOT,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.stderr}")
            try:
                if self.client.get("/health/", timeout=1).status_code == 200:
                    return
            except httpx2.TransportError:
                time.sleep(0.1)
        pytest.fail(f"server did not answer within {STARTUP_TIMEOUT} s:\n{self.stderr}")

    def get(self, path: str, **kwargs: Any) -> httpx2.Response:
        return self.client.get(path, **kwargs)

    def stop(self) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        self.client.close()
        assert self.process is not None
        self.offsets = (len(self.stdout), len(self.stderr))
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"server ignored SIGTERM for 20 s:\n{self.stderr}")

    def stop_if_running(self) -> None:
        """`stop`, for a fixture's clean-up, unless the server never started or has exited."""
        if self.process is not None and self.process.poll() is None:
            self.stop()


def assert_clean_shutdown(server: LiveServer, code: int) -> None:
    """After SIGTERM: exit status 0, the lifespan finished, and no warning, unclosed resource or
    traceback is written to stderr (nor stdout)."""
    assert code == 0
    output = server.stderr[server.offsets[1] :] + server.stdout[server.offsets[0] :]
    assert "Application shutdown complete." in output
    for marker in ("ResourceWarning", "unclosed", "Traceback"):
        assert marker not in output, f"{marker!r} after shutdown:\n{output[-3000:]}"


Fault = Literal["slow", "silent", "reset"]


@attrs.define
class Relay:
    """A TCP forwarder from a free local port to ``target``, in its own thread and event loop.

    ``cut`` closes the listener and every relayed connection, so the backend looks killed
    (connections reset, new ones refused); ``restore`` listens again on the same port.

    ``inject`` makes the backend misbehave while it stays reachable, on open connections and
    new ones alike, until ``heal``:

    - ``slow``: every chunk, either way, is held ``delay`` seconds before it is passed on;
    - ``silent``: connections are accepted and read, but nothing is passed on either way until
      ``heal``, when what was held flows on in order, as TCP's retransmissions deliver it once a
      black-holed route comes back (dropping it would corrupt the stream, which TCP never does);
    - ``reset``: the next chunk on a connection aborts it (an RST mid-call), both sides.
    """

    target: tuple[str, int]
    port: int = attrs.field(factory=free_port)
    fault: Fault | None = None
    delay: float = 3.0
    _loop: asyncio.AbstractEventLoop = attrs.field(factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = attrs.field(factory=set)
    _flowing: asyncio.Event = attrs.field(factory=asyncio.Event)

    def __attrs_post_init__(self) -> None:
        self._flowing.set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _do(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def restore(self) -> None:
        self._do(self._listen())

    def cut(self) -> None:
        self._do(self._close())

    def inject(self, fault: Fault, *, delay: float = 3.0) -> None:
        self.delay = delay
        self.fault = fault
        self._do(self._flow(fault != "silent"))

    def heal(self) -> None:
        self.fault = None
        self._do(self._flow(True))

    async def _flow(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, writer),
            self._pipe(up_reader, writer, up_writer),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: asyncio.StreamWriter
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if self.fault == "reset":
                    _reset(peer)
                    _reset(writer)
                    return
                await self._flowing.wait()
                if self.fault == "slow":
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


def _reset(writer: asyncio.StreamWriter) -> None:
    # A zero linger makes the close an RST, as a crashed peer's would be, rather than a FIN.
    writer.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
    )
    writer.transport.abort()
