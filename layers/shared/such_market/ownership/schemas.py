"""Request and response models of the ownership endpoints for the OpenAPI document.

The answer of GET /api/admin/ownership/stats (``ownership.stats``), the request body and answer of POST
/api/admin/ownership/stats (parsed by ``ownership.actions.parse_action_request``, not by this model) and
the envelope of Alchemy's webhook (verified and parsed by ``ownership.webhook``) and its receipt. They only document: no
handler validates or serializes through them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from such_market.ownership.actions import Action
from such_market.schema_base import CamelModel
from such_market.validation import ADDRESS_PATTERN


class SummaryConsistencyBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    ok: bool
    difference_count: int = Field(alias="differenceCount")
    differences: list[dict[str, Any]]


class CollectionDiscoveryBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    contract_address: str = Field(alias="contractAddress")
    name: str | None
    token_type: str = Field(alias="tokenType")
    total_supply: str | None = Field(alias="totalSupply")
    ingestion_state: str = Field(alias="ingestionState")
    last_error: str | None = Field(alias="lastError")
    nfts_indexed: int = Field(alias="nftsIndexed")
    tokens_with_owner: int = Field(alias="tokensWithOwner")
    owners: int
    completeness: float | None
    ownership_coverage: float | None = Field(alias="ownershipCoverage")
    metadata_error_rate: float | None = Field(alias="metadataErrorRate")


class NftDiscoveryBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    collections: list[CollectionDiscoveryBody]
    total_collections: int = Field(alias="totalCollections")


class OwnershipStatsBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    total_ownership_records: int = Field(alias="totalOwnershipRecords")
    total_user_collections: int = Field(alias="totalUserCollections")
    total_wallet_mappings: int = Field(alias="totalWalletMappings")
    unique_owners: int = Field(alias="uniqueOwners")
    unique_collections: int = Field(alias="uniqueCollections")
    summary_consistency: SummaryConsistencyBody = Field(alias="summaryConsistency")
    nft_discovery: NftDiscoveryBody = Field(alias="nftDiscovery")


class SyncActionRequestBody(CamelModel):
    """``sync``: re-read one collection's owners from Alchemy."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["sync"]
    contract_address: str = Field(description="0x + 40 hex digits in any case", pattern=f"^{ADDRESS_PATTERN}$")


class _ReportActionRequestBody(CamelModel):
    """A report action: the contract address is optional (validated when given)."""

    model_config = ConfigDict(extra="forbid")

    contract_address: Annotated[str, Field(pattern=f"^{ADDRESS_PATTERN}$")] | None = Field(
        default=None, description="0x + 40 hex digits in any case"
    )


class DiscoveryStatsActionRequestBody(_ReportActionRequestBody):
    """``discovery-stats``: the ``nftDiscovery`` statistics (of one collection when given)."""

    action: Literal["discovery-stats"]


class VerifyActionRequestBody(_ReportActionRequestBody):
    """``verify``: one bounded re-verification run (of one collection when given)."""

    action: Literal["verify"]


ActionRequestBody = SyncActionRequestBody | DiscoveryStatsActionRequestBody | VerifyActionRequestBody


class OwnershipActionRequestBody(RootModel[ActionRequestBody]):
    """The body of POST /api/admin/ownership/stats: ``{action, contractAddress}`` (sync needs the address)."""

    root: ActionRequestBody = Field(discriminator="action")


class AlchemyWebhookRequestBody(BaseModel):
    """An Alchemy NFT-activity webhook (only the envelope is described; the raw body is what is signed)."""

    webhookId: str  # noqa: N815 - Alchemy's field names
    id: str
    createdAt: str  # noqa: N815
    type: Literal["NFT_ACTIVITY"]
    event: dict[str, Any]


class OwnershipActionBody(BaseModel):
    """The 200 answer: the action and its result (sync counts, the discovery statistics, or the
    verification report)."""

    action: Action
    result: dict[str, Any]


class WebhookReceiptBody(BaseModel):
    """The 200 answer to a delivery: what happened to each transfer it reported (the counts add up to
    ``received``)."""

    received: int = Field(description="transfers in the delivery (each ERC-1155 batch item counts)")
    applied: int = Field(description="new transfers that moved ownership")
    reversed: int = Field(description="re-orged transfers (log.removed) that were undone")
    stale: int = Field(
        description="recorded without moving the token: an ERC-721 transfer older than the newest one applied "
        "(delivered out of order), or the removal of a transfer the token has moved on from"
    )
    duplicates: int = Field(description="transfers or removals already received")
    ignored: int = Field(
        description="unusable activities, transfers of unknown collections, removals of transfers never applied"
    )
