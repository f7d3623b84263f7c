from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from colima_ref.ports.services import Services

ErrorBody = Callable[[httpx2.Response, int, str], dict[str, Any]]


@pytest.mark.parametrize(
    ("path", "label", "database"),
    [("postgres", "PostgreSQL", "postgres"), ("mysql", "MySQL", "mysql")],
)
async def test_a_sql_query_answers_the_database_the_query_and_its_result(
    client: TestClient, services: Services, path: str, label: str, database: str
) -> None:
    expected = await getattr(services, database).current_timestamp()

    response = client.get(f"/examples/database/{path}/query")

    assert response.status_code == 200
    body = response.json()
    assert body["database"] == label
    assert body["query"] == expected.query
    assert body["result"]


async def test_mongodb_query_lists_the_collections_and_counts_them(
    client: TestClient, services: Services
) -> None:
    collections = await services.mongodb.collection_names()

    response = client.get("/examples/database/mongodb/query")

    assert response.status_code == 200
    assert response.json() == {
        "database": "MongoDB",
        "collections": collections,
        "count": len(collections),
    }


@pytest.mark.parametrize("database", ["postgres", "mysql", "mongodb"])
def test_a_database_that_is_down_is_503(
    client: TestClient, services: Services, error_body: ErrorBody, database: str
) -> None:
    getattr(services, database).failing = True

    response = client.get(f"/examples/database/{database}/query")

    error_body(response, 503, "DatabaseConnectionError")
