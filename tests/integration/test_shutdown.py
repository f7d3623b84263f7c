"""SIGTERM with requests in flight: they finish, then the process exits 0 without a traceback."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

from live_support import LiveServer, assert_clean_shutdown

from colima_ref.cli import GRACEFUL_SHUTDOWN

IN_FLIGHT = 20
BODY = b'{"event": "shutdown", "n": 1}'


def start_publish(port: int) -> socket.socket:
    """A publish whose head and half its body are sent: the app is waiting for the rest."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=GRACEFUL_SHUTDOWN + 5)
    head = (
        "POST /examples/messaging/publish?queue_name=shutdown HTTP/1.1\r\nHost: shutdown\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    )
    sock.sendall(head.encode() + BODY[: len(BODY) // 2])
    return sock


def finish_publish(sock: socket.socket) -> tuple[int, bytes]:
    with sock:
        sock.sendall(BODY[len(BODY) // 2 :])
        received = []
        while data := sock.recv(65536):
            received.append(data)
    head, _, body = b"".join(received).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_sigterm_lets_every_request_in_flight_finish_and_exits_0(tmp_path: Path) -> None:
    server = LiveServer({"RATE_LIMIT_ENABLED": "false"}, tmp_path, backend="memory")
    server.start()
    in_flight = [start_publish(server.port) for _ in range(IN_FLIGHT)]
    time.sleep(0.5)  # every head has reached the app
    codes: list[int] = []
    stopping = threading.Thread(target=lambda: codes.append(server.stop()))
    signalled = time.monotonic()
    stopping.start()
    time.sleep(0.5)  # uvicorn is shutting down, waiting for these requests

    answers = [finish_publish(sock) for sock in in_flight]
    stopping.join(timeout=GRACEFUL_SHUTDOWN + 10)
    stopped_after = time.monotonic() - signalled

    statuses = sorted({status for status, _ in answers})
    print(f"\n{IN_FLIGHT} in flight at SIGTERM: {statuses}, exit {codes}, {stopped_after:.2f} s")
    for status, body in answers:
        assert status == 200, body
        assert json.loads(body)["message"] == json.loads(BODY)
    assert codes == [0]
    assert stopped_after < GRACEFUL_SHUTDOWN
    assert_clean_shutdown(server, codes[0])
