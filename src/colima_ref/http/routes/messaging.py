from __future__ import annotations

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from colima_ref.domain import validation
from colima_ref.http.convert import converter
from colima_ref.http.json_response import JSONResponse
from colima_ref.http.state import services


async def publish(request: Request) -> JSONResponse:
    names = request.query_params.getlist("queue_name")
    queue = validation.queue_name(validation.single("queue_name", names))
    body = await request.body()
    message = validation.message(body)
    await services(request).broker.publish(queue, body)
    return JSONResponse({"queue": queue, "message": message, "action": "published"})


async def queue_info(request: Request) -> JSONResponse:
    queue = validation.queue_name(request.path_params["queue_name"])
    info = await services(request).broker.queue_info(queue)
    return JSONResponse(converter.unstructure(info))


routes: list[BaseRoute] = [
    Route("/examples/messaging/publish", publish, methods=["POST"]),
    Route("/examples/messaging/queue/{queue_name}/info", queue_info, methods=["GET"]),
]
