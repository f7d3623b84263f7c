"""Real servers the tests provision accounts on, one module per service: a PostgreSQL or a
6-node Redis cluster of the tests' own, SecantusDB and OpenBao processes, and private users on the
shared MariaDB and RabbitMQ.

Each module's ``Account`` is a login of one test's own, as the contract suite drives it: the
secret to log in with, its server's loopback ports, ``rotate`` (a new password on the server, its
sessions ended, as a rotation job would), ``refuses`` and ``sessions``.
"""

from __future__ import annotations

import secrets


class OwnDatabase:
    """What an ``Account`` whose user owns a database of its own name shares: that database,
    the secret naming it, and a new password for a rotation."""

    user: str
    password: str

    @property
    def database(self) -> str:
        return self.user

    def secret(self, password: str | None = None) -> dict[str, str]:
        return {"user": self.user, "password": password or self.password, "database": self.database}

    def new_password(self) -> str:
        return secrets.token_urlsafe(18)
