"""``colima-ref serve --workers N``: refused while metrics are on, since each worker has its own
registry and a scrape of /metrics would reach one of them at random."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from served import Served, child_env, group_gone

TOPOLOGIES = (
    "colima-ref: error: --workers 2 with METRICS_ENABLED=true would answer each /metrics scrape "
    "from one worker at random; run one worker per process or container and scrape each "
    "instance, or set METRICS_ENABLED=false"
)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[list[Served]]:
    """The servers a test starts, every process of theirs killed afterwards."""
    servers: list[Served] = []
    yield servers
    for server in servers:
        server.kill_group()


def start(servers: list[Served], tmp_path: Path, args: list[str], **env: str) -> Served:
    server = Served(
        ["--backend", "memory", *args], child_env(**env), tmp_path / f"{len(servers)}.log"
    )
    servers.append(server)
    server.start()
    return server


@pytest.mark.parametrize("metrics", [{}, {"METRICS_ENABLED": "true"}])
def test_more_than_one_worker_with_metrics_on_is_refused_naming_what_works(
    serving: list[Served], tmp_path: Path, metrics: dict[str, str]
) -> None:
    server = start(serving, tmp_path, ["--workers", "2"], **metrics)

    assert server.exit_code(30) == 2
    assert server.output().splitlines() == [TOPOLOGIES]


def test_reload_with_more_than_one_worker_is_refused(serving: list[Served], tmp_path: Path) -> None:
    server = start(serving, tmp_path, ["--reload", "--workers", "2"], METRICS_ENABLED="false")

    assert server.exit_code(30) == 2
    assert server.output().splitlines() == [
        "colima-ref: error: --reload runs a single worker; drop --workers or --reload"
    ]


def test_two_workers_serve_with_metrics_off_and_stop_on_sigterm(
    serving: list[Served], tmp_path: Path
) -> None:
    server = start(serving, tmp_path, ["--workers", "2"], METRICS_ENABLED="false")
    assert server.wait_for(lambda r: r.status_code == 200, "/health/", 30), server.output()

    assert server.stop() == 0
    assert group_gone(server.pid)
    started = re.findall(r"Started server process \[(\d+)\]", server.output())
    assert len(set(started)) == 2, server.output()
