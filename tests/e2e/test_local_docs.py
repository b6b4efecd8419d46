"""Swagger UI under ``make dev``: the page, its vendored assets and the generated document, served by the
local API only when asked (``docs=True``), and never in place of a route of the template. The page in a
real browser: test_docs_browser.py."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from local.api import LocalApi
from local.docs import ASSETS_PREFIX, DOCS_PATH, DOCUMENT_PATH, load_assets
from local.invoker import Invoker
from local.template import Template

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> tuple[int, str, bytes]:
    status, headers, body = _get_with_headers(url)
    return status, headers["Content-Type"], body


def _get_with_headers(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - our own local API
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_make_dev_serves_swagger_ui_over_the_generated_document() -> None:
    # Given the local API as make dev starts it
    template = Template.load(ROOT / "template.yaml")
    with LocalApi(template, Invoker(template), port=0, quiet=True, docs=True) as api:
        # When a browser opens the docs page and the page loads the document
        page = _get(api.url + DOCS_PATH)
        document = _get(api.url + DOCUMENT_PATH)
    # Then the page runs Swagger UI pointed at the document, which is the committed one
    assert page[:2] == (200, "text/html; charset=utf-8")
    assert f'url: "{DOCUMENT_PATH}"' in page[2].decode()
    assert document[:2] == (200, "application/json")
    assert json.loads(document[2]) == json.loads((ROOT / "openapi.json").read_text())


def test_the_docs_page_loads_swagger_ui_from_our_own_routes_only() -> None:
    # Given the local API as make dev starts it
    template = Template.load(ROOT / "template.yaml")
    with LocalApi(template, Invoker(template), port=0, quiet=True, docs=True) as api:
        # When a browser opens the page and fetches what it links to
        _, page_headers, page = _get_with_headers(api.url + DOCS_PATH)
        links = re.findall(r'(?:src|href)="([^"]+)"', page.decode())
        assets = {link: _get_with_headers(api.url + link) for link in links}
        digest = links[0].removeprefix(ASSETS_PREFIX).split("/")[0]
        stale = _get(f"{api.url}{ASSETS_PREFIX}{'0' * len(digest)}/swagger-ui-bundle.js")
        unknown = _get(f"{api.url}{ASSETS_PREFIX}{digest}/swagger-ui.js")
    # Then every link is one of our own vendored asset paths (no other host: the page works offline)
    assert links
    assert [link for link in links if not link.startswith(ASSETS_PREFIX)] == []
    assert "http" not in page.decode()
    assert page_headers["Cache-Control"] == "no-store"
    # and each asset is served with its type, cached for good under its content digest
    types = {link.rsplit("/", 1)[1]: headers["Content-Type"] for link, (_, headers, _) in assets.items()}
    assert types == {
        "favicon-32x32.png": "image/png",
        "swagger-ui.css": "text/css; charset=utf-8",
        "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    }
    for status, headers, body in assets.values():
        assert status == 200
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert int(headers["Content-Length"]) == len(body) > 0
    bundle = next(body for link, (_, _, body) in assets.items() if link.endswith(".js"))
    assert b"SwaggerUIBundle" in bundle
    # and an old digest or a file we do not serve is API Gateway's 404, never today's file as immutable
    assert stale[0] == unknown[0] == 404


def test_without_the_swagger_ui_package_the_error_says_how_to_install_it() -> None:
    with pytest.raises(RuntimeError, match=r"Swagger UI is not installed: run `make install`"):
        load_assets("such_market_no_such_package")


def test_without_docs_the_local_api_answers_like_api_gateway() -> None:
    template = Template.load(ROOT / "template.yaml")
    with LocalApi(template, Invoker(template), port=0, quiet=True) as api:
        status, _, body = _get(api.url + DOCS_PATH)
    assert (status, json.loads(body)) == (404, {"message": "Not Found"})
