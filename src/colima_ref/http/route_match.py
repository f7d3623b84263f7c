"""Which route a request is for, before the router has run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

UNMATCHED_ROUTE = "<unmatched>"
# Rate limit and response cache both ask; the answer is kept in the scope so routes are
# scanned once per request (an ASGI extension key, namespaced by package).
_SCOPE_KEY = "colima_ref.route_match"


def match_route(scope: Scope) -> tuple[str, Mapping[str, Any]]:
    """The path template and path params of the route the app would pick for ``scope``.

    Middleware outside the router keys limits and caches by template, so that a scan of
    random paths shares one counter (``UNMATCHED_ROUTE``) instead of creating one per path.
    A route that matches the path but not the method (a 405) still names its template.
    """
    known: tuple[str, Mapping[str, Any]] | None = scope.get(_SCOPE_KEY)
    if known is not None:
        return known
    found = _scan(scope)
    scope[_SCOPE_KEY] = found
    return found


def _scan(scope: Scope) -> tuple[str, Mapping[str, Any]]:
    app = scope.get("app")
    routes: list[BaseRoute] = getattr(app, "routes", [])
    partial: tuple[str, Mapping[str, Any]] | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        template = getattr(route, "path", UNMATCHED_ROUTE)
        found = (template, child.get("path_params", {}))
        if match is Match.FULL:
            return found
        partial = partial or found
    return partial or (UNMATCHED_ROUTE, {})
