"""Behaviour every DocumentDatabase shares."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from colima_ref.ports.databases import DocumentDatabase

from .conftest import open_adapter


@pytest.fixture(params=["memory", pytest.param("mongodb", marks=pytest.mark.mongodb)])
async def document_database(request: pytest.FixtureRequest) -> AsyncIterator[DocumentDatabase]:
    async with open_adapter(DocumentDatabase, request.param) as database:
        yield database


async def test_collection_names_are_distinct_non_empty_strings(
    document_database: DocumentDatabase,
) -> None:
    names = await document_database.collection_names()

    assert all(isinstance(name, str) and name for name in names)
    assert len(set(names)) == len(names)
