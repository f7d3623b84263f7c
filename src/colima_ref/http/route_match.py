"""Which route a request is for, before the router has run."""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.convertors import PathConvertor, StringConvertor
from starlette.routing import BaseRoute, Mount
from starlette.types import Scope

UNMATCHED_ROUTE = "<unmatched>"
# Metrics, rate limit, response cache and the log line all ask; the answer is kept in the
# scope so the routes are scanned once per request (an ASGI extension key, namespaced by package).
_SCOPE_KEY = "colima_ref.route_match"
_ROUTE_KEY = "colima_ref.matched_route"

RouteMatch = tuple[str, Mapping[str, str]]
_NO_PARAMS: Mapping[str, str] = {}


class RouteTable:
    """The route the router will pick for a path, with its path params, known before it runs.

    Starlette's own ``route.matches`` costs 3-23 us a request on our routes; this costs a dict
    lookup for a path no other route can match, else one compiled regex per route, in the
    router's order (first route that takes the method, else the first that has the path, so a
    405 still names its template).

    Raises ValueError for a route whose params are not plain strings: the regex groups are
    used as they are, without Starlette's convertors.
    """

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._scan: list[tuple[re.Pattern[str], frozenset[str] | None, str, bool, BaseRoute]] = []
        for route in routes:
            regex, template = getattr(route, "path_regex", None), getattr(route, "path", None)
            if isinstance(regex, re.Pattern) and isinstance(template, str):
                mount = isinstance(route, Mount)
                _check_str_params(route, template, mount=mount)
                self._scan.append((regex, _methods(route), template, mount, route))
        self._unique: dict[str, tuple[RouteMatch, BaseRoute]] = {}
        for _, _, template, _, route in self._scan:
            if "{" not in template and sum(1 for r, *_ in self._scan if r.match(template)) == 1:
                self._unique[template] = ((template, _NO_PARAMS), route)

    def resolve(self, method: str, path: str) -> RouteMatch:
        """The template and path params of the route for ``method`` and ``path``, or
        ``UNMATCHED_ROUTE`` and no params."""
        return self.resolve_route(method, path)[0]

    def resolve_route(self, method: str, path: str) -> tuple[RouteMatch, BaseRoute | None]:
        """`resolve`, and the route itself (None when no route has the path)."""
        unique = self._unique.get(path)
        if unique is not None:
            return unique
        partial: tuple[RouteMatch, BaseRoute] | None = None
        for regex, methods, candidate, mount, route in self._scan:
            found = regex.match(path)
            if found is None:
                continue
            params = found.groupdict()
            if mount:
                # Like Starlette's Mount: the rest of the path is the mounted app's, not a param.
                params.pop("path", None)
            if methods is None or method in methods:
                return (candidate, params), route
            partial = partial or ((candidate, params), route)
        return partial or ((UNMATCHED_ROUTE, _NO_PARAMS), None)


def _check_str_params(route: BaseRoute, template: str, *, mount: bool) -> None:
    convertors: Mapping[str, Any] = getattr(route, "param_convertors", {})
    for name, convertor in convertors.items():
        if mount and name == "path" and isinstance(convertor, PathConvertor):
            continue
        if type(convertor) is not StringConvertor:
            raise ValueError(f"route {template!r}: param {name!r} is not a plain str param")


def _methods(route: BaseRoute) -> frozenset[str] | None:
    methods = getattr(route, "methods", None)
    return frozenset(methods) if methods else None


# One table per app, built on the app's first request; weak so a dropped app frees its table.
_TABLES: weakref.WeakKeyDictionary[Any, RouteTable] = weakref.WeakKeyDictionary()
_EMPTY_TABLE = RouteTable(())


def _table_of(app: Any) -> RouteTable:
    if app is None:
        return _EMPTY_TABLE
    table = _TABLES.get(app)
    if table is None:
        table = _TABLES[app] = RouteTable(getattr(app, "routes", ()))
    return table


def _route_path(scope: Scope) -> str:
    # The path the router matches: the same rules as Starlette's (private) get_route_path.
    path: str = scope["path"]
    root_path = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


def match_route(scope: Scope) -> RouteMatch:
    """The path template and path params of the route the app in ``scope`` would pick.

    Middleware outside the router keys metrics, limits, caches and log lines by template, so
    that a scan of random paths shares one series (``UNMATCHED_ROUTE``) instead of creating
    one per path. A route that matches the path but not the method (a 405) still names its
    template. Raises ValueError (on an app's first request) for a route with non-str params.
    """
    known: RouteMatch | None = scope.get(_SCOPE_KEY)
    if known is not None:
        return known
    found, route = _table_of(scope.get("app")).resolve_route(scope["method"], _route_path(scope))
    scope[_SCOPE_KEY] = found
    scope[_ROUTE_KEY] = route
    return found


def matched_route(scope: Scope) -> BaseRoute | None:
    """The route object `match_route` found for the request (None when no route has its
    path), for the router to hand the request to without trying every route again."""
    if _SCOPE_KEY not in scope:
        match_route(scope)
    route: BaseRoute | None = scope.get(_ROUTE_KEY)
    return route
