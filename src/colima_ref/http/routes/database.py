from __future__ import annotations

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from colima_ref.http.json_response import JSONResponse
from colima_ref.http.state import services


async def postgres_query(request: Request) -> JSONResponse:
    result = await services(request).postgres.current_timestamp()
    return JSONResponse({"database": "PostgreSQL", "query": result.query, "result": result.result})


async def mysql_query(request: Request) -> JSONResponse:
    result = await services(request).mysql.current_timestamp()
    return JSONResponse({"database": "MySQL", "query": result.query, "result": result.result})


async def mongodb_query(request: Request) -> JSONResponse:
    names = await services(request).mongodb.collection_names()
    return JSONResponse({"database": "MongoDB", "collections": names, "count": len(names)})


routes: list[BaseRoute] = [
    Route("/examples/database/postgres/query", postgres_query, methods=["GET"]),
    Route("/examples/database/mysql/query", mysql_query, methods=["GET"]),
    Route("/examples/database/mongodb/query", mongodb_query, methods=["GET"]),
]
