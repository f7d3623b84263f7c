"""Starlette's router, handing a request straight to the route already found for it."""

from __future__ import annotations

from starlette.routing import Match, Router
from starlette.types import Receive, Scope, Send

from colima_ref.http.route_match import matched_route


class IndexedRouter(Router):
    """Dispatches to the route `match_route` found (a dict lookup for a static path) instead of
    asking every route in turn.

    Starlette's router tries each route's regex in order until one matches: the MySQL query
    route is the 14th of ours, ~13 failed matches (a few us) on every request. The middleware
    already resolved the route, with the same rules, so the router checks that one route and
    hands the request over. Everything else (a 405, a redirect to the slashed path, a 404,
    the lifespan, a request for another app's routes) goes through Starlette's own dispatch.
    """

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and getattr(scope.get("app"), "router", None) is self:
            route = matched_route(scope)
            if route is not None:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    # What Starlette's dispatch does for the route it finds.
                    scope.setdefault("router", self)
                    scope["route"] = route
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await super().app(scope, receive, send)
