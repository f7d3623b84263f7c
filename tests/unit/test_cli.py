from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from colima_ref.cli import main
from colima_ref.settings import ENVIRONMENT
from served import child_env, free_port

SERVE_OPTIONS = ["--host", "--port", "--workers", "--backend", "--log-level"]
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process environment without any variable the settings read."""
    for variable in ENVIRONMENT:
        monkeypatch.delenv(variable.name, raising=False)


def test_a_port_that_is_not_a_number_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--port", "abc"])

    assert caught.value.code == 2
    assert "--port: must be a port number 1-65535, got 'abc'" in capsys.readouterr().err


@pytest.mark.usefixtures("clean_environ")
def test_a_malformed_variable_stops_before_serving_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POSTGRES_PORT", "abc")

    with pytest.raises(SystemExit) as caught:
        main(["serve", "--backend", "memory"])

    assert caught.value.code == 2
    assert capsys.readouterr().err == (
        "colima-ref: error: POSTGRES_PORT must be a port number 1-65535, got 'abc'\n"
    )


def test_a_malformed_variable_exits_2_without_a_traceback_in_a_real_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "colima_ref", "serve"],
        env=child_env(REDIS_NODES="host:"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "colima-ref: error: REDIS_NODES must be host:port[,host:port...], got 'host:'"
    ]
    assert result.stdout == ""


def test_serve_help_explains_every_option_and_every_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--help"])

    text = capsys.readouterr().out
    assert caught.value.code == 0
    for word in SERVE_OPTIONS + [variable.name for variable in ENVIRONMENT]:
        assert word in text


def serve_help(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The lines of ``serve --help``, each with its runs of spaces made one."""
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    return [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]


def test_serve_help_prints_the_readme_table_of_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = re.findall(r"^\| `([A-Z_]+)` \| (.*) \| (.*) \|$", README.read_text(), re.MULTILINE)
    lines = serve_help(capsys)

    assert len(rows) == len(ENVIRONMENT)
    for name, default, meaning in rows:
        assert f"{name} {meaning} (default: {default})" in lines


def test_serve_help_shows_no_secret_the_environment_holds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable in ENVIRONMENT:
        monkeypatch.setenv(variable.name, "canary-value")

    assert not any("canary" in line for line in serve_help(capsys))


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--workers", "0"], "--workers: must be a whole number 1-1000, got '0'"),
        (["--backend", "postgres"], "--backend: must be memory or live, got 'postgres'"),
        (["--log-level", "loud"], "--log-level: must be one of DEBUG/INFO/WARNING/ERROR/CRITICAL"),
    ],
)
def test_a_malformed_flag_is_a_usage_error_naming_the_flag(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["serve", *argv])

    assert caught.value.code == 2
    assert error in capsys.readouterr().err


def test_module_help_runs_in_a_fresh_interpreter_and_lists_every_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "colima_ref", "--help"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert "serve" in result.stdout
    for word in SERVE_OPTIONS + [variable.name for variable in ENVIRONMENT]:
        assert word in result.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """A real ``python -m colima_ref serve`` whose --backend flag overrides COLIMA_BACKEND=live."""
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "colima_ref",
                "serve",
                "--port",
                str(port),
                "--backend",
                "memory",
            ],
            env=child_env(COLIMA_BACKEND="live"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, port, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: int = response.status
            return status
    except (urllib.error.URLError, ConnectionError):
        return None


def test_serve_answers_health_from_a_real_process(
    served: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, log = served
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline and status != 200 and process.poll() is None:
        status = get_status(f"http://127.0.0.1:{port}/health/")
        if status != 200:
            time.sleep(0.2)

    assert status == 200, log.read_text()
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    [selected] = [entry for entry in entries if entry["message"] == "backend selected"]
    assert selected["backend"] == "memory"
