"""The OpenAPI document of the contract, and the Swagger UI and ReDoc pages that render it offline.

The document is ``openapi.json`` as packaged, but for the examples of its error responses, which
`error_examples` renders from the error classes, as the app renders its errors, the first time the
document is asked for.

The pages load their JavaScript and CSS from ``/docs/static``, served from a directory that
``scripts/fetch-docs-assets.sh`` (``make docs-assets``) fills from the npm packages pinned in
``package.json``. Nothing is fetched from a CDN, so the pages work without internet access.
"""

from __future__ import annotations

import functools
import html
import json
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from colima_ref.domain.errors import ServiceUnavailableError
from colima_ref.http.error_examples import error_examples
from colima_ref.http.json_response import render_json
from colima_ref.settings import Settings

OPENAPI_PATH = "/openapi.json"
SWAGGER_PATH = "/docs"
REDOC_PATH = "/redoc"
ASSETS_PATH = "/docs/static"
FETCH_COMMAND = "make docs-assets"

DEFAULT_ASSETS_DIR = Path(__file__).parent / "static" / "vendor"
SWAGGER_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css")
REDOC_ASSETS = ("redoc.standalone.js",)

_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: {spec_url},
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
</script>
</body>
</html>
"""
# validatorUrl: null, because Swagger UI otherwise sends the document to an online validator.

_REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - ReDoc</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
<div id="redoc"></div>
<script src="{assets}/redoc.standalone.js"></script>
<script>
Redoc.init({spec_url}, {{}}, document.getElementById("redoc"));
</script>
</body>
</html>
"""


# The documented examples are those of an app on the default settings.
DEFAULTS = Settings()


@functools.cache
def openapi_document() -> bytes:
    """The packaged OpenAPI document with the example of each error response rendered from our
    error classes (`error_examples`, for the default settings); built once, served as it is."""
    packaged = resources.files("colima_ref.http").joinpath("openapi.json").read_bytes()
    document = json.loads(packaged)
    responses = document["components"]["responses"]
    for name, body in error_examples(DEFAULTS.http, DEFAULTS.backends.operation_timeout).items():
        responses[name]["content"]["application/json"]["example"] = body
    return render_json(document)


@functools.cache
def _title() -> str:
    title: str = json.loads(openapi_document())["info"]["title"]
    return title


def _assets_missing(missing: list[str]) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"The API documentation assets are not installed; run `{FETCH_COMMAND}`",
        {"missing": missing, "command": FETCH_COMMAND},
        service="docs-assets",
    )


def _require(assets_dir: Path, names: tuple[str, ...]) -> None:
    missing = [name for name in names if not (assets_dir / name).is_file()]
    if missing:
        raise _assets_missing(missing)


def _script_string(value: str) -> str:
    """A JS string literal that cannot close the <script> element it sits in."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(template: str, request: Request) -> HTMLResponse:
    # root_path keeps the links right when the app is mounted under a prefix; the URLs stay
    # relative to the host so no page ever names an origin.
    root = request.scope.get("root_path", "").rstrip("/")
    body = template.format(
        title=html.escape(_title()),
        assets=html.escape(root + ASSETS_PATH),
        spec_url=_script_string(root + OPENAPI_PATH),
    )
    return HTMLResponse(body)


class _VendorFiles(StaticFiles):
    """StaticFiles that reports a missing asset directory as the fetch step not having run,
    where Starlette would raise a RuntimeError (a 500)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, check_dir=False)
        self._path = directory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._path.is_dir():
            raise _assets_missing(["*"])
        await super().__call__(scope, receive, send)


def docs_routes(assets_dir: Path | None = None) -> list[BaseRoute]:
    """Routes for ``/openapi.json``, ``/docs``, ``/redoc`` and the assets under ``/docs/static``.

    ``assets_dir`` is where the Swagger UI and ReDoc files live (default: the package's
    ``http/static/vendor``). When they are missing the pages raise ServiceUnavailableError
    (503) naming ``make docs-assets``, which the app's error handler turns into the uniform body.
    """
    directory = assets_dir if assets_dir is not None else DEFAULT_ASSETS_DIR

    async def openapi(_request: Request) -> Response:
        return Response(openapi_document(), media_type="application/json")

    async def swagger_ui(request: Request) -> Response:
        _require(directory, SWAGGER_ASSETS)
        return _page(_SWAGGER_PAGE, request)

    async def redoc(request: Request) -> Response:
        _require(directory, REDOC_ASSETS)
        return _page(_REDOC_PAGE, request)

    return [
        Route(OPENAPI_PATH, openapi, methods=["GET"], name="openapi"),
        Route(SWAGGER_PATH, swagger_ui, methods=["GET"], name="swagger-ui"),
        Route(REDOC_PATH, redoc, methods=["GET"], name="redoc"),
        Mount(ASSETS_PATH, app=_VendorFiles(directory), name="docs-static"),
    ]
