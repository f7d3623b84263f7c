"""Create or re-password the devstack's MongoDB users and collections (idempotent).

root (role root) lives in `admin`; dev_admin (dbOwner) lives in `dev_database`.

Run by scripts/devstack/mongodb.sh with the project's venv Python. Passwords come from the
environment (DEVSTACK_MONGODB_PASSWORD, DEVSTACK_MONGODB_ROOT_PASSWORD), never from argv, so `ps`
does not show them.

    mongodb_accounts.py PORT bootstrap  # no --auth yet: create root and dev_admin
    mongodb_accounts.py PORT apply      # with --auth: log in as root, converge dev_admin

Exit status 3 means the root login was refused (a server this script did not provision).
"""

from __future__ import annotations

import os
import sys

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

ROOT_USER = "root"
DEV_USER = "dev_admin"
DEV_DATABASE = "dev_database"
COLLECTIONS = ("users", "sessions", "logs")
AUTH_FAILED = 18


Document = dict[str, object]


def ensure_user(
    database: Database[Document], name: str, password: str, roles: list[dict[str, str]]
) -> None:
    """Create the user in `database`, or set its password and roles when it already exists."""
    found = database.command("usersInfo", name)["users"]
    verb = "updateUser" if found else "createUser"
    database.command(verb, name, pwd=password, roles=roles)


def ensure_collections(client: MongoClient[Document]) -> None:
    """Create the demo collections so the MongoDB query endpoint lists real names."""
    database = client[DEV_DATABASE]
    existing = set(database.list_collection_names())
    for name in COLLECTIONS:
        if name not in existing:
            database.create_collection(name)


def dev_account_in_place(port: int, password: str) -> bool:
    """Whether dev_admin logs in and sees every demo collection, so nothing needs changing."""
    client: MongoClient[Document] = MongoClient(
        "127.0.0.1",
        port,
        serverSelectionTimeoutMS=5000,
        username=DEV_USER,
        password=password,
        authSource=DEV_DATABASE,
    )
    try:
        return set(COLLECTIONS) <= set(client[DEV_DATABASE].list_collection_names())
    except OperationFailure:
        return False
    finally:
        client.close()


def main(port: int, mode: str) -> int:
    dev_password = os.environ["DEVSTACK_MONGODB_PASSWORD"]
    root_password = os.environ["DEVSTACK_MONGODB_ROOT_PASSWORD"]
    client: MongoClient[Document] = MongoClient(
        "127.0.0.1",
        port,
        serverSelectionTimeoutMS=5000,
        username=None if mode == "bootstrap" else ROOT_USER,
        password=None if mode == "bootstrap" else root_password,
        authSource="admin",
    )
    try:
        if mode == "apply" and dev_account_in_place(port, dev_password):
            return 0
        if mode == "bootstrap":
            ensure_user(client.admin, ROOT_USER, root_password, [{"role": "root", "db": "admin"}])
        # dev_admin lives in dev_database, so the secret's `database` is also its authSource
        # (pymongo's default for mongodb://user:pass@host:port/dev_database).
        dev_roles = [{"role": "dbOwner", "db": DEV_DATABASE}]
        ensure_user(client[DEV_DATABASE], DEV_USER, dev_password, dev_roles)
        ensure_collections(client)
    except OperationFailure as exc:
        if exc.code == AUTH_FAILED:
            print("mongodb: the root login was refused", file=sys.stderr)
            return 3
        print(f"mongodb: command failed with code {exc.code}", file=sys.stderr)
        return 1
    except PyMongoError as exc:
        print(f"mongodb: {type(exc).__name__}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2]))
