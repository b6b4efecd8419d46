"""Generate the OpenAPI document of the whole API from the handlers, or check the committed one.

Every HTTP function's module exposes its resolver as ``app``; each resolver describes its own routes
(summary, tags, response models). This merges them into one document, marks the admin routes with
the bearer security scheme, and writes it (``--write``) or fails when the committed file differs
(``--check``, run by ``make test``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
TITLE = "such-market API"
VERSION = "1.0.0"


def _load_app(module_path: Path) -> object:
    sys.path.insert(0, str(module_path.parent))
    spec = importlib.util.spec_from_file_location(f"openapi_{module_path.stem}", module_path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {module_path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, "app", None)


def build_document() -> dict[str, Any]:
    """The merged OpenAPI 3.1 document of every HTTP handler."""
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    sys.path.insert(0, str(ROOT / "layers" / "shared"))
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for module_path in sorted(FUNCTIONS.glob("*/*.py")):
        if module_path.stem != module_path.parent.name:
            continue
        app = _load_app(module_path)
        if not isinstance(app, APIGatewayHttpResolver):
            continue
        document = json.loads(app.get_openapi_json_schema(title=TITLE, version=VERSION))
        for path, operations in document.get("paths", {}).items():
            if path.startswith("/api/admin/"):
                for operation in operations.values():
                    operation["security"] = [{"adminBearer": []}]
            paths.setdefault(path, {}).update(operations)
        schemas.update(document.get("components", {}).get("schemas", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "such-market's NFT-data API (HTTP API payload v2). Errors are {error, code}.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"adminBearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def render() -> str:
    return json.dumps(build_document(), indent=2, sort_keys=False) + "\n"


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
