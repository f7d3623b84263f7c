"""The served process under abuse: malformed, oversized, endless and slow requests on raw sockets.

Each case answers either with the uniform JSON error body and its request id (the app answered)
or with the HTTP parser's own plain 400 (refused before the app saw it; the README lists these),
and the server keeps answering `/health/` quickly meanwhile. The results print as a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import attrs
import pytest
from live_support import LiveServer, assert_clean_shutdown

from colima_ref.head_deadline import HEAD_TIMEOUT
from colima_ref.http.middleware.request_validation import BODY_READ_TIMEOUT, MAX_HEAD_BYTES

HOST = "127.0.0.1"
ENV = {"RATE_LIMIT_ENABLED": "false", "LOG_REQUESTS": "false"}
PARSER_REFUSAL = b"Invalid HTTP request received."
# What a client sees when the server closes on it with bytes still unread: the outcome some
# cases expect, not an error.
CUT_OFF = (BrokenPipeError, ConnectionResetError)
# How late after its deadline a connection may still be seen open: the timer, the close and
# this test's own polling.
CLOSE_SLACK = 1.5
LIVENESS_P99 = 0.050  # seconds
RESULTS: list[tuple[str, str, float]] = []


@attrs.frozen
class Answer:
    """What came back on one connection: no status when it closed without a response."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    seconds: float

    @property
    def shown(self) -> str:
        if self.status is None:
            return "closed, no answer"
        return f"{self.status} from the {'app' if 'x-request-id' in self.headers else 'parser'}"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[LiveServer]:
    live = LiveServer(ENV, tmp_path_factory.mktemp("abuse"), backend="memory")
    live.start()
    try:
        yield live
    finally:
        code = live.stop()
        print_table(pytestconfig)
        assert_clean_shutdown(live, code)
        # No case may make the app fail: a 500 or a client's disconnect would log one.
        assert "Traceback" not in live.stdout + live.stderr


def print_table(pytestconfig: pytest.Config) -> None:
    """The results on the terminal, past pytest's output capture (even with -q)."""
    if not RESULTS:
        return
    width = max(len(case) for case, _, _ in RESULTS)
    lines = [f"{'case':<{width}}  {'status':<34}  time"]
    lines += [f"{case:<{width}}  {status:<34}  {secs:.3f} s" for case, status, secs in RESULTS]
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(lines))


def parse(data: bytes, seconds: float) -> Answer:
    if not data:
        return Answer(None, {}, b"", seconds)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body, seconds)


def exchange(port: int, request: bytes, *, chunk: int | None = None) -> Answer:
    """Send ``request`` (in pieces of ``chunk`` bytes, stopping once the server answers) and read
    until the server closes."""
    start = time.monotonic()
    with socket.create_connection((HOST, port), timeout=HEAD_TIMEOUT + 5) as sock:
        step = chunk or len(request)
        with contextlib.suppress(*CUT_OFF):
            for offset in range(0, len(request), step):
                sock.sendall(request[offset : offset + step])
                if chunk and sock_readable(sock):
                    break
        received = []
        with contextlib.suppress(*CUT_OFF):
            while data := sock.recv(65536):
                received.append(data)
    return parse(b"".join(received), time.monotonic() - start)


def sock_readable(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0.002)
    return bool(readable)


def record(case: str, answer: Answer, note: str = "") -> None:
    RESULTS.append((case, f"{answer.shown}{note}", answer.seconds))


def assert_uniform(answer: Answer, status: int) -> None:
    """The app answered: its uniform error body, with the request id of the response header."""
    assert answer.status == status, answer
    body = json.loads(answer.body)
    assert set(body) == {"error", "message", "status_code", "details", "request_id"}
    assert body["status_code"] == status
    assert body["request_id"] == answer.headers["x-request-id"]


def assert_refused_by_parser(answer: Answer) -> None:
    assert answer.status == 400, answer
    assert answer.headers["content-type"].startswith("text/plain")
    assert PARSER_REFUSAL in answer.body  # chunked when the refusal is framed so
    assert "x-request-id" not in answer.headers


def request(target: str, *headers: str, method: str = "GET", body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: abuse", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_head_over_the_limit_is_refused_by_the_parser(server: LiveServer) -> None:
    big = "X-Big: " + "a" * (MAX_HEAD_BYTES + 8192)
    answer = exchange(server.port, request("/health/", big), chunk=4096)

    record(f"header of {MAX_HEAD_BYTES // 1024 + 8} KiB", answer)
    assert_refused_by_parser(answer)


def test_a_whole_head_over_the_limit_is_never_served(server: LiveServer) -> None:
    """Sent in one piece, the parser may read it whole and pass it on: the app refuses it."""
    big = "X-Big: " + "a" * (MAX_HEAD_BYTES + 8192)
    answer = exchange(server.port, request("/health/", big))

    record(f"header of {MAX_HEAD_BYTES // 1024 + 8} KiB in one piece", answer)
    if answer.status == 400:
        assert_refused_by_parser(answer)
    else:
        assert_uniform(answer, 431)


def test_endless_heads_are_cut_off_and_memory_stays_flat(server: LiveServer) -> None:
    """Five connections each try to send a 20 MB head that never ends."""
    assert server.process is not None
    before = rss_kib(server.process.pid)
    start = time.monotonic()
    sent: list[int] = []

    def flood() -> None:
        total = 0
        with (
            socket.create_connection((HOST, server.port), timeout=10) as sock,
            contextlib.suppress(*CUT_OFF),
        ):
            sock.sendall(b"GET /health/ HTTP/1.1\r\nHost: abuse\r\nX-Endless: ")
            while total < 20 * 1024 * 1024:
                total += sock.send(b"a" * 65536)
        sent.append(total)

    floods = [threading.Thread(target=flood) for _ in range(5)]
    for thread in floods:
        thread.start()
    for thread in floods:
        thread.join(timeout=30)
    grown_mib = (rss_kib(server.process.pid) - before) / 1024

    cut = f"cut after {max(sent) // 1024} KiB, RSS {grown_mib:+.1f} MiB"
    RESULTS.append(("5 x endless 20 MB header", cut, time.monotonic() - start))
    assert len(sent) == 5
    assert all(total < 20 * 1024 * 1024 for total in sent), sent
    assert grown_mib < 10, f"the worker grew {grown_mib:.1f} MiB"
    assert server.get("/health/").status_code == 200


def test_duplicate_content_lengths_are_refused_by_the_parser(server: LiveServer) -> None:
    answer = exchange(
        server.port,
        request(
            "/examples/messaging/publish?queue_name=abuse",
            "Content-Type: application/json",
            "Content-Length: 2",
            "Content-Length: 3",
            method="POST",
            body=b"{}",
        ),
    )

    record("duplicate Content-Length", answer)
    assert_refused_by_parser(answer)


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(
    server: LiveServer,
) -> None:
    """Both framings at once is how a request is smuggled past a proxy (RFC 9112 6.1): the
    request is refused, and the request sent after it on the same connection is never read."""
    payload = b'{"event": "x"}'
    smuggling = (
        b"POST /examples/messaging/publish?queue_name=abuse HTTP/1.1\r\nHost: abuse\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    )
    answer = exchange(server.port, smuggling + b"GET /health/ HTTP/1.1\r\nHost: abuse\r\n\r\n")

    record("Content-Length + Transfer-Encoding", answer)
    assert_uniform(answer, 400)
    assert b"HTTP/1.1" not in answer.body


def test_a_body_that_stops_arriving_is_answered_408_after_the_read_timeout(
    server: LiveServer,
) -> None:
    answer = exchange(
        server.port,
        request(
            "/examples/messaging/publish?queue_name=abuse",
            "Content-Type: application/json",
            "Content-Length: 100",
            method="POST",
            body=b'{"half": ',
        ),
    )

    record("body stops after 9 of 100 bytes", answer)
    assert_uniform(answer, 408)
    assert BODY_READ_TIMEOUT <= answer.seconds < BODY_READ_TIMEOUT + 1.5


def test_a_huge_content_length_is_refused_before_the_body_comes(server: LiveServer) -> None:
    answer = exchange(
        server.port,
        request(
            "/examples/messaging/publish?queue_name=abuse",
            "Content-Type: application/json",
            f"Content-Length: {10**15}",
            method="POST",
        ),
    )

    record("Content-Length: 10^15", answer)
    assert_uniform(answer, 413)


@pytest.mark.parametrize(
    ("case", "target"),
    [("NUL byte in the path", "/health/\x00"), ("form feed in the path", "/hea\x0clth/")],
)
def test_raw_control_bytes_in_the_path_are_refused_by_the_parser(
    server: LiveServer, case: str, target: str
) -> None:
    answer = exchange(server.port, request(target))

    record(case, answer)
    assert_refused_by_parser(answer)


@pytest.mark.parametrize(
    ("case", "target"),
    [
        ("%00 in the path", "/examples/cache/a%00b"),
        ("%0C in the path", "/examples/cache/a%0Cb"),
    ],
)
def test_encoded_control_bytes_in_the_path_get_the_uniform_body(
    server: LiveServer, case: str, target: str
) -> None:
    answer = exchange(server.port, request(target))

    record(case, answer)
    assert_uniform(answer, 422)


def test_five_thousand_query_parameters_are_answered_at_once(server: LiveServer) -> None:
    query = "&".join(f"p{n}=1" for n in range(5000))
    answer = exchange(server.port, request(f"/examples/cache/abuse?{query}"))

    record("5,000 query parameters", answer)
    assert answer.seconds < 1
    assert answer.status is not None
    assert answer.status < 500, answer
    if answer.status >= 400:
        assert_uniform(answer, answer.status)


def test_a_json_body_100000_levels_deep_is_a_client_error(server: LiveServer) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = exchange(
        server.port,
        request(
            "/examples/messaging/publish?queue_name=abuse",
            "Content-Type: application/json",
            f"Content-Length: {len(deep)}",
            method="POST",
            body=deep,
        ),
    )

    record("JSON 100,000 levels deep", answer)
    assert_uniform(answer, 422)


def test_a_preflight_from_a_disallowed_origin_gets_the_uniform_body(server: LiveServer) -> None:
    answer = exchange(
        server.port,
        request(
            "/health/",
            "Origin: https://evil.example",
            "Access-Control-Request-Method: GET",
            method="OPTIONS",
        ),
    )

    record("CORS preflight, disallowed origin", answer)
    assert "access-control-allow-origin" not in answer.headers
    assert_uniform(answer, 400)


def test_a_request_in_flight_outlasts_the_head_deadline(server: LiveServer) -> None:
    """The deadline is for heads: a request whose body takes longer, each piece within the
    body's read timeout, still gets its answer."""
    body = b'{"event": "slow"}'
    pause = BODY_READ_TIMEOUT * 0.6
    start = time.monotonic()
    with socket.create_connection((HOST, server.port), timeout=HEAD_TIMEOUT + 5) as sock:
        sock.sendall(
            request(
                "/examples/messaging/publish?queue_name=abuse",
                "Content-Type: application/json",
                f"Content-Length: {len(body)}",
                method="POST",
                body=body[:5],
            )
        )
        for piece in (body[5:10], body[10:]):
            time.sleep(pause)
            sock.sendall(piece)
        answer = parse(sock.makefile("rb").read(), time.monotonic() - start)

    assert answer.seconds > HEAD_TIMEOUT
    record(f"body finished after {answer.seconds:.1f} s, in pieces", answer)
    assert answer.status == 200, answer


def test_pipelined_requests_are_all_answered(server: LiveServer) -> None:
    one = b"GET /health/ HTTP/1.1\r\nHost: abuse\r\n\r\n"
    answer = exchange(server.port, one * 2 + request("/health/"))

    record("3 pipelined requests", answer, f", {answer.body.count(b'HTTP/1.1 200') + 1} answers")
    assert answer.status == 200
    assert answer.body.count(b"HTTP/1.1 200 OK") == 2


def liveness_latencies(port: int, seconds: float) -> list[float]:
    """`/health/` one request after another on one kept-alive connection, for ``seconds``, from
    a thread of its own so that the abusing connections' event loop does not delay it."""
    latencies = []
    deadline = time.monotonic() + seconds
    with socket.create_connection((HOST, port), timeout=5) as sock:
        stream = sock.makefile("rb")
        while time.monotonic() < deadline:
            start = time.monotonic()
            sock.sendall(b"GET /health/ HTTP/1.1\r\nHost: abuse\r\n\r\n")
            length = 0
            while (line := stream.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            stream.read(length)
            latencies.append(time.monotonic() - start)
            time.sleep(0.01)
    return latencies


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


async def closed_after(reader: asyncio.StreamReader, opened: float, limit: float) -> float:
    """Seconds from ``opened`` until the server closed the connection (``limit`` if it did not)."""
    try:
        async with asyncio.timeout(limit - (time.monotonic() - opened)):
            with contextlib.suppress(*CUT_OFF):
                while await reader.read(65536):
                    continue
    except TimeoutError:
        return limit
    return time.monotonic() - opened


async def test_slow_loris_and_silent_connections_are_closed_while_liveness_stays_fast(
    server: LiveServer,
) -> None:
    """200 connections send a header line a second and never end their head; 20 send nothing."""
    limit = HEAD_TIMEOUT + CLOSE_SLACK
    opened = time.monotonic()
    connections = [await asyncio.open_connection(HOST, server.port) for _ in range(220)]
    loris = connections[:200]

    async def trickle() -> None:
        for _, writer in loris:
            writer.write(b"GET /health/ HTTP/1.1\r\nHost: abuse\r\n")
        for n in range(int(limit) + 1):
            await asyncio.sleep(1)
            for _, writer in loris:
                if not writer.is_closing():
                    writer.write(b"X-Slow-%d: x\r\n" % n)

    trickling = asyncio.create_task(trickle())
    latencies = await asyncio.to_thread(liveness_latencies, server.port, HEAD_TIMEOUT - 1)
    closed = await asyncio.gather(*(closed_after(r, opened, limit) for r, _ in connections))
    trickling.cancel()
    for _, writer in connections:
        writer.close()

    RESULTS.append(
        ("200 slow-loris + 20 silent", f"closed after <= {max(closed):.1f} s", max(closed))
    )
    RESULTS.append(("  /health/ meanwhile", f"p99 {p99(latencies) * 1000:.1f} ms", max(latencies)))
    assert max(closed) < limit, f"{sum(c >= limit for c in closed)} connections still open"
    assert p99(latencies) < LIVENESS_P99


async def test_idle_keep_alive_connections_are_closed_while_liveness_stays_fast(
    server: LiveServer,
) -> None:
    """500 connections each get one answer, then stay open without a word."""
    connections = []
    for _ in range(500):
        reader, writer = await asyncio.open_connection(HOST, server.port)
        writer.write(b"GET /health/ HTTP/1.1\r\nHost: abuse\r\n\r\n")
        connections.append((reader, writer))
    for reader, _ in connections:
        head = await reader.readuntil(b"\r\n\r\n")
        assert parse(head, 0).status == 200
        await reader.readexactly(int(parse(head, 0).headers["content-length"]))
    answered = time.monotonic()

    latencies = await asyncio.to_thread(liveness_latencies, server.port, HEAD_TIMEOUT - 1)
    limit = HEAD_TIMEOUT + CLOSE_SLACK
    closed = await asyncio.gather(*(closed_after(r, answered, limit) for r, _ in connections))
    for _, writer in connections:
        writer.close()

    RESULTS.append(("500 idle keep-alive", f"closed after <= {max(closed):.1f} s", max(closed)))
    RESULTS.append(("  /health/ meanwhile", f"p99 {p99(latencies) * 1000:.1f} ms", max(latencies)))
    assert max(closed) < limit
    assert p99(latencies) < LIVENESS_P99
