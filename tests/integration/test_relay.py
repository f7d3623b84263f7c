"""The fault relay the outage tests stand on: each fault does what the matrix says it does."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest
from live_support import Relay


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def relay() -> Iterator[Relay]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opened = Relay(server.server_address[:2])
    opened.restore()
    try:
        yield opened
    finally:
        opened.close()
        server.shutdown()
        server.server_close()


def round_trip(relay: Relay, timeout: float = 2.0) -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", relay.port), timeout=timeout) as sock:
        sock.sendall(b"ping")
        return sock.recv(16), time.monotonic() - started


def test_a_healthy_relay_passes_bytes_both_ways(relay: Relay) -> None:
    assert round_trip(relay)[0] == b"ping"


def test_slow_holds_each_chunk_for_the_delay_each_way(relay: Relay) -> None:
    relay.inject("slow", delay=0.3)
    answer, elapsed = round_trip(relay)
    assert answer == b"ping"
    assert 0.6 <= elapsed < 1.5


def test_silent_holds_bytes_until_healed_then_delivers_them_in_order(relay: Relay) -> None:
    with socket.create_connection(("127.0.0.1", relay.port), timeout=0.5) as sock:
        relay.inject("silent")
        sock.sendall(b"held")
        with pytest.raises(TimeoutError):
            sock.recv(16)
        relay.heal()
        sock.settimeout(2)
        assert sock.recv(16) == b"held"
    assert round_trip(relay)[0] == b"ping"


def test_reset_aborts_a_connection_mid_call(relay: Relay) -> None:
    with socket.create_connection(("127.0.0.1", relay.port), timeout=2) as sock:
        sock.sendall(b"one")
        assert sock.recv(16) == b"one"
        relay.inject("reset")
        sock.sendall(b"two")
        with pytest.raises(ConnectionResetError):
            sock.recv(16)


def test_cut_refuses_new_connections_and_restore_accepts_them_again(relay: Relay) -> None:
    relay.cut()
    with pytest.raises(ConnectionRefusedError):
        round_trip(relay)
    relay.restore()
    assert round_trip(relay)[0] == b"ping"
