"""Starlette's router, handing a request straight to the route already found for it."""

from __future__ import annotations

from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

from colima_ref.http.route_match import match_route, matched_route


def full_match(route: BaseRoute, scope: Scope) -> Scope | None:
    """What ``route.matches(scope)`` gives for a full match (the child scope), else None,
    for the route `match_route` found for ``scope``.

    A plain `Route` that takes the method gets its child scope from the path params
    `match_route` already parsed (plain str params, checked when its table was built): the
    same dict as Starlette's, without matching the path again. Any other route is asked.
    """
    if type(route) is Route and (not route.methods or scope["method"] in route.methods):
        path_params = dict(scope.get("path_params", {}))
        path_params.update(match_route(scope)[1])
        return {"endpoint": route.endpoint, "path_params": path_params}
    match, child_scope = route.matches(scope)
    return child_scope if match is Match.FULL else None


class IndexedRouter(Router):
    """Dispatches to the route `match_route` found (a dict lookup for a static path) instead of
    asking every route in turn.

    Starlette's router tries each route's regex in order until one matches: the MySQL query
    route is the 14th of ours, ~13 failed matches (a few us) on every request. The middleware
    already resolved the route, with the same rules, so the router hands the request to that
    route (`full_match`). Everything else (a 405, a redirect to the slashed path, a 404, the
    lifespan, a request for another app's routes) goes through Starlette's own dispatch.
    """

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and getattr(scope.get("app"), "router", None) is self:
            route = matched_route(scope)
            if route is not None:
                child_scope = full_match(route, scope)
                if child_scope is not None:
                    # What Starlette's dispatch does for the route it finds.
                    scope.setdefault("router", self)
                    scope["route"] = route
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await super().app(scope, receive, send)
