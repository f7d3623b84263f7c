"""The indexed router hands a request to the route found for it, and leaves the rest to
Starlette: 405, redirect to the slashed path, 404."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Match, Route
from starlette.testclient import TestClient
from starlette.types import Scope

from colima_ref.http.app import create_app
from colima_ref.http.indexed_router import IndexedRouter, full_match
from colima_ref.http.route_match import matched_route
from colima_ref.settings import Settings


class CountingRoute(Route):
    """A route that counts how often the router asks whether it matches."""

    asked = 0

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        self.asked += 1
        return super().matches(scope)


async def text(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.url.path} {dict(request.path_params)}")


def app_with(*routes: Route) -> Starlette:
    app = Starlette(routes=list(routes))
    app.router = IndexedRouter(list(routes))
    return app


def test_a_request_goes_to_its_route_without_asking_the_routes_before_it() -> None:
    first = CountingRoute("/first", text)
    items = CountingRoute("/items/{name}", text)
    client = TestClient(app_with(first, items))

    response = client.get("/items/a")

    assert response.text == "/items/a {'name': 'a'}"
    assert (first.asked, items.asked) == (0, 1)


def test_every_route_of_ours_gets_the_child_scope_starlette_would_give_it() -> None:
    app = create_app(lambda: None, Settings.from_env({}))  # type: ignore[arg-type, return-value]
    routes = [route for route in app.routes if isinstance(route, Route)]
    for route in routes:
        path = route.path.replace("{", "").replace("}", "-1")
        for method in sorted(route.methods or {"GET"}):
            scope: Scope = {
                "type": "http",
                "method": method,
                "path": path,
                "root_path": "",
                "app": app,
                "path_params": {"from_a_mount": "kept"},
            }
            match, expected = route.matches(dict(scope))

            assert matched_route(scope) is route
            assert match is Match.FULL
            assert full_match(route, scope) == expected


def test_a_wrong_method_still_gets_starlettes_405_with_allow() -> None:
    client = TestClient(app_with(Route("/only-get", text, methods=["GET"])))

    response = client.post("/only-get")

    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_a_missing_slash_still_redirects_and_an_unknown_path_is_404() -> None:
    client = TestClient(app_with(Route("/slashed/", text)), follow_redirects=False)

    redirect = client.get("/slashed")
    missing = client.get("/nowhere")

    assert (redirect.status_code, redirect.headers["location"]) == (
        307,
        "http://testserver/slashed/",
    )
    assert missing.status_code == 404


def test_the_route_is_left_in_the_scope_as_starlette_does() -> None:
    seen: dict[str, Any] = {}

    async def endpoint(request: Request) -> PlainTextResponse:
        seen["route"] = request.scope["route"]
        seen["router"] = request.scope["router"]
        return PlainTextResponse("ok")

    route = Route("/here", endpoint)
    app = app_with(route)

    TestClient(app).get("/here")

    assert seen == {"route": route, "router": app.router}
