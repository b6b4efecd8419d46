"""The handler-side admin check: a router middleware every admin function installs.

The HTTP API authorizer already refused requests without a valid token; this second check keeps an
admin function safe even if it is ever wired to a route without the authorizer.
"""

from __future__ import annotations

from collections.abc import Callable

from such_market.auth.admin import authenticate
from such_market.config import AdminSettings, FunctionSettings, load_settings
from such_market.http.api import Middleware, Request
from such_market.http.responses import Response


def require_admin(settings_model: type[FunctionSettings]) -> Middleware:
    """A middleware that answers 401/403 before the route runs unless the admin token is valid."""

    def middleware(request: Request, call: Callable[[], Response]) -> Response:
        authenticate(request.headers, load_settings(settings_model).part(AdminSettings))
        return call()

    return middleware
