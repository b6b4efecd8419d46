"""The generic HTTP pieces of the OpenAPI document: the error shape, ``responses(...)`` and query parameters.

Response models live with the domain whose use cases produce the shape (``collections.schemas``,
``users.schemas``, ``ownership.schemas``, ``health_schemas``); this module holds only what every route
shares. ``responses(...)`` builds the ``responses=`` argument of a route from its success model, always
including the SPEC error shape for the error statuses the route can answer. Models are named by
reference (``"package.module:Name"``, a ``ModelRef``), never imported here: only ``local/openapi.py``
resolves them, so a handler's cold start never imports pydantic or its domain's response models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from such_market.http.api import ModelRef, QueryParameter
from such_market.validation import (
    ADDRESS_PATTERN,
    CONTROL_CHARACTERS,
    CURSOR_PATTERN,
    MAX_FID,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    MAX_TRAIT_TEXT,
    MAX_TRAIT_TYPES,
    MAX_TRAIT_VALUES,
    NFT_SORTS,
    TOKEN_ID_PATTERN,
)

ERROR_DESCRIPTIONS = {
    400: "Invalid input",
    401: "Admin credential missing",
    403: "Admin credential not valid",
    404: "Unknown entity",
    409: "Conflict with the current state",
    429: "Cooldown or rate limit in force (see Retry-After)",
    503: "No source can answer (see Retry-After)",
}


ERROR_MODEL: ModelRef = "such_market.http.models:ErrorBody"
GATEWAY_MESSAGE_MODEL: ModelRef = "such_market.http.models:GatewayMessageBody"


def responses(
    success: ModelRef, *, status: int = 200, description: str = "Success", errors: tuple[int, ...] = ()
) -> dict[int, Any]:
    """The ``responses=`` of a route: its success model and the error shape for each error status."""
    documented: dict[int, Any] = {
        status: {"description": description, "content": {"application/json": {"model": success}}}
    }
    for code in errors:
        documented[code] = {
            "description": ERROR_DESCRIPTIONS[code],
            "content": {"application/json": {"model": ERROR_MODEL}},
        }
    return documented


# -- parameters, documented once, in the formats such_market.validation enforces ---------------------------
ADDRESS_SCHEMA: Mapping[str, object] = {"type": "string", "pattern": f"^{ADDRESS_PATTERN}$"}


@dataclass(frozen=True, slots=True)
class PathParameter:
    """The documented format of a path parameter, shared by every route that has it."""

    description: str
    schema: Mapping[str, object]


PATH_PARAMETERS: Mapping[str, PathParameter] = {
    "contractAddress": PathParameter("the collection's contract: 0x + 40 hex digits in any case", ADDRESS_SCHEMA),
    "tokenId": PathParameter(
        "a token id from 0 to 2**256-1, decimal or 0x + hex (a 78-digit decimal up to 2**256-1 is accepted too)",
        {"type": "string", "pattern": f"^(?:{TOKEN_ID_PATTERN})$"},
    ),
    "fid": PathParameter("a Farcaster id", {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_FID}),
}
"""Every path parameter of every route: local/openapi.py refuses a route whose parameter is not here."""

PAGE = QueryParameter("page", "page number, from 0", {"type": "integer", "minimum": 0, "maximum": MAX_PAGE})
PAGE_SIZE = QueryParameter(
    "pageSize",
    f"items per page, 1-{MAX_PAGE_SIZE} (default 20)",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
)
CURSOR = QueryParameter(
    "cursor",
    "the nextCursor of a previous page (replaces page); opaque",
    {"type": "string", "pattern": f"^(?:{CURSOR_PATTERN})$"},
)
SORT = QueryParameter(
    "sort",
    "tokenId (numeric token id, the default), rarity (OpenRarity rank, rarest first) or -rarity (most common"
    " first); unranked tokens follow the ranked ones in token order",
    {"type": "string", "enum": list(NFT_SORTS), "default": "tokenId"},
)
INCLUDE_SPAM = QueryParameter(
    "includeSpam",
    "true lists the collections Alchemy flags as spam too (default false: left out, and counted in spamHidden)",
    {"type": "string", "enum": ["true", "false"]},
)
USER_ADDRESS = QueryParameter(
    "userAddress", "the wallet, 0x + 40 hex digits in any case", ADDRESS_SCHEMA, required=True
)
TRAIT_FILTER = QueryParameter(
    "traitFilters",
    "trait filters, sent as trait.<type>=<value> parameters: AND across types, OR within a type (values "
    f"comma-separated or the parameter repeated), e.g. trait.Hat=Cap,Crown&trait.Eyes=Laser; at most "
    f"{MAX_TRAIT_TYPES} types and {MAX_TRAIT_VALUES} values of {MAX_TRAIT_TEXT} characters each",
    {
        "type": "object",
        "maxProperties": MAX_TRAIT_TYPES,
        "propertyNames": {"pattern": rf"^trait\.[^{CONTROL_CHARACTERS}]{{1,{MAX_TRAIT_TEXT}}}$"},
        "additionalProperties": {
            "type": "string",
            # no control character; at least one value that is not blank; each value (between commas) at
            # most MAX_TRAIT_TEXT long
            "pattern": rf"^(?=[^{CONTROL_CHARACTERS}]*[^\s,{CONTROL_CHARACTERS}])"
            rf"[^,{CONTROL_CHARACTERS}]{{0,{MAX_TRAIT_TEXT}}}"
            rf"(?:,[^,{CONTROL_CHARACTERS}]{{0,{MAX_TRAIT_TEXT}}}){{0,{MAX_TRAIT_VALUES - 1}}}$",
        },
    },
)
"""A form-exploded object: each property is one ``trait.<type>`` query parameter."""
