"""The resolver factory every API handler uses: one place maps errors to HTTP responses.

``create_api()`` returns a Powertools ``APIGatewayHttpResolver`` (HTTP API payload v2) with the
exception handlers registered: ``ApiError`` → its status and the SPEC error shape; request
validation failures → 400; anything else → a logged 500 without internals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext

from such_market.config import FunctionSettings, load_settings
from such_market.errors import ApiError
from such_market.http.responses import error_body, error_response, internal_error_response, json_response
from such_market.observability import logger


def _api_error(error: ApiError) -> Response[str]:
    return error_response(error)


def _route_not_found(_: RouteNotFoundError) -> Response[str]:
    return json_response(404, error_body("no such route", "route_not_found"))


def _unexpected(error: Exception) -> Response[str]:
    logger.exception("unhandled error", extra={"error_type": type(error).__name__})
    return internal_error_response()


def api_handler(
    app: APIGatewayHttpResolver, settings_model: type[FunctionSettings]
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The ``lambda_handler`` of an API function: validate its settings (a misconfigured container
    fails at its first invocation with a message naming the variable), then route the event."""

    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        load_settings(settings_model)
        return app.resolve(event, context)

    return lambda_handler


def create_api() -> APIGatewayHttpResolver:
    """Build a resolver with the backend's error mapping installed."""
    app = APIGatewayHttpResolver()
    app.exception_handler(ApiError)(_api_error)
    app.not_found(_route_not_found)
    app.exception_handler(Exception)(_unexpected)
    return app
