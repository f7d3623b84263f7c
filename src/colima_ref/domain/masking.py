"""Deny-by-default masking of secret values before they leave the service.

A value is shown only when its key is on an explicit allowlist of names that describe where a
service lives, never how to get in. Anything else, including keys we have never seen, is masked:
a new field added to a secret in Vault must not become visible by accident.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MASK = "***"

# The password of a ``user:password@host`` userinfo, in a URL (``redis://:pw@h``) or alone
# (``app:pw@db``, a host variable given a whole login). It runs to the last ``@`` before a space
# or a quote, so a password holding ``@`` or ``/`` is hidden whole; what merely looks like one
# (``host:port/path@x``) is hidden too, which costs a log reader a port, never a password.
_USERINFO_PASSWORD = re.compile(r"(?:(?<=://)|(?<![^\s'\"=,;(\[]))([^\s:/@'\"]*):(?!//)[^\s'\"]+@")

# Location and identity of a service: safe to show, needed to debug a connection.
# ``url`` and ``dsn`` are deliberately absent, since they may embed a password.
NON_SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "user",
        "username",
        "host",
        "hostname",
        "port",
        "database",
        "db",
        "dbname",
        "vhost",
        "virtual_host",
        "name",
        "service",
        "region",
        "engine",
        "version",
        "ttl",
        "path",
        "scheme",
        "protocol",
        "cluster",
    }
)


def is_sensitive(key: str) -> bool:
    """Whether the value stored under ``key`` must be masked.

    Only an exact allowlisted name is in clear, compared case-insensitively and ignoring
    surrounding whitespace. Non-ASCII keys are always sensitive, so that no Unicode case
    folding can turn an unknown key into an allowlisted one.
    """
    normalised = key.strip()
    return not (normalised.isascii() and normalised.lower() in NON_SENSITIVE_KEYS)


def mask_value(key: str, value: object) -> str:
    """The text to show for ``value`` stored under ``key``: the value itself, or MASK."""
    return MASK if is_sensitive(key) else str(value)


def mask_secrets(data: Mapping[str, object]) -> dict[str, str]:
    """A copy of ``data`` with every key kept and every sensitive value replaced by MASK."""
    return {key: mask_value(key, value) for key, value in data.items()}


def hide_userinfo_passwords(text: str) -> str:
    """``text`` with the password of every ``user:password@`` login in it replaced by MASK
    (``postgresql://app:***@db/x``), for the text of an error or a log line, which may quote a
    DSN nobody registered as a secret."""
    if "@" not in text:
        return text
    return _USERINFO_PASSWORD.sub(rf"\1:{MASK}@", text)
