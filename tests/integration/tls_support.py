"""What the HTTPS tests share: the serial a handshake shows, and one kept-alive HTTPS connection."""

from __future__ import annotations

import http.client
import socket
import ssl
from pathlib import Path
from typing import Any


def client_context(cafile: Path | str) -> ssl.SSLContext:
    """A client's context trusting only ``cafile``, checking the host name as clients do."""
    return ssl.create_default_context(cafile=str(cafile))


def served_serial(port: int, cafile: Path | str) -> str:
    """The serial of the certificate a new handshake with 127.0.0.1:``port`` gets."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client_context(cafile).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return peer_serial(tls)


def peer_serial(tls: Any) -> str:
    serial: str = tls.getpeercert()["serialNumber"]
    return serial.lstrip("0")


def as_peer_serial(vault_serial: str) -> str:
    """Vault's ``1f:0a:...`` as ssl's ``getpeercert`` writes it (``1F0A...``)."""
    return vault_serial.replace(":", "").upper().lstrip("0")


class KeptAlive:
    """One HTTPS connection, kept open across requests; `same_connection` says whether every
    request so far went over the first one."""

    def __init__(self, port: int, cafile: Path | str) -> None:
        self.connection = http.client.HTTPSConnection(
            "127.0.0.1", port, context=client_context(cafile), timeout=10
        )
        self.connection.connect()
        self.first = self.connection.sock
        self.serial = peer_serial(self.first)
        self.same_connection = True

    def get(self, path: str) -> tuple[int, bytes]:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        body = response.read()
        self.same_connection &= self.connection.sock is self.first
        return response.status, body

    def close(self) -> None:
        self.connection.close()
