"""Which route a request is for, asked before the router runs.

Middleware outside the router keys metrics, rate limits, cached responses and the log line by
route template, so that a scan of random paths shares one series instead of creating one per path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

UNMATCHED_ROUTE = "<unmatched>"
# Every middleware asks; the answer is kept in the scope (an ASGI extension key, namespaced by
# package) so the routes are matched once per request.
_SCOPE_KEY = "colima_ref.route_match"

RouteMatch = tuple[str, Mapping[str, Any]]


def match_route(scope: Scope) -> RouteMatch:
    """The path template and path params of the route the app in ``scope`` will pick, or
    ``UNMATCHED_ROUTE`` and no params when no route has the path.

    Asked as Starlette's router asks, through ``route.matches`` in route order: the first full
    match, else the first route that has the path but not the method, so a 405 still names its
    template.
    """
    found: RouteMatch | None = scope.get(_SCOPE_KEY)
    if found is None:
        found = scope[_SCOPE_KEY] = _match(getattr(scope.get("app"), "routes", ()), scope)
    return found


def _match(routes: Iterable[BaseRoute], scope: Scope) -> RouteMatch:
    partial: RouteMatch | None = None
    for route in routes:
        match, child_scope = route.matches(scope)
        if match is Match.NONE:
            continue
        found = (getattr(route, "path", UNMATCHED_ROUTE), child_scope.get("path_params", {}))
        if match is Match.FULL:
            return found
        partial = partial or found
    return partial or (UNMATCHED_ROUTE, {})
