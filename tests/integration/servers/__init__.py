"""Real servers the tests provision accounts on, one module per service: a PostgreSQL or a
6-node Redis cluster of the tests' own, SecantusDB and OpenBao processes, and private users on the
shared MariaDB and RabbitMQ.

Each module's ``Account`` is a login of one test's own, as the contract suite drives it: the
secret to log in with, its server's loopback ports, ``rotate`` (a new password on the server, its
sessions ended, as a rotation job would), ``refuses`` and ``sessions``.
"""
