from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from colima_ref.observability.metrics import CONTENT_TYPE, Metrics


async def metrics(request: Request) -> Response:
    # Rendered on the loop, not in a thread: the counters it reads are written by the loop.
    current: Metrics = request.state.metrics
    return Response(current.render(), media_type=CONTENT_TYPE)


routes: list[BaseRoute] = [Route("/metrics", metrics, methods=["GET"])]
