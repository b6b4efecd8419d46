"""Generate the OpenAPI document of the whole API from the handlers, or check the committed one.

Every HTTP function's module exposes its router as ``app`` (``such_market.http.api.Api``); each route
carries its summary, tags, query parameters and response models. This merges them into one OpenAPI 3.1
document (response models become ``components/schemas`` through pydantic), marks the admin routes
with the bearer security scheme, and writes it (``--write``) or fails when the committed file differs
(``--check``, run by ``make test``).

Besides what a route declares, each operation documents every answer it can really give:

- its path parameters in the formats ``such_market.validation`` enforces
  (``such_market.http.schemas.PATH_PARAMETERS``; a parameter missing there is an error here);
- the failures mapped at the edge (``such_market.failures``), from the parts of the function's settings:
  503 ``service_unavailable`` (with ``Retry-After``) for a function that reaches the database, the cache
  or an upstream, and 502 ``upstream_credentials_rejected`` / ``upstream_error`` for one that calls an
  upstream;
- on admin routes, API Gateway's own 401 ``{"message": "Unauthorized"}`` (no ``Authorization`` header:
  the authorizer is not even called) and 403 ``{"message": "Forbidden"}`` (the authorizer refused), besides
  the handler's own ``{error, code}`` check.

What API Gateway answers for a request that matches no route (404 ``{"message": "Not Found"}``, also for a
method the document does not list, where a plain HTTP server would say 405) is stated in the document's
description, as is that an undeclared query parameter is ignored; an exploded object parameter
(``trait.<type>=…``) therefore allows any other name (``_exploded_object``), so that the document and
schemathesis agree with API Gateway on it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel

    from such_market.config import FunctionSettings
    from such_market.http.api import Api, ModelRef, QueryParameter, RouteSpec

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
TITLE = "such-market API"
VERSION = "1.0.0"
REF_TEMPLATE = "#/components/schemas/{model}"
GATEWAY_AUTH_ANSWERS = {
    401: 'API Gateway answers {"message": "Unauthorized"} when the Authorization header is missing',
    403: 'API Gateway answers {"message": "Forbidden"} when the admin authorizer refuses the token',
}
RETRY_AFTER = {"description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}
DESCRIPTION = (
    "such-market's NFT-data API (HTTP API payload v2). Errors are {error, code}, except the answers of API "
    'Gateway itself, which are {"message": ...}: the admin authorizer\'s 401 and 403 (declared on the admin '
    'routes), 404 {"message": "Not Found"} for a path or method no route serves (API Gateway never answers '
    "405), 413 for a body over 10 MB, and 500/503 when a function crashes or cannot be run. A query parameter "
    "a route does not declare is ignored, as API Gateway passes it on: such requests are answered as without it."
)


def _load_app(module_path: Path) -> object:
    sys.path.insert(0, str(module_path.parent))
    spec = importlib.util.spec_from_file_location(f"openapi_{module_path.stem}", module_path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {module_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # settings classes resolve their annotations in their module
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


def _model(reference: ModelRef) -> type[BaseModel]:
    """The pydantic model a route names by reference (``"package.module:Name"``); handlers never import it."""
    from pydantic import BaseModel

    module, _, name = reference.partition(":")
    model = getattr(importlib.import_module(module), name, None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise RuntimeError(f"{reference!r} does not name a pydantic model")
    return model


def _path_parameter(route: RouteSpec, name: str) -> dict[str, Any]:
    from such_market.http.schemas import PATH_PARAMETERS

    declared = PATH_PARAMETERS.get(name)
    if declared is None:
        raise RuntimeError(
            f"{route.method} {route.path}: declare the format of path parameter {name!r} in "
            "such_market.http.schemas.PATH_PARAMETERS"
        )
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": declared.description,
        "schema": dict(declared.schema),
    }


def _query_parameter(parameter: QueryParameter) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": parameter.name,
        "in": "query",
        "required": parameter.required,
        "description": parameter.description,
        "schema": dict(parameter.schema),
    }
    if parameter.schema.get("type") == "object":  # one query parameter per property (trait.<type>=…)
        described |= {"style": "form", "explode": True, "schema": _exploded_object(parameter.schema)}
    return described


def _exploded_object(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An exploded object's schema as the query string sees it: its property names are query parameter
    names, so every parameter the route does not declare lands in it. API Gateway passes those through and
    the handler ignores them (it reads only ``trait.<type>`` names), so the document allows any name but
    those with the prefix, which keep their name and value schemas; a ``maxProperties``, which would count
    the ignored names too, stays in the parameter's description only."""
    from such_market.validation import TRAIT_PREFIX

    prefix = f"^{re.escape(TRAIT_PREFIX)}"
    exploded = {key: value for key, value in schema.items() if key not in {"propertyNames", "maxProperties"}}
    names = schema.get("propertyNames")
    if names is not None:
        exploded["propertyNames"] = {"anyOf": [{"not": {"pattern": prefix}}, names]}
    exploded["patternProperties"] = {prefix: schema.get("additionalProperties", True)}
    exploded["additionalProperties"] = True
    return exploded


def _edge_failures(settings_model: type[FunctionSettings] | None) -> dict[int, str]:
    """The statuses ``such_market.failures`` can answer for a function with these settings parts."""
    from such_market.config import CacheSettings, DatabaseSettings
    from such_market.http.schemas import ERROR_DESCRIPTIONS

    parts = list(settings_model.parts().values()) if settings_model is not None else []
    upstream = any(part.__module__.startswith("such_market.upstream.") for part in parts)
    failures: dict[int, str] = {}
    if upstream:
        failures[502] = "An upstream refused our credentials or failed (upstream_credentials_rejected, upstream_error)"
    if upstream or any(issubclass(part, DatabaseSettings | CacheSettings) for part in parts):
        failures[503] = ERROR_DESCRIPTIONS[503]
    return failures


def _operation(
    route: RouteSpec, settings_model: type[FunctionSettings] | None, schemas: dict[str, Any]
) -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    from such_market.http.schemas import ERROR_MODEL, GATEWAY_MESSAGE_MODEL

    parameters = [_path_parameter(route, name) for name in route.path_parameters]
    parameters += [_query_parameter(q) for q in route.query]

    def schema_of(reference: ModelRef) -> dict[str, Any]:
        model = _model(reference)
        (refs, definitions) = models_json_schema([(model, "validation")], ref_template=REF_TEMPLATE, by_alias=True)
        schemas.update(definitions.get("$defs", {}))
        return dict(refs[(model, "validation")])

    declared: dict[int, Any] = dict(route.responses)
    for status, description in _edge_failures(settings_model).items():
        declared.setdefault(
            status, {"description": description, "content": {"application/json": {"model": ERROR_MODEL}}}
        )
    admin = route.path.startswith("/api/admin/")
    responses: dict[str, Any] = {}
    for status, described in sorted(declared.items()):
        content: dict[str, Any] = {}
        for media, body in described.get("content", {}).items():
            model = body.get("model")
            if model is not None:
                schema = schema_of(model)
                if admin and status in GATEWAY_AUTH_ANSWERS:
                    schema = {"oneOf": [schema_of(GATEWAY_MESSAGE_MODEL), schema]}
                content[media] = {"schema": schema}
        responses[str(status)] = {"description": described.get("description", ""), "content": content}
        if status in GATEWAY_AUTH_ANSWERS and admin:
            responses[str(status)]["description"] += f" ({GATEWAY_AUTH_ANSWERS[status]})"
        if status in {429, 503} and content.get("application/json", {}).get("schema") == schema_of(ERROR_MODEL):
            responses[str(status)]["headers"] = {"Retry-After": RETRY_AFTER}
    operation: dict[str, Any] = {
        "tags": list(route.tags),
        "summary": route.summary,
        "operationId": route.function.__name__,
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    body = route.request_body
    if body is not None:
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
            paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, app.settings_model, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": DESCRIPTION,
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
