"""Request and response models of ``POST /api/admin/cache/clear`` for the OpenAPI document.

The body is parsed by ``admin.cache_clear.parse_clear_request``, not by these models; they state the
same rules (one required field per scope, nothing else) so that generated clients send only what is
accepted. They only document: no handler validates or serializes through them.
"""

from __future__ import annotations

from typing import Annotated, Literal

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


class WarmNamedRequestBody(CamelModel):
    """Warm these collections (repeats, in any case, are warmed once)."""

    model_config = ConfigDict(extra="forbid")
    contract_addresses: list[Annotated[str, Field(pattern=f"^{ADDRESS_PATTERN}$")]] = Field(
        min_length=1, max_length=50, description="0x + 40 hex digits in any case"
    )


class WarmTopRequestBody(CamelModel):
    """Warm the busiest collections by recent traffic (``{}`` means ``topN`` 20)."""

    model_config = ConfigDict(extra="forbid")
    top_n: int = Field(default=20, ge=1, le=100)


class CacheWarmRequestBody(RootModel[WarmNamedRequestBody | WarmTopRequestBody]):
    """The body of POST /api/admin/cache/warm: ``contractAddresses`` or ``topN`` (or ``{}``)."""

    root: WarmNamedRequestBody | WarmTopRequestBody


class CollectionWarmBody(BaseModel):
    """What the warmer did for one collection (counts of cache entries)."""

    contractAddress: str  # noqa: N815 - the wire name
    warmed: int
    skipped: int
    failed: int
    skippedReason: Literal["unknown", "not_indexed"] | None  # noqa: N815 - the wire name


class CacheWarmBody(BaseModel):
    """The warmer's answer: entries filled now, skipped (fresh past the next run, filled by a reader meanwhile,
    or of a collection not indexed), failed; the time it took and whether it stopped at its time budget."""

    warmed: int
    skipped: int
    failed: int
    tookMs: float  # noqa: N815 - the wire name
    stoppedEarly: bool  # noqa: N815 - the wire name
    collections: list[CollectionWarmBody]
