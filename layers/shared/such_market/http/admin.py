"""The handler-side admin check: a router middleware every admin function installs.

The HTTP API authorizer already refused requests without a valid token; this second check keeps an
admin function safe even if it is ever wired to a route without the authorizer.
"""

from __future__ import annotations

from collections.abc import Callable

from such_market.auth.admin import authenticate
from such_market.config import AdminSettings, load_settings
from such_market.errors import ApiError
from such_market.http.api import Middleware, Request
from such_market.http.responses import Response, error_response


def require_admin(settings_model: type[AdminSettings]) -> Middleware:
    """A middleware that answers 401/403 before the route runs unless the admin token is valid."""

    def middleware(request: Request, call: Callable[[], Response]) -> Response:
        try:
            authenticate(request.headers, load_settings(settings_model))
        except ApiError as error:
            return error_response(error)
        return call()

    return middleware
