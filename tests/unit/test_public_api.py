"""The library face: ``colima_ref.__all__`` is the public API the README documents, each name
importable from the top level without loading a live driver, and an app built from it holds no
Vault login."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import types
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send
from structlog.testing import capture_logs

import colima_ref

README = Path(__file__).resolve().parents[2] / "README.md"

PUBLIC_NAMES = frozenset(
    {
        "__version__",
        "create_app",
        "build_app",
        "open_services",
        "Settings",
        "HttpSettings",
        "SettingsError",
        "Services",
        # the ports
        "SecretStore",
        "SqlDatabase",
        "DocumentDatabase",
        "Cache",
        "ClusterTopology",
        "MessageBroker",
        "HealthProbe",
        "BreakerStatus",
        # the errors
        "BaseAPIException",
        "ServiceUnavailableError",
        "VaultUnavailableError",
        "DatabaseConnectionError",
        "CacheConnectionError",
        "MessageQueueError",
        "CircuitBreakerError",
        "ConfigurationError",
        "ValidationError",
        "ResourceNotFoundError",
        "AuthenticationError",
        "RateLimitError",
        "OperationTimeoutError",
        "memory",
    }
)

LIVE_DRIVERS = ("psycopg", "psycopg_pool", "pymongo", "hvac", "requests", "asyncmy", "aiormq")

VAULT_LOGIN = {
    "VAULT_TOKEN": "vault-token-canary-41d",
    "VAULT_ROLE_ID": "role-id-canary-41d",
    "VAULT_SECRET_ID": "secret-id-canary-41d",
}
STORAGE_PASSWORD = "storage-password-canary-41d"


def _library_section() -> str:
    text = README.read_text()
    start = text.index("## Use it as a library")
    return text[start : text.index("\n## ", start)]


def _documented_names() -> set[str]:
    """The names in the first cell of each row of the library section's table."""
    names: set[str] = set()
    for line in _library_section().splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`(\w+)`", line.split("|")[1]))
    return names


def _first_python_example() -> str:
    match = re.search(r"```python\n(.*?)```", _library_section(), flags=re.DOTALL)
    assert match is not None
    return match.group(1)


def _run_python(code: str) -> str:
    """``code``'s stdout in a fresh interpreter on the memory backend (this one has imported every
    adapter for other tests)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VAULT_ADDR", "COLIMA_BACKEND")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    return result.stdout


def test_all_lists_exactly_the_names_the_readme_documents() -> None:
    assert len(colima_ref.__all__) == len(set(colima_ref.__all__))
    assert set(colima_ref.__all__) == PUBLIC_NAMES
    assert _documented_names() == PUBLIC_NAMES


def test_every_public_name_resolves_from_the_top_level() -> None:
    namespace: dict[str, Any] = {}
    exec("from colima_ref import *", namespace)

    assert namespace.keys() >= PUBLIC_NAMES
    assert set(dir(colima_ref)) >= PUBLIC_NAMES
    assert issubclass(namespace["VaultUnavailableError"], namespace["BaseAPIException"])
    assert namespace["memory"].services().backend == "memory"
    assert namespace["Settings"].from_env({}).http.app_name == "Colima Services Reference API"
    with pytest.raises(AttributeError, match="no_such_name"):
        colima_ref.no_such_name  # noqa: B018


def test_importing_the_package_loads_no_driver_and_its_names_no_live_one() -> None:
    drivers = (*LIVE_DRIVERS, "redis")
    code = f"""
import sys
import colima_ref
print("on import:", *(name for name in {drivers!r} if name in sys.modules))
for name in {sorted(PUBLIC_NAMES)!r}:
    getattr(colima_ref, name)
print("with every name:", *(name for name in {LIVE_DRIVERS!r} if name in sys.modules))
"""
    lines = _run_python(code).splitlines()

    # Every name loaded is fine: aiobreaker, under the breakers, imports redis whenever it can.
    assert lines == ["on import:", "with every name:"]


def test_the_readme_library_example_runs_on_top_level_imports_only() -> None:
    example = _first_python_example()
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(example))
        if isinstance(node, ast.ImportFrom | ast.Import)
        for alias in node.names
    }
    # colima_ref itself, never one of its modules.
    assert {name for name in imported if name and name.startswith("colima_ref")} == {"colima_ref"}

    checks = f"""
import sys
from starlette.testclient import TestClient
with TestClient(app) as client:
    print(client.get("/").json()["name"])
    print(client.get("/examples/vault/secret/postgres/user").json()["value"])
print("loaded:", *(name for name in {LIVE_DRIVERS!r} if name in sys.modules))
"""
    printed = _run_python(example + checks).splitlines()
    # structlog's default set-up prints its lines to stdout too, each starting with a timestamp.
    assert [line for line in printed if not re.match(r"\d{4}-\d\d-\d\d ", line)] == [
        "dev_admin",
        "Orders",
        "dev_admin",
        "loaded:",
    ]


def _strings_reachable(root: object) -> Iterator[str]:
    """Every string held by ``root`` or by what it holds (containers, attributes, slots); code
    objects are not followed, since the app only keeps its Vault login to open the services."""
    seen: set[int] = set()
    stack: list[object] = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, str):
            yield item
            continue
        if isinstance(item, bytes | bytearray):
            yield item.decode("latin-1")
            continue
        if isinstance(item, type | types.ModuleType | types.FunctionType | types.MethodType):
            continue
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset | deque):
            stack.extend(item)
        if hasattr(item, "__dict__"):
            stack.extend(vars(item).values())
        for cls in type(item).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                stack.append(getattr(item, slot, None))


def _answers(client: TestClient, routes: list[Any]) -> Iterator[str]:
    """Each route's answer, headers and body, its path parameters filled with sample values."""
    samples = {"service_name": "postgres", "key": "user", "queue_name": "q", "node_name": "redis-1"}
    for route in routes:
        if not isinstance(route, Route):
            continue
        path = re.sub(r"{(\w+)}", lambda m: samples.get(m.group(1), "x"), route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            response = client.request(method, path, params={"value": "v"})
            yield f"{method} {path} {response.status_code} {response.headers} {response.text}"
    response = client.get("/no/such/route")
    yield f"{response.status_code} {response.headers} {response.text}"


def test_the_app_its_state_and_its_answers_hold_no_vault_login() -> None:
    settings = colima_ref.Settings.from_env(
        {
            "COLIMA_BACKEND": "memory",
            **VAULT_LOGIN,
            # Nothing listens on port 1: the limiter fails open, and its URL must not show.
            "RATE_LIMIT_STORAGE_URL": f"redis://:{STORAGE_PASSWORD}@127.0.0.1:1/0",
        }
    )
    app = colima_ref.build_app(settings)
    lifespan_state: dict[str, Any] = {}

    async def recording_state(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            lifespan_state.update(scope["state"])
        await app(scope, receive, send)

    with TestClient(recording_state) as client, capture_logs() as entries:
        answers = list(_answers(client, app.routes))

    assert lifespan_state
    held = list(_strings_reachable([app.state, lifespan_state]))
    rendered = [*answers, repr(lifespan_state), repr(app.state), str(entries)]
    for canary in VAULT_LOGIN.values():
        assert not [text for text in held if canary in text]
        assert not [text for text in rendered if canary in text]
    # The limiter needs its storage password: held, but never shown.
    assert [text for text in held if STORAGE_PASSWORD in text]
    assert not [text for text in rendered if STORAGE_PASSWORD in text]
    assert lifespan_state["settings"] == settings.http
