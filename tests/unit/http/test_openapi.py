"""The packaged OpenAPI document is valid 3.1, and it describes exactly what the app serves."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from starlette.endpoints import HTTPEndpoint
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.testclient import TestClient

from colima_ref import __version__
from colima_ref.adapters import memory
from colima_ref.http.app import create_app
from colima_ref.http.docs import openapi_document
from colima_ref.ports.services import Services
from colima_ref.settings import Settings

DOC: dict[str, Any] = json.loads(openapi_document())
ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "trace")
# The document describes the API; the routes that serve the document itself are not part of it.
DOCUMENT_ROUTES = {"/openapi.json", "/docs", "/redoc"}
# A health check that finds its service down answers 503 with the health report, not an error.
HEALTH_REPORTS = {
    "/health/all": "#/components/schemas/HealthReport",
    "/health/ready": "#/components/schemas/Readiness",
    **{
        f"/health/{name}": "#/components/schemas/ServiceHealth"
        for name in ("vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq")
    },
}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOC["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


def _responses() -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    for path, method, operation in _operations():
        for status, response in operation["responses"].items():
            yield path, method, status, _resolve(response)


def _schema_validator(schema: dict[str, Any]) -> OAS31Validator:
    # Local "#/components/..." references resolve against the root schema, so the components
    # ride along beside the schema being checked.
    return OAS31Validator({**schema, "components": DOC["components"]})


def _route_methods(route: Route) -> set[str]:
    if route.methods is not None:
        return set(route.methods) - {"HEAD"}
    endpoint = route.endpoint
    assert inspect.isclass(endpoint), f"{route.path}: an ASGI app route hides its methods"
    assert issubclass(endpoint, HTTPEndpoint), f"{route.path}: unknown endpoint kind {endpoint!r}"
    # HTTPEndpoint answers HEAD with its get(), as Route does for a GET function.
    return {m.upper() for m in HTTP_METHODS if callable(getattr(endpoint, m, None))}


def _served(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount):
            if not isinstance(route.app, StaticFiles):
                yield from _served(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path)
            if path not in DOCUMENT_ROUTES:
                yield from ((path, method) for method in _route_methods(route))
        else:
            raise AssertionError(f"unexpected route type {route!r}")


@asynccontextmanager
async def _in_memory() -> AsyncIterator[Services]:
    yield memory.services()


def test_document_is_valid_openapi_3_1() -> None:
    validate(DOC)
    assert DOC["openapi"].startswith("3.1.")


def test_document_version_is_the_package_version() -> None:
    assert DOC["info"]["version"] == __version__


def test_app_serves_exactly_the_documented_operations() -> None:
    app = create_app(_in_memory, Settings.from_env({}).http)

    served = set(_served(app.routes))
    documented = {(path, method.upper()) for path, method, _ in _operations()}

    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def test_document_covers_every_endpoint_of_the_specification() -> None:
    services = ("vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq")
    expected = {
        ("/", "get"),
        ("/health/", "get"),
        ("/health/ready", "get"),  # not in the specification: readiness (issue 4)
        ("/health/all", "get"),
        *((f"/health/{name}", "get") for name in services),
        ("/examples/vault/secret/{service_name}", "get"),
        ("/examples/vault/secret/{service_name}/{key}", "get"),
        *((f"/examples/database/{db}/query", "get") for db in ("postgres", "mysql", "mongodb")),
        ("/examples/cache/{key}", "get"),
        ("/examples/cache/{key}", "post"),
        ("/examples/cache/{key}", "delete"),
        ("/examples/messaging/publish", "post"),
        ("/examples/messaging/queue/{queue_name}/info", "get"),
        ("/redis/cluster/nodes", "get"),
        ("/redis/cluster/slots", "get"),
        ("/redis/cluster/info", "get"),
        ("/redis/nodes/{node_name}/info", "get"),
        ("/metrics", "get"),
    }

    assert {(path, method) for path, method, _ in _operations()} == expected


def test_every_error_response_has_the_uniform_error_body() -> None:
    for path, method, status, response in _responses():
        if int(status) < 400:
            continue
        schema = response["content"]["application/json"]["schema"]
        if status == "503" and path in HEALTH_REPORTS:
            assert schema == {"$ref": HEALTH_REPORTS[path]}, f"{method} {path} {status}"
        else:
            assert schema == ERROR_SCHEMA, f"{method} {path} {status}"


def test_every_operation_documents_rate_limiting_and_internal_errors() -> None:
    for path, method, operation in _operations():
        assert {"429", "500"} <= set(operation["responses"]), f"{method} {path}"


def test_every_operation_with_parameters_or_a_body_documents_validation_failure() -> None:
    for path, method, operation in _operations():
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in operation["responses"], f"{method} {path}"


def test_every_response_carries_the_request_id_header() -> None:
    for path, method, status, response in _responses():
        assert "X-Request-ID" in response.get("headers", {}), f"{method} {path} {status}"


def test_error_schema_requires_the_five_uniform_fields() -> None:
    error = DOC["components"]["schemas"]["Error"]

    assert set(error["required"]) == {"error", "message", "status_code", "details", "request_id"}


def test_parameters_carry_the_specified_rules() -> None:
    params = {name: p["schema"] for name, p in DOC["components"]["parameters"].items()}

    assert params["ServiceName"] == {
        "type": "string",
        "pattern": "^[a-zA-Z0-9_-]+$",
        "minLength": 1,
        "maxLength": 50,
    }
    assert params["SecretKey"]["maxLength"] == 100
    assert params["CacheKey"]["pattern"] == "^[a-zA-Z0-9_:.-]+$"
    assert params["CacheKey"]["maxLength"] == 200
    assert params["CacheValue"]["maxLength"] == 10000
    assert (params["CacheTtl"]["minimum"], params["CacheTtl"]["maximum"]) == (1, 86400)
    for queue in ("QueueNameQuery", "QueueNamePath"):
        assert params[queue]["pattern"] == "^(?!amq\\.)[a-zA-Z0-9_.-]+$"
        assert (params[queue]["minLength"], params[queue]["maxLength"]) == (1, 100)


def test_publish_body_must_be_a_non_empty_json_object() -> None:
    body = DOC["paths"]["/examples/messaging/publish"]["post"]["requestBody"]
    validator = _schema_validator(body["content"]["application/json"]["schema"])

    assert body["required"] is True
    assert validator.is_valid({"type": "email"})
    assert not validator.is_valid({})
    assert not validator.is_valid(["not", "an", "object"])


@pytest.mark.parametrize(
    ("value", "valid"),
    [(3599, True), ("no expiration", True), (None, True), ("forever", False), (1.5, False)],
)
def test_cache_read_ttl_is_seconds_or_no_expiration_or_null(value: object, valid: bool) -> None:
    ttl = DOC["components"]["schemas"]["CacheRead"]["properties"]["ttl"]

    assert _schema_validator(ttl).is_valid(value) is valid


def test_every_example_matches_its_schema() -> None:
    checked = 0
    for path, method, status, response in _responses():
        for media in response.get("content", {}).values():
            if "example" in media:
                errors = list(_schema_validator(media["schema"]).iter_errors(media["example"]))
                assert errors == [], f"{method} {path} {status}: {errors[0].message}"
                checked += 1
    for name, parameter in DOC["components"]["parameters"].items():
        assert _schema_validator(parameter["schema"]).is_valid(parameter["example"]), name
        checked += 1

    assert checked > len(DOC["paths"])


# (method, documented path, concrete request, keyword arguments for the client)
Call = tuple[str, str, str, dict[str, Any]]


def _get(path: str, url: str | None = None) -> Call:
    return ("get", path, url or path, {})


SECRET = "/examples/vault/secret/{service_name}"
CACHE = "/examples/cache/{key}"
PUBLISH = "/examples/messaging/publish"
QUEUE = "/examples/messaging/queue/{queue_name}/info"
NODE = "/redis/nodes/{node_name}/info"
CALLS: dict[str, list[Call]] = {
    "api info": [_get("/")],
    "liveness": [_get("/health/")],
    "readiness": [_get("/health/ready")],
    "aggregate health": [_get("/health/all")],
    **{
        f"{name} health": [_get(f"/health/{name}")]
        for name in ("vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq")
    },
    "vault secret": [
        _get(SECRET, "/examples/vault/secret/postgres"),
        _get(SECRET, "/examples/vault/secret/nosuch"),
        _get(SECRET, "/examples/vault/secret/b@d"),
    ],
    "vault secret key": [
        _get(SECRET + "/{key}", "/examples/vault/secret/postgres/user"),
        _get(SECRET + "/{key}", "/examples/vault/secret/postgres/nosuch"),
    ],
    **{
        f"{db} query": [_get(f"/examples/database/{db}/query")]
        for db in ("postgres", "mysql", "mongodb")
    },
    "cache round trip": [
        _get(CACHE, "/examples/cache/k1"),
        ("post", CACHE, "/examples/cache/k1?value=v&ttl=60", {}),
        _get(CACHE, "/examples/cache/k1"),
        ("post", CACHE, "/examples/cache/k2?value=forever", {}),
        _get(CACHE, "/examples/cache/k2"),
        ("post", CACHE, "/examples/cache/k1?value=v&ttl=0", {}),
        ("delete", CACHE, "/examples/cache/k1", {}),
        ("delete", CACHE, "/examples/cache/k1", {}),
    ],
    "messaging": [
        ("post", PUBLISH, f"{PUBLISH}?queue_name=orders", {"json": {"id": 1}}),
        ("post", PUBLISH, f"{PUBLISH}?queue_name=orders", {"json": {}}),
        ("post", PUBLISH, f"{PUBLISH}?queue_name=orders", {"content": b"[1]"}),
        _get(QUEUE, "/examples/messaging/queue/orders/info"),
        _get(QUEUE, "/examples/messaging/queue/unknown/info"),
    ],
    "cluster nodes": [_get("/redis/cluster/nodes")],
    "cluster slots": [_get("/redis/cluster/slots")],
    "cluster info": [_get("/redis/cluster/info")],
    "node info": [_get(NODE, "/redis/nodes/redis-1/info"), _get(NODE, "/redis/nodes/redis-9/info")],
    "metrics": [_get("/metrics")],
}


@pytest.mark.parametrize("calls", list(CALLS.values()), ids=list(CALLS))
def test_in_memory_app_answers_as_documented(client: TestClient, calls: list[Call]) -> None:
    """Each answer's status is documented for its operation and its body matches that schema."""
    for method, path, url, kwargs in calls:
        response = client.request(method.upper(), url, **kwargs)
        documented = DOC["paths"][path][method]["responses"]
        where = f"{method.upper()} {url} -> {response.status_code}"

        assert str(response.status_code) in documented, f"{where}: status not documented"
        content = _resolve(documented[str(response.status_code)])["content"]
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in content, f"{where}: {media_type} not documented"
        if media_type == "application/json":
            errors = list(
                _schema_validator(content[media_type]["schema"]).iter_errors(response.json())
            )
            assert errors == [], f"{where}: {errors[0].message}"
