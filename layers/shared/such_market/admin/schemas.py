"""Request and response models of ``POST /api/admin/cache/clear`` for the OpenAPI document.

The body is parsed by ``admin.cache_clear.parse_clear_request``, not by these models; they state the
same rules (one required field per scope, nothing else) so that generated clients send only what is
accepted. They only document: no handler validates or serializes through them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from such_market.schema_base import CamelModel
from such_market.validation import ADDRESS_PATTERN, MAX_FID


class _ClearRequestBody(CamelModel):
    model_config = ConfigDict(extra="forbid")


class ClearAllRequestBody(_ClearRequestBody):
    """``all``: every cache key (durable state is never cleared)."""

    scope: Literal["all"]


class ClearCollectionRequestBody(_ClearRequestBody):
    """``collection``: every cache key of one collection."""

    scope: Literal["collection"]
    contract_address: str = Field(description="0x + 40 hex digits in any case", pattern=f"^{ADDRESS_PATTERN}$")


class ClearWalletRequestBody(_ClearRequestBody):
    """``wallet``: the wallet's contract list and its tokens in every collection."""

    scope: Literal["wallet"]
    wallet_address: str = Field(description="0x + 40 hex digits in any case", pattern=f"^{ADDRESS_PATTERN}$")


class ClearUserRequestBody(_ClearRequestBody):
    """``user``: the Farcaster user's profile, verifications and collections keys."""

    scope: Literal["user"]
    fid: int = Field(ge=1, le=MAX_FID)


class CacheClearRequestBody(
    RootModel[ClearAllRequestBody | ClearCollectionRequestBody | ClearWalletRequestBody | ClearUserRequestBody]
):
    """The body of POST /api/admin/cache/clear: ``scope`` and the one field it needs."""

    root: ClearAllRequestBody | ClearCollectionRequestBody | ClearWalletRequestBody | ClearUserRequestBody = Field(
        discriminator="scope"
    )


class CacheClearBody(BaseModel):
    """The 200 answer: how many cache keys (values, fill leases, index sets) were deleted."""

    success: bool
    keysDeleted: int  # noqa: N815 - the wire name
