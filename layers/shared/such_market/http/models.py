"""The pydantic models of the generic HTTP shapes (the error shape, API Gateway's own answers): OpenAPI only.

Like the domains' response models, they only document: routes name them by reference
(``such_market.http.schemas.ERROR_MODEL``) and only ``local/openapi.py`` imports this module, so no
function pays for pydantic at cold start.
"""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """Every error: a human message and a machine code."""

    error: str
    code: str


class GatewayMessageBody(BaseModel):
    """An answer of API Gateway itself, before any function runs (e.g. the admin authorizer's 401/403)."""

    message: str
