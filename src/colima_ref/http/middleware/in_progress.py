"""``http_requests_in_progress``, counted by each route while it answers."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from colima_ref.http.middleware.request_context import method_label
from colima_ref.observability.metrics import Metrics


class RequestsInProgressMiddleware:
    """Route-level middleware: counts the request in ``http_requests_in_progress`` under its
    method and route template while the route answers.

    Route-level because the gauge needs the template while the request runs, and Starlette's
    router names the route (``scope["route"]``) only when it hands the request to it. A request
    no route takes is answered by the router at once, so it is never in progress for long.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._metrics.http_route(method_label(scope), scope["route"].path)
        route.started()
        try:
            await self.app(scope, receive, send)
        finally:
            route.stopped()
