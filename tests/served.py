"""``colima-ref serve`` as a real process group of its own, for tests of how it is run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import httpx2

from colima_ref.settings import ENVIRONMENT


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment without any variable the settings read, plus ``extra``."""
    names = {variable.name for variable in ENVIRONMENT}
    return {**{k: v for k, v in os.environ.items() if k not in names}, **extra}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@attrs.define
class Served:
    """``python -m colima_ref serve ARGS --port PORT``, its output in ``log``.

    It leads a session of its own, so that `stop` reaches every process it started (uvicorn's
    reloader and worker supervisor each spawn children).
    """

    args: list[str]
    env: Mapping[str, str]
    log: Path
    cwd: Path | None = None
    port: int = attrs.field(factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "colima_ref", "serve", *self.args, "--port", str(self.port)],
                env=dict(self.env),
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def exit_code(self, seconds: float) -> int:
        """The code the leader exits with, waiting at most ``seconds``."""
        assert self.process is not None, "not started"
        return self.process.wait(timeout=seconds)

    def output(self) -> str:
        return self.log.read_text()

    def get(self, path: str) -> httpx2.Response | None:
        """The answer to a GET of ``path``, or None while nothing answers on the port."""
        try:
            return httpx2.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except httpx2.TransportError:
            return None

    def wait_for(self, check: Callable[[httpx2.Response], bool], path: str, seconds: float) -> bool:
        """Whether a GET of ``path`` passes ``check`` within ``seconds`` while the process runs."""
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.process.poll() is None:
            response = self.get(path)
            if response is not None and check(response):
                return True
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM to the whole process group, as Ctrl+C signals a terminal's; the leader's exit
        code once it has exited."""
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill_group(self) -> None:
        """SIGKILL whatever of the group outlived its leader; a no-op once it is all gone."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if group_alive(self.process.pid):
            os.killpg(self.process.pid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def group_gone(pgid: int, seconds: float = 10) -> bool:
    """Whether every process of the group is gone within ``seconds``: multiprocessing's resource
    tracker exits with its parent, then waits as a zombie for init to reap it."""
    deadline = time.monotonic() + seconds
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
