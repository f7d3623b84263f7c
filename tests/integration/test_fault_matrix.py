"""The fault matrix: every backend, each made to fail four ways, under one live server.

The server reaches every backend through a TCP relay this module starts (`live_support.Relay`),
so a test can break one backend without touching the shared devstack: ``down`` (connections
reset, new ones refused), ``slow`` (every chunk held 3 s), ``silent`` (bytes held until healed) and
``reset`` (the next chunk aborts the connection). Redis is the devstack's standalone server
(6379) behind a relay, with REDIS_NODES empty: cluster nodes announce their own ports, which a
relay cannot stand in for. Its secret is a copy without a password, in a Vault folder of its own
(VAULT_PATH_PREFIX).

Each cell (service x fault) checks what a client of the server sees:

- the service's endpoints answer 503 or 504 with the uniform error body naming the service,
  each within the operation timeout + 200 ms;
- the breaker opens on the fifth failure: the next calls are refused at once with 503
  ``CircuitBreakerError``;
- the other services' endpoints keep answering 2xx;
- ``/health/all`` shows the service unhealthy and the others healthy within 5 s of the fault;
- once the backend is back, the endpoints answer 2xx again and the breaker is closed.

A cell records what it measured and every check it missed before it asserts, so a failing cell
still fills its row; the module prints the whole matrix as a table at the end.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import attrs
import httpx2
import hvac
import pytest
from live_support import (
    CLIENT_LIMITS,
    QUIET,
    SUMMARIES,
    WHOLE_STACK,
    LiveServer,
    Relay,
    VaultFolder,
    addresses,
    assert_clean_shutdown,
)

pytestmark = WHOLE_STACK

Fault = Literal["down", "slow", "silent", "reset"]

# Vault first: the other services' credentials are read from it at start-up and kept for
# CREDENTIAL_TTL (300 s), so its outage must come while they are still fresh.
SERVICES = ("vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq")
# Silent last: calls abandoned on a silent connection get their answers late, once it heals, so a
# service that does not drop such connections may be out of step, and only its own cell shows it.
FAULTS: tuple[Fault, ...] = ("down", "slow", "reset", "silent")
STANDALONE_REDIS = ("127.0.0.1", 6379)
QUEUE = f"colima-fault-matrix-{uuid.uuid4().hex[:8]}"
ERROR_BODY = {"error", "message", "status_code", "details", "request_id"}

OPERATION_TIMEOUT = 1.0
SLOW_DELAY = 3.0  # seconds each chunk is held, three operation timeouts
FAIL_MAX = 5
RESET_TIMEOUT = 1.0
ANSWER_WITHIN = OPERATION_TIMEOUT + 0.2
REFUSED_WITHIN = 0.2  # an open breaker answers without touching the backend
HEALTH_WITHIN = 5.0
RECOVER_WITHIN = 10.0
SETTLE_WITHIN = 15.0
# A call still unanswered after this is recorded as hung. Long enough for a driver's own
# timeouts to end it, so the table shows how late it answered, and so a late failure cannot be
# counted by the breaker during the next cell.
CLIENT_TIMEOUT = 15.0


@attrs.frozen
class Call:
    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


AFFECTED: dict[str, tuple[Call, ...]] = {
    "vault": (
        Call("GET", "/examples/vault/secret/postgres"),
        Call("GET", "/examples/vault/secret/postgres/user"),
    ),
    "postgres": (Call("GET", "/examples/database/postgres/query"),),
    "mysql": (Call("GET", "/examples/database/mysql/query"),),
    "mongodb": (Call("GET", "/examples/database/mongodb/query"),),
    "redis": (
        Call("GET", "/examples/cache/fault-matrix"),
        Call("POST", "/examples/cache/fault-matrix?value=v&ttl=60"),
        Call("DELETE", "/examples/cache/fault-matrix"),
    ),
    "rabbitmq": (
        Call("POST", f"/examples/messaging/publish?queue_name={QUEUE}"),
        Call("GET", f"/examples/messaging/queue/{QUEUE}/info"),
    ),
}
LIVENESS = Call("GET", "/health/")


@attrs.define
class Cell:
    """What one service x fault run measured, and every check it missed."""

    service: str
    fault: Fault
    slowest_failure: float | None = None
    slowest_refusal: float | None = None
    health_after: float | None = None
    recovered_after: float | None = None
    problems: list[str] = attrs.field(factory=list)

    def row(self) -> list[str]:
        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        return [
            self.service,
            self.fault,
            "FAIL" if self.problems else "pass",
            seconds(self.slowest_failure),
            seconds(self.slowest_refusal),
            seconds(self.health_after),
            seconds(self.recovered_after),
            _first_problem(self.problems),
        ]


def _first_problem(problems: list[str]) -> str:
    if not problems:
        return ""
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    first = problems[0] if len(problems[0]) <= 120 else problems[0][:117] + "..."
    return first + more


HEADER = [
    "service",
    "fault",
    "result",
    "slowest 503/504 (s)",
    "open breaker (s)",
    "/health/all (s)",
    "recovered (s)",
    "first problem",
]


@attrs.frozen
class Stack:
    server: LiveServer
    relays: dict[str, Relay]


@pytest.fixture(scope="module")
def stack(
    devstack: dict[str, str],
    vault_admin: hvac.Client,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    targets = {service: where[0] for service, where in addresses(devstack).items()}
    relays = {service: Relay(target) for service, target in targets.items()}
    relays["redis"] = Relay(STANDALONE_REDIS)
    for relay in relays.values():
        relay.restore()
    folder = VaultFolder(vault_admin)
    folder.copy_devstack()
    folder.write("redis-1", {"host": STANDALONE_REDIS[0], "port": str(STANDALONE_REDIS[1])})
    env = {
        **devstack,
        **QUIET,
        "OPERATION_TIMEOUT": str(OPERATION_TIMEOUT),
        "CIRCUIT_BREAKER_FAIL_MAX": str(FAIL_MAX),
        "CIRCUIT_BREAKER_RESET_TIMEOUT": str(RESET_TIMEOUT),
        "VAULT_ADDR": f"http://127.0.0.1:{relays['vault'].port}",
        "VAULT_PATH_PREFIX": folder.prefix,
        "REDIS_NODES": "",
        **{f"{service.upper()}_PORT": str(relay.port) for service, relay in relays.items()},
    }
    server = LiveServer(env, tmp_path_factory.mktemp("fault-matrix"))
    try:
        server.start()
        yield Stack(server, relays)
        assert_clean_shutdown(server, server.stop())
    finally:
        server.stop_if_running()
        folder.delete()
        for relay in relays.values():
            relay.close()
        subprocess.run(
            ["rabbitmqctl", "-q", "delete_queue", "-p", "dev_vhost", QUEUE],
            capture_output=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest) -> Iterator[list[Cell]]:
    cells: list[Cell] = []
    yield cells
    table = render_table([HEADER, *(cell.row() for cell in cells)])
    title = "fault matrix (times in seconds; - where the check did not run)"
    request.config.stash.setdefault(SUMMARIES, []).append(f"{title}\n{table}")


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        " | ".join(text.ljust(width) for text, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


async def send(client: httpx2.AsyncClient, call: Call) -> tuple[httpx2.Response | None, float]:
    """The answer to ``call`` (None when there was none within CLIENT_TIMEOUT) and its time."""
    started = time.monotonic()
    try:
        response = await client.request(
            call.method,
            call.path,
            content=b'{"fault": "matrix"}' if call.method == "POST" else None,
            headers={"Content-Type": "application/json"} if call.method == "POST" else None,
        )
    except httpx2.TimeoutException:
        return None, time.monotonic() - started
    return response, time.monotonic() - started


def describe(call: Call, response: httpx2.Response | None, seconds: float) -> str:
    if response is None:
        return f"{call}: no answer within {seconds:.1f} s"
    error = ""
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        if isinstance(body, dict) and "error" in body:
            error = f" {body['error']}"
    return f"{call}: {response.status_code}{error} in {seconds:.2f} s"


def health_services(response: httpx2.Response) -> dict[str, Any]:
    services: dict[str, Any] = response.json()["services"]
    return services


async def settled(client: httpx2.AsyncClient) -> str | None:
    """Wait until every endpoint answers 2xx and every service is healthy, its breaker closed
    with no failure counted; None once they are, else what was still wrong at SETTLE_WITHIN."""
    deadline = time.monotonic() + SETTLE_WITHIN
    while True:
        wrong = []
        for call in [call for calls in AFFECTED.values() for call in calls]:
            response, seconds = await send(client, call)
            if response is None or not response.is_success:
                wrong.append(describe(call, response, seconds))
        report = await client.get("/health/all")
        for name, service in health_services(report).items():
            breaker = service["circuit_breaker"]
            if (
                service["status"] != "healthy"
                or breaker["state"] != "closed"
                or breaker["failures"]
            ):
                wrong.append(f"/health/all {name}: {service}")
        if not wrong:
            return None
        if time.monotonic() > deadline:
            return "; ".join(wrong)
        await asyncio.sleep(0.2)


async def watch_health(
    client: httpx2.AsyncClient, cell: Cell, since: float, first_answered: asyncio.Event
) -> None:
    """/health/all shows the service unhealthy and the others healthy within HEALTH_WITHIN,
    and /health/{service} answers 503.

    The probes start once the first call is answered (or should have been): a probe may take
    the connection a call would use, and the first call must meet the fault on the connection
    it held before, as the first client after a real fault does.
    """
    await asyncio.wait([asyncio.create_task(first_answered.wait())], timeout=ANSWER_WITHIN)

    async def one_service() -> None:
        call = Call("GET", f"/health/{cell.service}")
        response, seconds = await send(client, call)
        if response is None or response.status_code != 503:
            cell.problems.append(f"want 503 from {describe(call, response, seconds)}")

    single = asyncio.create_task(one_service())
    last = "no answer"
    while time.monotonic() - since < HEALTH_WITHIN:
        response, _ = await send(client, Call("GET", "/health/all"))
        if response is not None:
            statuses = {name: s["status"] for name, s in health_services(response).items()}
            last = str(statuses)
            expected = {
                name: "unhealthy" if name == cell.service else "healthy" for name in statuses
            }
            if statuses == expected:
                cell.health_after = time.monotonic() - since
                break
        await asyncio.sleep(0.1)
    else:
        cell.problems.append(f"/health/all not as expected within {HEALTH_WITHIN} s: {last}")
    await single


async def trip_breaker(
    client: httpx2.AsyncClient, cell: Cell, first_answered: asyncio.Event
) -> None:
    """FAIL_MAX failing answers within ANSWER_WITHIN, then refusals at once."""
    calls = AFFECTED[cell.service]
    failures = []
    for attempt in range(FAIL_MAX):
        call = calls[attempt % len(calls)]
        response, seconds = await send(client, call)
        first_answered.set()
        failures.append(seconds)
        problem = error_problem(cell.service, call, response, seconds, ANSWER_WITHIN)
        if problem is None and attempt < FAIL_MAX - 1:
            assert response is not None
            if response.json()["error"] == "CircuitBreakerError":
                answer = describe(call, response, seconds)
                problem = f"breaker open after {attempt + 1} failures: {answer}"
        if problem is not None:
            cell.problems.append(f"failure {attempt + 1}: {problem}")
    cell.slowest_failure = max(failures)
    refusals = []
    for call in calls:
        response, seconds = await send(client, call)
        refusals.append(seconds)
        problem = error_problem(cell.service, call, response, seconds, REFUSED_WITHIN)
        if problem is None:
            assert response is not None
            if response.json()["error"] != "CircuitBreakerError" or response.status_code != 503:
                problem = f"not refused by the breaker: {describe(call, response, seconds)}"
            elif "Retry-After" not in response.headers:
                problem = f"no Retry-After: {describe(call, response, seconds)}"
        if problem is not None:
            cell.problems.append(f"after {FAIL_MAX} failures: {problem}")
    cell.slowest_refusal = max(refusals)


def error_problem(
    service: str, call: Call, response: httpx2.Response | None, seconds: float, within: float
) -> str | None:
    """What is wrong with an answer that should be the service's 503/504 within ``within``."""
    if response is None or response.status_code not in (503, 504) or seconds > within:
        return f"{describe(call, response, seconds)} (want 503/504 within {within:.1f} s)"
    body = response.json()
    if set(body) != ERROR_BODY or body["status_code"] != response.status_code:
        return f"{call}: not the uniform error body: {body}"
    if body["details"].get("service") != service:
        return f"{call}: details.service is {body['details'].get('service')!r}: {body}"
    return None


async def others_answer(client: httpx2.AsyncClient, cell: Cell) -> None:
    others = [call for name, calls in AFFECTED.items() if name != cell.service for call in calls]
    for call in [LIVENESS, *others]:
        response, seconds = await send(client, call)
        if response is None or not response.is_success:
            cell.problems.append(f"unaffected {describe(call, response, seconds)}")


async def recover(client: httpx2.AsyncClient, cell: Cell, since: float) -> None:
    """Every endpoint of the service answers 2xx and its breaker is closed within
    RECOVER_WITHIN of the backend's return."""
    pending = list(AFFECTED[cell.service])
    last = ""
    while pending and time.monotonic() - since < RECOVER_WITHIN:
        response, seconds = await send(client, pending[0])
        if response is not None and response.is_success:
            pending.pop(0)
        else:
            last = describe(pending[0], response, seconds)
            await asyncio.sleep(0.1)
    if pending:
        cell.problems.append(f"not recovered within {RECOVER_WITHIN} s: {last}")
        return
    cell.recovered_after = time.monotonic() - since
    report = health_services(await client.get("/health/all"))[cell.service]
    if report["status"] != "healthy" or report["circuit_breaker"]["state"] != "closed":
        cell.problems.append(f"after recovery /health/all says {report}")


def break_backend(relay: Relay, fault: Fault) -> None:
    if fault == "down":
        relay.cut()
    else:
        relay.inject(fault, delay=SLOW_DELAY)


def mend_backend(relay: Relay, fault: Fault) -> None:
    if fault == "down":
        relay.restore()
    else:
        relay.heal()


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("service", SERVICES)
async def test_a_failing_backend_answers_fast_opens_its_breaker_and_spares_the_others(
    stack: Stack, matrix: list[Cell], service: str, fault: Fault
) -> None:
    cell = Cell(service, fault)
    matrix.append(cell)
    relay = stack.relays[service]
    async with httpx2.AsyncClient(
        base_url=stack.server.base_url, timeout=CLIENT_TIMEOUT, limits=CLIENT_LIMITS
    ) as client:
        not_settled = await settled(client)
        if not_settled is not None:
            cell.problems.append(f"not healthy before the fault: {not_settled}")
            pytest.fail(not_settled)
        break_backend(relay, fault)
        broken_at = time.monotonic()
        try:
            # Together, as a monitor and clients would meet the fault: probes bypass the
            # breaker, so neither changes what the other counts.
            first_answered = asyncio.Event()
            await asyncio.gather(
                trip_breaker(client, cell, first_answered),
                watch_health(client, cell, broken_at, first_answered),
            )
            await others_answer(client, cell)
        finally:
            mend_backend(relay, fault)
        await recover(client, cell, time.monotonic())
    assert not cell.problems, "\n".join(cell.problems)
