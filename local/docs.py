"""Swagger UI for the API document, served by the local API under ``make dev`` (never deployed).

``GET /api/openapi.json`` answers the OpenAPI document generated from the handlers' route declarations
(``local.openapi``, the same generator as ``make openapi``; built on the first request, so it reflects
the code ``make dev`` runs). ``GET /api/docs`` answers a page that loads Swagger UI from a CDN, pinned to
one swagger-ui-dist version, and points it at that document: nothing is vendored, the page is for a
developer's browser. "Try it out" calls the local API itself; admin routes need the token ``make dev``
prints (the "Authorize" button, scheme ``adminBearer``).
"""

from __future__ import annotations

import json
import threading
from typing import Final

DOCS_PATH: Final = "/api/docs"
DOCUMENT_PATH: Final = "/api/openapi.json"
SWAGGER_UI_VERSION: Final = "5.17.14"
SWAGGER_UI_CDN: Final = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}"

PAGE: Final = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>such-market API (local)</title>
  <link rel="stylesheet" href="{SWAGGER_UI_CDN}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{SWAGGER_UI_CDN}/swagger-ui-bundle.js" crossorigin="anonymous"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{DOCUMENT_PATH}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      tryItOutEnabled: true
    }});
  </script>
</body>
</html>
"""

_lock = threading.Lock()
_document: bytes | None = None


def document_bytes() -> bytes:
    """The generated OpenAPI document, built once per process."""
    global _document  # noqa: PLW0603 - one document per process, built on first use
    with _lock:
        if _document is None:
            from local.openapi import build_document

            _document = json.dumps(build_document(), indent=2).encode()
        return _document


def docs_response(method: str, path: str) -> tuple[str, bytes] | None:
    """(content type, body) for a GET/HEAD of the docs page or the document, else ``None``."""
    if method not in {"GET", "HEAD"}:
        return None
    if path == DOCS_PATH:
        return "text/html; charset=utf-8", PAGE.encode()
    if path == DOCUMENT_PATH:
        return "application/json", document_bytes()
    return None
