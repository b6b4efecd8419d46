"""Swagger UI under ``make dev``: the page and the generated document, served by the local API only when
asked (``docs=True``), and never in place of a route of the template."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from local.api import LocalApi
from local.docs import DOCS_PATH, DOCUMENT_PATH, SWAGGER_UI_VERSION
from local.invoker import Invoker
from local.template import Template

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - our own local API
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_make_dev_serves_swagger_ui_over_the_generated_document() -> None:
    # Given the local API as make dev starts it
    template = Template.load(ROOT / "template.yaml")
    with LocalApi(template, Invoker(template), port=0, quiet=True, docs=True) as api:
        # When a browser opens the docs page and the page loads the document
        page = _get(api.url + DOCS_PATH)
        document = _get(api.url + DOCUMENT_PATH)
    # Then the page loads a pinned Swagger UI pointed at the document, which is the committed one
    assert page[:2] == (200, "text/html; charset=utf-8")
    assert f"swagger-ui-dist@{SWAGGER_UI_VERSION}/" in page[2].decode()
    assert f'url: "{DOCUMENT_PATH}"' in page[2].decode()
    assert document[:2] == (200, "application/json")
    assert json.loads(document[2]) == json.loads((ROOT / "openapi.json").read_text())


def test_without_docs_the_local_api_answers_like_api_gateway() -> None:
    template = Template.load(ROOT / "template.yaml")
    with LocalApi(template, Invoker(template), port=0, quiet=True) as api:
        status, _, body = _get(api.url + DOCS_PATH)
    assert (status, json.loads(body)) == (404, {"message": "Not Found"})
