"""The handler-side admin check: a resolver middleware every admin function installs.

The HTTP API authorizer already refused requests without a valid token; this second check keeps an
admin function safe even if it is ever wired to a route without the authorizer.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from such_market.auth.admin import authenticate
from such_market.config import AdminSettings, load_settings
from such_market.errors import ApiError
from such_market.http.responses import error_response


def require_admin(
    settings_model: type[AdminSettings],
) -> Callable[[APIGatewayHttpResolver, NextMiddleware], Response[str]]:
    """A middleware that answers 401/403 before the route runs unless the admin token is valid."""

    def middleware(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[str]:
        try:
            authenticate(app.current_event.headers, load_settings(settings_model))
        except ApiError as error:
            return error_response(error)
        response: Response[str] = next_middleware(app)
        return response

    return middleware
