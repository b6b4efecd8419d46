"""Generate the OpenAPI document of the whole API from the handlers, or check the committed one.

Every HTTP function's module exposes its router as ``app`` (``such_market.http.api.Api``); each route
carries its summary, tags, query parameters and response models. This merges them into one OpenAPI 3.1
document (response models become ``components/schemas`` through pydantic), marks the admin routes
with the bearer security scheme, and writes it (``--write``) or fails when the committed file differs
(``--check``, run by ``make test``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from such_market.http.api import Api, RouteSpec

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
TITLE = "such-market API"
VERSION = "1.0.0"
REF_TEMPLATE = "#/components/schemas/{model}"


def _load_app(module_path: Path) -> object:
    sys.path.insert(0, str(module_path.parent))
    spec = importlib.util.spec_from_file_location(f"openapi_{module_path.stem}", module_path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {module_path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, "app", None)


def routers() -> list[Api]:
    """The router of every HTTP function under functions/."""
    sys.path.insert(0, str(ROOT / "layers" / "shared"))
    from such_market.http.api import Api

    found: list[Api] = []
    for module_path in sorted(FUNCTIONS.glob("*/*.py")):
        if module_path.stem == module_path.parent.name:
            app = _load_app(module_path)
            if isinstance(app, Api):
                found.append(app)
    return found


def _operation(route: RouteSpec, schemas: dict[str, Any]) -> dict[str, Any]:
    from pydantic import BaseModel
    from pydantic.json_schema import models_json_schema

    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in route.path_parameters
    ]
    parameters += [
        {"name": q.name, "in": "query", "required": q.required, "description": q.description, "schema": dict(q.schema)}
        for q in route.query
    ]

    def schema_of(model: type[BaseModel]) -> dict[str, Any]:
        (refs, definitions) = models_json_schema([(model, "validation")], ref_template=REF_TEMPLATE, by_alias=True)
        schemas.update(definitions.get("$defs", {}))
        return dict(refs[(model, "validation")])

    responses: dict[str, Any] = {}
    for status, described in sorted(route.responses.items()):
        content: dict[str, Any] = {}
        for media, body in described.get("content", {}).items():
            model = body.get("model")
            if isinstance(model, type) and issubclass(model, BaseModel):
                content[media] = {"schema": schema_of(model)}
        responses[str(status)] = {"description": described.get("description", ""), "content": content}
    operation: dict[str, Any] = {
        "tags": list(route.tags),
        "summary": route.summary,
        "operationId": route.function.__name__,
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    body = route.request_body
    if isinstance(body, type) and issubclass(body, BaseModel):
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema_of(body)}}}
    if route.path.startswith("/api/admin/"):
        operation["security"] = [{"adminBearer": []}]
    return operation


def build_document() -> dict[str, Any]:
    """The merged OpenAPI 3.1 document of every HTTP handler."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for app in routers():
        for route in app.routes.values():
            paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "such-market's NFT-data API (HTTP API payload v2). Errors are {error, code}.",
        },
        "paths": {path: dict(sorted(operations.items())) for path, operations in sorted(paths.items())},
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"adminBearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def render() -> str:
    return json.dumps(build_document(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, help="write the document to this file")
    mode.add_argument("--check", type=Path, help="fail when this file is not the current document")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.write.write_text(text)
        print(f"wrote {args.write}")
        return 0
    if not args.check.exists() or args.check.read_text() != text:
        print(f"{args.check} is out of date: run `make openapi` and commit it", file=sys.stderr)
        return 1
    print(f"{args.check} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
