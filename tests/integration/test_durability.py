"""Durability of publishing through the HTTP API: a 2xx means the message is in the queue.

One live server on the devstack (rate limit and response cache off), many concurrent clients,
and a queue unique to each test, read back and deleted directly on RabbitMQ at the end.

The second test stops the RabbitMQ application (``rabbitmqctl stop_app``) in the middle of a
run. That disrupts everyone using this machine's RabbitMQ for a few seconds, so it is one run,
and start_app is always called afterwards, until the broker answers again.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Final

import aiormq
import attrs
import httpx2
import hvac
import pytest
from aiormq.abc import AbstractChannel
from live_support import (
    KEEPALIVE_EXPIRY,
    QUIET,
    SUMMARIES,
    WHOLE_STACK,
    LiveServer,
    read_secret,
)
from pamqp.commands import Basic

pytestmark = WHOLE_STACK

CLIENTS: Final = 50
MANY: Final = 10_000
RUN: Final = 2_000
STOP_AFTER: Final = 600  # answers before stop_app
# While RabbitMQ is stopped and until publishing resumes, ids are handed out this far apart, so
# the run outlasts the outage and the restart, however long they take.
OUTAGE_PACE: Final = 0.025
STOPPED_FOR: Final = 2.0  # seconds the application stays stopped after stop_app returns
RESUME_WITHIN: Final = 5.0
BROKER_BACK_WITHIN: Final = 60.0
FAILURE_STATUSES: Final = {503, 504}


@attrs.define
class Answers:
    """Each message id's HTTP status, and when the 2xx ones were answered."""

    status: dict[int, int] = attrs.field(factory=dict)
    accepted_at: dict[int, float] = attrs.field(factory=dict)
    sent_at: dict[int, float] = attrs.field(factory=dict)
    transport_errors: dict[int, str] = attrs.field(factory=dict)

    @property
    def accepted(self) -> set[int]:
        return {n for n, status in self.status.items() if 200 <= status < 300}

    @property
    def refused(self) -> set[int]:
        return set(self.status) - self.accepted


@pytest.fixture(scope="module")
def server(
    devstack: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    live = LiveServer({**devstack, **QUIET}, tmp_path_factory.mktemp("durability"))
    try:
        live.start()
        yield live
    finally:
        live.stop_if_running()


@pytest.fixture(scope="module")
def amqp_url(devstack: dict[str, str], vault_admin: hvac.Client) -> str:
    secret = read_secret(vault_admin, "rabbitmq")
    vhost = secret.get("vhost") or "dev_vhost"
    host, port = devstack["RABBITMQ_HOST"], devstack["RABBITMQ_PORT"]
    return f"amqp://{secret['user']}:{secret['password']}@{host}:{port}/{vhost}"


@pytest.fixture
async def queue(amqp_url: str) -> AsyncIterator[str]:
    name = f"colima-durability-{uuid.uuid4().hex[:8]}"
    yield name
    async with broker_channel(amqp_url) as channel:
        await channel.queue_delete(name)


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx2.AsyncClient]:
    limits = httpx2.Limits(
        max_connections=CLIENTS,
        max_keepalive_connections=CLIENTS,
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )
    async with httpx2.AsyncClient(base_url=server.base_url, timeout=30, limits=limits) as opened:
        yield opened


@asynccontextmanager
async def broker_channel(url: str) -> AsyncIterator[AbstractChannel]:
    """A channel on a connection of its own, both closed on the way out."""
    connection = await aiormq.connect(url)
    try:
        channel: AbstractChannel = await connection.channel()
        yield channel
    finally:
        await connection.close()


async def publish(
    client: httpx2.AsyncClient, queue: str, n: int, run: str, answers: Answers
) -> None:
    answers.sent_at[n] = time.monotonic()
    try:
        response = await client.post(
            "/examples/messaging/publish",
            params={"queue_name": queue},
            json={"id": n, "run": run},
        )
    except httpx2.TransportError as exc:
        answers.transport_errors[n] = type(exc).__name__
        return
    answers.status[n] = response.status_code
    if response.is_success:
        answers.accepted_at[n] = time.monotonic()


async def depth(url: str, queue: str) -> int:
    async with broker_channel(url) as channel:
        declared = await channel.queue_declare(queue, passive=True)
        return declared.message_count or 0


async def read_back(url: str, queue: str, run: str) -> list[int]:
    """The ids of every message in ``queue``, in queue order, taking them off the queue."""
    ids: list[int] = []
    async with broker_channel(url) as channel:
        while True:
            message = await channel.basic_get(queue, no_ack=True)
            if isinstance(message.delivery, Basic.GetEmpty):
                return ids
            body = json.loads(message.body)
            assert body["run"] == run
            ids.append(body["id"])


def summarize(request: pytest.FixtureRequest, title: str, lines: list[str]) -> None:
    request.config.stash.setdefault(SUMMARIES, []).append("\n".join([title, *lines]))


async def test_every_accepted_publish_of_ten_thousand_is_in_the_queue(
    client: httpx2.AsyncClient, queue: str, amqp_url: str, request: pytest.FixtureRequest
) -> None:
    run, answers = uuid.uuid4().hex, Answers()
    ids = iter(range(MANY))

    async def worker() -> None:
        for n in ids:
            await publish(client, queue, n, run, answers)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    seconds = time.monotonic() - started
    in_queue = await depth(amqp_url, queue)

    statuses = sorted(set(answers.status.values()))
    summarize(
        request,
        "durability: 10,000 publishes",
        [
            f"{MANY} publishes by {CLIENTS} clients in {seconds:.1f} s ({MANY / seconds:.0f}/s)",
            f"2xx {len(answers.accepted)}, other {len(answers.refused)} (statuses {statuses}), "
            f"transport errors {len(answers.transport_errors)}, queue depth {in_queue}",
        ],
    )
    assert not answers.transport_errors
    assert in_queue == len(answers.accepted)
    assert len(answers.accepted) == MANY, f"statuses {statuses}"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=120, check=True)


async def wait_for_broker(url: str) -> None:
    deadline = time.monotonic() + BROKER_BACK_WITHIN
    while True:
        try:
            connection = await aiormq.connect(url)
        except (aiormq.exceptions.AMQPError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
        else:
            await connection.close()
            return


@attrs.define
class Outage:
    """stop_app once enough publishes are answered, start_app a little later, and the moment
    publishing works again; ``pace`` is how far apart ids are handed out meanwhile."""

    pace: float = 0.0
    began: bool = False
    stopped_after: float | None = None
    start_took: float | None = None
    started_at: float | None = None
    resumed_after: float | None = None
    due: asyncio.Event = attrs.field(factory=asyncio.Event)
    resumed: asyncio.Event = attrs.field(factory=asyncio.Event)

    def observe(self, answers: Answers, n: int) -> None:
        """Called after each publish ``n``."""
        if len(answers.status) >= STOP_AFTER:
            self.due.set()
        if (
            self.started_at is not None
            and n in answers.accepted_at
            and answers.sent_at[n] >= self.started_at
            and not self.resumed.is_set()
        ):
            self.resumed_after = answers.accepted_at[n] - self.started_at
            self.resumed.set()

    async def run(self, url: str) -> None:
        await self.due.wait()
        self.pace, self.began = OUTAGE_PACE, True
        began = time.monotonic()
        try:
            await asyncio.to_thread(rabbitmqctl, "stop_app")
            self.stopped_after = time.monotonic() - began
            await asyncio.sleep(STOPPED_FOR)
        finally:
            # In a thread that runs to its end even if this task is cancelled meanwhile.
            starting = time.monotonic()
            await asyncio.to_thread(rabbitmqctl, "start_app")
            self.started_at = time.monotonic()
            self.start_took = self.started_at - starting
            await wait_for_broker(url)
        await asyncio.wait([asyncio.create_task(self.resumed.wait())], timeout=30)
        self.pace = 0.0


async def test_a_rabbitmq_restart_mid_run_loses_no_accepted_message_and_duplicates_none(
    client: httpx2.AsyncClient, queue: str, amqp_url: str, request: pytest.FixtureRequest
) -> None:
    run, answers, outage = uuid.uuid4().hex, Answers(), Outage()
    handed: asyncio.Queue[int | None] = asyncio.Queue(maxsize=1)

    async def hand_out() -> None:
        for n in range(RUN):
            await handed.put(n)
            if outage.pace:
                await asyncio.sleep(outage.pace)
        for _ in range(CLIENTS):
            await handed.put(None)

    async def worker() -> None:
        while (n := await handed.get()) is not None:
            await publish(client, queue, n, run, answers)
            outage.observe(answers, n)

    started = time.monotonic()
    restart = asyncio.create_task(outage.run(amqp_url))
    try:
        await asyncio.gather(hand_out(), *(worker() for _ in range(CLIENTS)))
    finally:
        if not outage.began:
            restart.cancel()
        # Once begun, it runs to the end: start_app, and the broker answering again.
        (ended,) = await asyncio.gather(restart, return_exceptions=True)
    if isinstance(ended, Exception):
        raise ended
    seconds = time.monotonic() - started
    in_queue = await read_back(amqp_url, queue, run)

    found = set(in_queue)
    twice = sorted(n for n, copies in Counter(in_queue).items() if copies > 1)
    lost = sorted(answers.accepted - found)
    missing_without_error = sorted((set(range(RUN)) - found) - answers.refused)
    statuses = sorted(set(answers.status.values()))
    summarize(
        request,
        "durability: RabbitMQ stop_app/start_app mid-run",
        [
            f"{RUN} publishes in {seconds:.1f} s; stop_app after {STOP_AFTER} answers took "
            f"{outage.stopped_after or 0:.1f} s, start_app {outage.start_took or 0:.1f} s; "
            "publishing resumed "
            f"{'never' if outage.resumed_after is None else f'{outage.resumed_after:.2f} s'} "
            "after start_app returned",
            f"2xx {len(answers.accepted)}, other {len(answers.refused)} (statuses {statuses}), "
            f"transport errors {len(answers.transport_errors)}",
            f"in the queue {len(in_queue)} ({len(found)} distinct): lost 2xx {len(lost)}, "
            f"twice {len(twice)}, missing without an error {len(missing_without_error)}",
        ],
    )
    assert not answers.transport_errors
    assert lost == [], "answered 2xx but not in the queue"
    assert twice == [], "in the queue more than once"
    assert missing_without_error == []
    assert set(answers.status.values()) - FAILURE_STATUSES <= set(range(200, 300))
    assert answers.refused, "the restart refused no publish: it happened outside the run"
    assert outage.resumed_after is not None
    assert outage.resumed_after < RESUME_WITHIN
