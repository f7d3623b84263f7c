"""HTTP request metrics: count, duration and requests in progress per method and route template."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colima_ref.http.middleware.request_context import UNMATCHED_ROUTE, error_type_of
from colima_ref.observability.metrics import Metrics

# Anything else a client invents would be a new series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"})
OTHER_METHOD = "OTHER"


class RouteTemplates:
    """The route template the router will pick for a path, known before the router runs.

    Starlette's own ``route.matches`` costs 3-23 us a request on our routes; this costs a dict
    lookup for a path no other route can match, else one compiled regex per route, in the
    router's order (first route that takes the method, else the first that has the path).
    """

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._scan: list[tuple[re.Pattern[str], frozenset[str] | None, str]] = []
        for route in routes:
            regex, template = getattr(route, "path_regex", None), getattr(route, "path", None)
            if isinstance(regex, re.Pattern) and isinstance(template, str):
                self._scan.append((regex, _methods(route), template))
        self._unique: dict[str, str] = {}
        for *_, template in self._scan:
            if "{" not in template and sum(1 for r, _, _ in self._scan if r.match(template)) == 1:
                self._unique[template] = template

    def resolve(self, method: str, path: str) -> str:
        """The template of the route for ``method`` and ``path``, or ``UNMATCHED_ROUTE``."""
        template = self._unique.get(path)
        if template is not None:
            return template
        partial = None
        for regex, methods, candidate in self._scan:
            if regex.match(path):
                if methods is None or method in methods:
                    return candidate
                partial = partial or candidate
        return partial or UNMATCHED_ROUTE


def _methods(route: BaseRoute) -> frozenset[str] | None:
    methods = getattr(route, "methods", None)
    return frozenset(methods) if methods else None


class MetricsMiddleware:
    """Records ``http_requests_total``, ``http_request_duration_seconds``,
    ``http_requests_in_progress`` and ``http_errors_total`` for every HTTP request.

    It wraps Starlette's ServerErrorMiddleware (see ``http/app.py``), so an unhandled exception
    counts as the 500 the client got, with the exception's class as its error type.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self._metrics = metrics
        self._templates = RouteTemplates(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        method = scope["method"]
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        path = scope["path"]
        root_path = scope.get("root_path")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :] or "/"
        route = self._metrics.http_route(method, self._templates.resolve(method, path))
        route.started()
        started = time.perf_counter()
        status_code = 500
        escaped: BaseException | None = None

        async def send_with_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except BaseException as exc:
            escaped = exc
            raise
        finally:
            route.finished(status_code, time.perf_counter() - started)
            error_type = error_type_of(scope, status_code, escaped)
            if error_type is not None:
                self._metrics.http_error(error_type, status_code)
