"""Swagger UI for the API document, served by the local API under ``make dev`` (never deployed).

``GET /api/openapi.json`` answers the OpenAPI document generated from the handlers' route declarations
(``local.openapi``, the same generator as ``make openapi``; built on the first request, so it reflects
the code ``make dev`` runs). ``GET /api/docs`` answers a page that runs Swagger UI over that document.
"Try it out" calls the local API itself; admin routes need the token ``make dev`` prints (the
"Authorize" button, scheme ``adminBearer``).

Swagger UI's script and stylesheet come from the PyPI package ``swagger-ui-py`` (pinned in
requirements-dev.txt; 25.7.1 ships the swagger-ui-dist 5.24.2 build) and are served from our own
``/api/docs/assets/<digest>/`` paths: the page loads nothing from another host, so it works offline
and behind a proxy. The digest is of the files' bytes, so their URLs change exactly when the pinned
package does and a browser may keep them for a year (``immutable``); the page and the document, which
follow the code, are never cached.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

DOCS_PATH: Final = "/api/docs"
DOCUMENT_PATH: Final = "/api/openapi.json"
ASSETS_PREFIX: Final = f"{DOCS_PATH}/assets/"
SWAGGER_UI_PACKAGE: Final = "swagger_ui"
"""The import name of ``swagger-ui-py``; only its ``static/`` files are read, the module never runs."""
ASSET_TYPES: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
NO_STORE: Final = "no-store"
IMMUTABLE: Final = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Served:
    """One answer of the docs routes: status, content type, ``Cache-Control`` and body."""

    status: int
    content_type: str
    cache_control: str
    body: bytes


@dataclass(frozen=True, slots=True)
class SwaggerUiAssets:
    """Swagger UI's files as the installed package ships them, and the digest that names them."""

    files: dict[str, bytes]
    digest: str

    def url(self, name: str) -> str:
        return f"{ASSETS_PREFIX}{self.digest}/{name}"


def load_assets(package: str = SWAGGER_UI_PACKAGE) -> SwaggerUiAssets:
    """Read Swagger UI's files from the installed ``swagger-ui-py``; ``RuntimeError`` when it is missing."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    static = next((Path(location) / "static" for location in locations if (Path(location) / "static").is_dir()), None)
    if static is None or not all((static / name).is_file() for name in ASSET_TYPES):
        raise RuntimeError("Swagger UI is not installed: run `make install` (swagger-ui-py, requirements-dev.txt)")
    files = {name: (static / name).read_bytes() for name in ASSET_TYPES}
    digest = hashlib.sha256()
    for name, data in files.items():
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return SwaggerUiAssets(files, digest.hexdigest()[:16])


def page(assets: SwaggerUiAssets) -> bytes:
    """The docs page: Swagger UI from our own asset routes, pointed at the generated document."""
    # validatorUrl null: no validator badge, which would fetch from Swagger's public validator service.
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>such-market API (local)</title>
  <link rel="icon" type="image/png" href="{assets.url("favicon-32x32.png")}">
  <link rel="stylesheet" href="{assets.url("swagger-ui.css")}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{assets.url("swagger-ui-bundle.js")}"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{DOCUMENT_PATH}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      tryItOutEnabled: true,
      validatorUrl: null
    }});
  </script>
</body>
</html>
""".encode()


_lock = threading.Lock()
_document: bytes | None = None
_assets: SwaggerUiAssets | None = None


def document_bytes() -> bytes:
    """The generated OpenAPI document, built once per process."""
    global _document  # noqa: PLW0603 - one document per process, built on first use
    with _lock:
        if _document is None:
            from local.openapi import build_document

            _document = json.dumps(build_document(), indent=2).encode()
        return _document


def assets() -> SwaggerUiAssets:
    """Swagger UI's files, read once per process (about 1.6 MB)."""
    global _assets  # noqa: PLW0603 - read once, on the first request for the docs
    with _lock:
        if _assets is None:
            _assets = load_assets()
        return _assets


def docs_response(method: str, path: str) -> Served | None:
    """The answer to a GET/HEAD of the docs page, its assets or the document, else ``None``."""
    if method not in {"GET", "HEAD"}:
        return None
    if path == DOCUMENT_PATH:
        return Served(200, "application/json", NO_STORE, document_bytes())
    if path != DOCS_PATH and not path.startswith(ASSETS_PREFIX):
        return None
    try:
        swagger_ui = assets()
    except RuntimeError as error:
        return Served(503, "text/plain; charset=utf-8", NO_STORE, f"{error}\n".encode())
    if path == DOCS_PATH:
        return Served(200, "text/html; charset=utf-8", NO_STORE, page(swagger_ui))
    return _asset(swagger_ui, path.removeprefix(ASSETS_PREFIX))


def _asset(swagger_ui: SwaggerUiAssets, digest_and_name: str) -> Served | None:
    digest, _, name = digest_and_name.partition("/")
    # Only the current digest: an old page's URL must not get today's file cached as immutable.
    if digest != swagger_ui.digest or name not in ASSET_TYPES:
        return None
    return Served(200, ASSET_TYPES[name], IMMUTABLE, swagger_ui.files[name])
