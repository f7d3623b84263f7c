"""Who the client is: the socket peer, or what trusted proxies say in X-Forwarded-For."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import Scope

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN_CLIENT = "unknown"


def _is_trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _forwarded_hops(scope: Scope) -> list[str]:
    # Several X-Forwarded-For headers are one list in order (RFC 9110, section 5.3).
    values = [
        value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"
    ]
    return [hop.strip() for hop in ",".join(values).split(",") if hop.strip()]


def client_ip(scope: Scope, trusted: Sequence[IPNetwork]) -> str:
    """The client address of an HTTP scope.

    The socket peer, unless it is a trusted proxy: then X-Forwarded-For is walked from the
    right, and the first hop that is not a trusted proxy is the client. A client can write
    anything at the left of the header, so nothing left of that hop is believed. A hop that
    is not an IP address stops the walk at the proxy that reported it.
    """
    client = scope.get("client")
    peer: str = client[0] if client else UNKNOWN_CLIENT
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    current = peer
    for hop in reversed(_forwarded_hops(scope)):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return current
        current = hop
        if not _is_trusted(hop, trusted):
            return hop
    return current
