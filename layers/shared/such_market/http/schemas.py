"""The generic HTTP pieces of the OpenAPI document: the error shape, ``responses(...)`` and query parameters.

Response models live with the domain whose use cases produce the shape (``collections.schemas``,
``users.schemas``, ``ownership.schemas``, ``health_schemas``); this module holds only what every route
shares. ``responses(...)`` builds the ``responses=`` argument of a route from its success model, always
including the SPEC error shape for the error statuses the route can answer. Like the response models,
it only documents: the hot paths never instantiate any of them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from such_market.http.api import QueryParameter

ERROR_DESCRIPTIONS = {
    400: "Invalid input",
    401: "Admin credential missing",
    403: "Admin credential not valid",
    404: "Unknown entity",
    409: "Conflict with the current state",
    429: "Cooldown or rate limit in force (see Retry-After)",
    503: "No source can answer (see Retry-After)",
}


class ErrorBody(BaseModel):
    """Every error: a human message and a machine code."""

    error: str
    code: str


def responses(
    success: type[BaseModel], *, status: int = 200, description: str = "Success", errors: tuple[int, ...] = ()
) -> dict[int, Any]:
    """The ``responses=`` of a route: its success model and the error shape for each error status."""
    documented: dict[int, Any] = {
        status: {"description": description, "content": {"application/json": {"model": success}}}
    }
    for code in errors:
        documented[code] = {
            "description": ERROR_DESCRIPTIONS[code],
            "content": {"application/json": {"model": ErrorBody}},
        }
    return documented


# -- query parameters, documented once ------------------------------------------------------------------
PAGE = QueryParameter("page", "page number, from 0", {"type": "integer", "minimum": 0, "maximum": 1_000_000})
PAGE_SIZE = QueryParameter(
    "pageSize", "items per page, 1-100 (default 20)", {"type": "integer", "minimum": 1, "maximum": 100}
)
CURSOR = QueryParameter("cursor", "the nextCursor of a previous page (replaces page)")
USER_ADDRESS = QueryParameter("userAddress", "the wallet, 0x + 40 hex digits in any case", required=True)
TRAIT_FILTER = QueryParameter(
    "trait.<type>", "trait filter, repeatable: AND across types, OR within a type (e.g. trait.Hat=Cap)"
)
