"""The developer loop: ``colima-ref serve --reload`` serves the code as it is edited."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

import colima_ref
from colima_ref.settings import DEFAULT_APP_NAME
from served import Served, child_env, group_gone

ROOT = Path(__file__).resolve().parents[2]
EDITED_NAME = "Edited while served"


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A folder holding a copy of the imported colima_ref package, to import from and edit, so
    that the test never writes into src."""
    folder = tmp_path / "site"
    shutil.copytree(Path(colima_ref.__file__).parent, folder / "colima_ref")
    return folder


@pytest.fixture
def reloading(package_copy: Path, tmp_path: Path) -> Iterator[Served]:
    server = Served(
        ["--reload", "--backend", "memory"],
        child_env(PYTHONPATH=str(package_copy)),
        tmp_path / "server.log",
        cwd=tmp_path,
    )
    server.start()
    try:
        yield server
    finally:
        server.kill_group()


def named(name: str) -> Callable[[httpx2.Response], bool]:
    """A check that GET / answers with ``name``."""
    return lambda response: response.status_code == 200 and response.json()["name"] == name


def messages(output: str) -> list[str]:
    return [json.loads(line)["message"] for line in output.splitlines() if line.startswith("{")]


def test_an_edit_to_the_package_restarts_the_server_on_the_new_code(
    reloading: Served, package_copy: Path
) -> None:
    assert reloading.wait_for(named(DEFAULT_APP_NAME), "/", 30), reloading.output()
    settings_py = package_copy / "colima_ref" / "settings.py"
    source = settings_py.read_text()
    edited = source.replace(f'"{DEFAULT_APP_NAME}"', f'"{EDITED_NAME}"', 1)
    assert edited != source
    settings_py.write_text(edited)

    assert reloading.wait_for(named(EDITED_NAME), "/", 30), reloading.output()
    health = reloading.get("/health/")
    assert health is not None
    assert health.status_code == 200
    assert reloading.stop() == 0
    assert group_gone(reloading.pid)
    said = messages(reloading.output())
    started = [m for m in said if re.fullmatch(r"Started server process \[\d+\]", m)]
    assert len(set(started)) == 2, said
    assert any("settings.py" in m and m.endswith("Reloading...") for m in said), said


def test_make_dev_serves_the_memory_backend_with_reload_and_is_listed_in_help() -> None:
    help_text = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    recipe = subprocess.run(
        ["make", "-n", "dev"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout

    assert re.search(r"^  dev +\S", help_text, re.MULTILINE), help_text
    [serve] = [line for line in recipe.splitlines() if "colima-ref serve" in line]
    assert serve.startswith("DEBUG=true ")
    assert "serve --reload --backend memory" in serve
