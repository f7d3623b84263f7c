"""The practical limit: bare Starlette doing the single driver call behind each of our endpoints.

No middleware, no error translation, no breakers, no response cache: what is left when all our
layers are taken away. Paths mirror ours so one wrk command line drives either server. Run it as
``uvicorn --app-dir bench baseline_app:app --loop uvloop --http httptools --no-access-log``
with the devstack's ``VAULT_ADDR`` and ``VAULT_TOKEN`` in the environment; the other services'
credentials are read from Vault once, at start-up, like ours. ``DB_POOL_MAX`` sizes every pool
(our default, 10, when unset) so both servers get the same number of SQL and MongoDB
connections; Redis keeps redis-py's default, no bound, because its cluster client raises
MaxConnectionsError instead of waiting once the bound is reached.

``/metrics`` answers a bare JSON body: there is no driver call behind it to compare with.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiormq
import asyncmy
import hvac
from psycopg_pool import AsyncConnectionPool
from pymongo import AsyncMongoClient
from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HOST = "127.0.0.1"
OK = {"status": "ok"}


def _read(vault: hvac.Client, path: str) -> dict[str, str]:
    data: dict[str, str] = vault.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )["data"]["data"]
    return data


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    pool_max = int(os.environ.get("DB_POOL_MAX", "10"))
    vault = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
    pg, my, mongo, red, rabbit = (
        _read(vault, p) for p in ("postgres", "mysql", "mongodb", "redis-1", "rabbitmq")
    )
    async with AsyncExitStack() as stack:
        postgres = AsyncConnectionPool(
            kwargs={
                "host": HOST,
                "port": int(os.environ.get("POSTGRES_PORT", "5432")),
                "user": pg["user"],
                "password": pg["password"],
                "dbname": pg["database"],
                "autocommit": True,
            },
            min_size=1,
            max_size=pool_max,
            open=False,
        )
        await postgres.open(wait=True)
        stack.push_async_callback(postgres.close)
        mysql = await asyncmy.create_pool(
            host=HOST,
            port=int(os.environ.get("MYSQL_PORT", "3306")),
            user=my["user"],
            password=my["password"],
            db=my["database"],
            minsize=1,
            maxsize=pool_max,
            autocommit=True,
        )

        async def close_mysql() -> None:
            mysql.close()
            await mysql.wait_closed()

        stack.push_async_callback(close_mysql)
        mongodb: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            host=HOST,
            port=int(os.environ.get("MONGODB_PORT", "27017")),
            username=mongo["user"],
            password=mongo["password"],
            authSource=mongo["database"],
            directConnection=True,
            maxPoolSize=pool_max,
        )
        stack.push_async_callback(mongodb.close)
        nodes = os.environ.get("REDIS_NODES", "127.0.0.1:7001").split(",")
        redis = RedisCluster(
            startup_nodes=[ClusterNode(*n.rsplit(":", 1)) for n in nodes],
            username=red.get("user") or None,
            password=red.get("password") or None,
            decode_responses=True,
            # redis-py's default (no bound): its cluster client refuses, not waits, past the bound.
            max_connections=2**31,
            # The default 5 s costs a task per write and a timer per read, and under uvloop with
            # 50 clients made redis-py write to connections it had just closed: the limit is
            # the fastest correct call, so the baseline goes without, as our adapter does.
            socket_timeout=None,
        )
        await redis.initialize()
        stack.push_async_callback(redis.aclose)
        await redis.set("bench:baseline", "value")
        vhost = rabbit.get("vhost") or "dev_vhost"
        amqp = await aiormq.connect(
            f"amqp://{rabbit['user']}:{rabbit['password']}@{HOST}:"
            f"{os.environ.get('RABBITMQ_PORT', '5672')}/{vhost}"
        )
        stack.push_async_callback(amqp.close)
        channel = await amqp.channel(publisher_confirms=True)
        declared: set[str] = set()
        yield {
            "vault": vault,
            "postgres": postgres,
            "mysql": mysql,
            "mongodb": mongodb[mongo["database"]],
            "redis": redis,
            "channel": channel,
            "declared": declared,
        }


async def health(request: Request) -> JSONResponse:
    return JSONResponse(OK)


async def vault_secret(request: Request) -> JSONResponse:
    vault: hvac.Client = request.state.vault
    data = await asyncio.to_thread(_read, vault, request.path_params["service"])
    return JSONResponse({"service": request.path_params["service"], "keys": sorted(data)})


async def _postgres(request: Request) -> str:
    pool: AsyncConnectionPool[Any] = request.state.postgres
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT current_timestamp")
        row = await cursor.fetchone()
    return str(row[0] if row else None)


async def _mysql(request: Request) -> str:
    async with request.state.mysql.acquire() as conn, conn.cursor() as cursor:
        await cursor.execute("SELECT NOW()")
        row = await cursor.fetchone()
    return str(row[0])


async def _mongodb(request: Request) -> list[str]:
    names: list[str] = await request.state.mongodb.list_collection_names()
    return names


async def _redis_info(request: Request) -> str:
    redis: RedisCluster = request.state.redis
    text: str = await redis.execute_command(
        "CLUSTER", "INFO", target_nodes=redis.get_default_node()
    )
    return text


async def _vault_health(request: Request) -> bool:
    vault: hvac.Client = request.state.vault
    return bool(await asyncio.to_thread(vault.sys.is_initialized))


async def postgres_query(request: Request) -> JSONResponse:
    return JSONResponse({"database": "PostgreSQL", "result": await _postgres(request)})


async def mysql_query(request: Request) -> JSONResponse:
    return JSONResponse({"database": "MySQL", "result": await _mysql(request)})


async def mongodb_query(request: Request) -> JSONResponse:
    names = await _mongodb(request)
    return JSONResponse({"database": "MongoDB", "collections": names, "count": len(names)})


async def cluster_info(request: Request) -> JSONResponse:
    return JSONResponse({"info": await _redis_info(request)})


async def cache_get(request: Request) -> JSONResponse:
    redis: RedisCluster = request.state.redis
    key = request.path_params["key"]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.ttl(key)
        value, ttl = await pipe.execute()
    return JSONResponse({"key": key, "value": value, "ttl": ttl})


async def cache_set(request: Request) -> JSONResponse:
    redis: RedisCluster = request.state.redis
    key, value = request.path_params["key"], request.query_params["value"]
    ttl = int(request.query_params.get("ttl", "300"))
    await redis.set(key, value, ex=ttl)
    return JSONResponse({"key": key, "value": value, "ttl": ttl, "action": "set"})


async def publish(request: Request) -> JSONResponse:
    queue = request.query_params["queue_name"]
    body = await request.body()
    channel: aiormq.abc.AbstractChannel = request.state.channel
    if queue not in request.state.declared:
        await channel.queue_declare(queue, durable=True)
        request.state.declared.add(queue)
    await channel.basic_publish(
        body, routing_key=queue, properties=aiormq.spec.Basic.Properties(delivery_mode=2)
    )
    return JSONResponse({"queue": queue, "action": "published"})


async def all_checks(request: Request) -> JSONResponse:
    checks: dict[str, Callable[[Request], Awaitable[object]]] = {
        "vault": _vault_health,
        "postgres": _postgres,
        "mysql": _mysql,
        "mongodb": _mongodb,
        "redis": _redis_info,
        "rabbitmq": _rabbit_ping,
    }
    await asyncio.gather(*(check(request) for check in checks.values()))
    return JSONResponse({"status": "healthy", "services": sorted(checks)})


async def _rabbit_ping(request: Request) -> bool:
    channel: aiormq.abc.AbstractChannel = request.state.channel
    return not channel.is_closed


async def metrics(request: Request) -> Response:
    return JSONResponse(OK)


app = Starlette(
    routes=[
        Route("/health/", health),
        Route("/health/all", all_checks),
        Route("/examples/vault/secret/{service}", vault_secret),
        Route("/examples/cache/{key}", cache_get, methods=["GET"]),
        Route("/examples/cache/{key}", cache_set, methods=["POST"]),
        Route("/examples/database/postgres/query", postgres_query),
        Route("/examples/database/mysql/query", mysql_query),
        Route("/examples/database/mongodb/query", mongodb_query),
        Route("/redis/cluster/info", cluster_info),
        Route("/metrics", metrics),
        Route("/examples/messaging/publish", publish, methods=["POST"]),
    ],
    lifespan=lifespan,
)
