"""HTTP API Lambda authorizer of every /api/admin/* route (payload 2.0, simple responses).

API Gateway answers 401 itself when the Authorization header is missing; this function answers
``isAuthorized: false`` (→ 403) for any token that is not the admin token.
"""

from __future__ import annotations

from typing import Any

from such_market.auth.admin import authenticate
from such_market.config import AdminSettings, FunctionSettings, load_settings
from such_market.errors import ApiError


class AuthorizerSettings(FunctionSettings):
    """The authorizer needs only the admin credential."""

    admin: AdminSettings


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, bool]:
    try:
        authenticate(event.get("headers"), load_settings(AuthorizerSettings).admin)
    except ApiError:
        return {"isAuthorized": False}
    return {"isAuthorized": True}
