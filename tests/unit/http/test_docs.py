"""/openapi.json, /docs and /redoc: the document as packaged, and pages that work offline."""

from __future__ import annotations

import json
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx2
import pytest
from live_support import skip_or_fail
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.testclient import TestClient

from colima_ref.http import docs
from colima_ref.http.errors import exception_handlers
from colima_ref.http.middleware.request_context import RequestContextMiddleware

ErrorBody = Callable[[httpx2.Response, int, str], dict[str, Any]]

PACKAGED_DOCUMENT = Path(docs.__file__).parent / "openapi.json"
ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


class _LinkCollector(HTMLParser):
    """Every script src and link href of a page, plus the inline script text."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls.extend(value for name, value in attrs if name == wanted and value)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def _links(page: str) -> _LinkCollector:
    collector = _LinkCollector()
    collector.feed(page)
    return collector


def _app(assets_dir: Path, *, prefix: str = "") -> Starlette:
    routes = docs.docs_routes(assets_dir)
    return Starlette(
        routes=[Mount(prefix, routes=routes)] if prefix else routes,
        middleware=[Middleware(RequestContextMiddleware)],
        exception_handlers=exception_handlers(debug=False),
    )


@pytest.fixture
def vendor_dir() -> Path:
    """The assets scripts/fetch-docs-assets.sh installed; skips without them (fails under CI)."""
    needed = (*docs.SWAGGER_ASSETS, *docs.REDOC_ASSETS)
    missing = [name for name in needed if not (docs.DEFAULT_ASSETS_DIR / name).is_file()]
    if missing:
        skip_or_fail(f"docs assets {missing} not installed: run `{docs.FETCH_COMMAND}`")
    return docs.DEFAULT_ASSETS_DIR


def test_openapi_json_serves_the_packaged_document_with_its_error_examples(
    tmp_path: Path,
) -> None:
    with TestClient(_app(tmp_path)) as client:
        response = client.get("/openapi.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    served = response.json()
    for error in served["components"]["responses"].values():
        del error["content"]["application/json"]["example"]
    assert served == json.loads(PACKAGED_DOCUMENT.read_text())


@pytest.mark.parametrize(
    ("page", "scripts"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_docs_pages_load_only_local_assets_that_are_served(
    vendor_dir: Path, page: str, scripts: str
) -> None:
    with TestClient(_app(vendor_dir)) as client:
        response = client.get(page)
        links = _links(response.text)
        assets = {url: client.get(url) for url in links.urls}

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "://" not in response.text, "a page must not name any origin (CDN, validator...)"
    assert f"/docs/static/{scripts}" in links.urls
    assert all(url.startswith("/docs/static/") for url in links.urls), links.urls
    assert any('"/openapi.json"' in script for script in links.inline_scripts)
    for url, asset in assets.items():
        assert asset.status_code == 200, url
        assert len(asset.content) > 0, url
        assert ASSET_TYPES[Path(url).suffix] in asset.headers["content-type"], url


def test_swagger_ui_does_not_send_the_document_to_an_online_validator(vendor_dir: Path) -> None:
    with TestClient(_app(vendor_dir)) as client:
        page = client.get("/docs").text

    assert "validatorUrl: null" in page


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_mounted_under_a_prefix_link_inside_the_prefix(
    vendor_dir: Path, page: str
) -> None:
    with TestClient(_app(vendor_dir, prefix="/api")) as client:
        links = _links(client.get(f"/api{page}").text)
        statuses = {url: client.get(url).status_code for url in links.urls}

    assert any('"/api/openapi.json"' in script for script in links.inline_scripts)
    assert all(url.startswith("/api/docs/static/") for url in links.urls), links.urls
    assert set(statuses.values()) == {200}, statuses


@pytest.mark.parametrize(
    ("page", "missing"),
    [("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]), ("/redoc", ["redoc.standalone.js"])],
)
def test_docs_page_without_assets_names_the_fetch_command(
    tmp_path: Path, error_body: ErrorBody, page: str, missing: list[str]
) -> None:
    with TestClient(_app(tmp_path)) as client:
        response = client.get(page)

    body = error_body(response, 503, "ServiceUnavailableError")
    assert "make docs-assets" in body["message"]
    assert body["details"]["missing"] == missing
    assert body["details"]["command"] == "make docs-assets"


def test_asset_request_without_an_asset_directory_answers_503_not_500(
    tmp_path: Path, error_body: ErrorBody
) -> None:
    with TestClient(_app(tmp_path / "never-fetched")) as client:
        response = client.get("/docs/static/swagger-ui.css")

    body = error_body(response, 503, "ServiceUnavailableError")
    assert "make docs-assets" in body["message"]


def test_unknown_asset_answers_404_with_the_uniform_body(
    tmp_path: Path, error_body: ErrorBody
) -> None:
    with TestClient(_app(tmp_path)) as client:
        response = client.get("/docs/static/nothing-here.js")

    error_body(response, 404, "ResourceNotFoundError")


def test_a_hostile_mount_prefix_cannot_inject_markup(vendor_dir: Path) -> None:
    """The prefix comes from the server's root_path; it lands in attributes and a script."""
    hostile = '/x"></script><script>alert(1)</script>'
    with TestClient(_app(vendor_dir)) as client:
        plain = {page: client.get(page).text for page in ("/docs", "/redoc")}
    with TestClient(_app(vendor_dir), root_path=hostile) as client:
        prefixed = {page: client.get(f"{hostile}{page}").text for page in ("/docs", "/redoc")}

    for page, text in prefixed.items():
        assert "alert(1)" in text
        assert text.count("<script") == plain[page].count("<script")
        assert text.count("</script>") == plain[page].count("</script>")
        assert "<script>alert(1)" not in text


def test_full_app_serves_the_docs_pages(client: TestClient, vendor_dir: Path) -> None:
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200, page
        assert response.headers["X-Request-ID"]
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1.")
