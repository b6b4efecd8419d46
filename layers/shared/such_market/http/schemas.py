"""Response models for the OpenAPI document: the shapes the handlers return, described once.

These models document responses; the hot paths never instantiate them (bodies are pre-serialized
bytes). ``responses(...)`` builds the ``responses=`` argument of a route from them, always including
the SPEC error shape for the error statuses a route can answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

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


class DatabaseHealthBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    status: Literal["ok", "unavailable"]
    latency_ms: float = Field(alias="latencyMs")
    schema_version: str | None = Field(alias="schemaVersion")
    required_schema_version: str = Field(alias="requiredSchemaVersion")
    migrations_current: bool = Field(alias="migrationsCurrent")
    error: str | None


class CacheHealthBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    status: Literal["ok", "unavailable"]
    latency_ms: float = Field(alias="latencyMs")
    error: str | None


class HealthBody(BaseModel):
    status: Literal["ok", "unavailable"]
    database: DatabaseHealthBody
    cache: CacheHealthBody


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


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class IngestionBody(_Camel):
    state: Literal["pending", "queued", "running", "complete", "failed"]
    nfts_indexed: int
    owners_indexed: int


class CollectionBody(_Camel):
    contract_address: str
    name: str | None
    symbol: str | None
    token_type: Literal["ERC721", "ERC1155", "UNKNOWN"]
    total_supply: str | None
    image_url: str | None
    description: str | None
    verified: bool
    indexing: bool
    ingestion: IngestionBody


class AttributeBody(BaseModel):
    trait_type: str
    value: str


class NftSummaryBody(_Camel):
    token_id: str = Field(description="decimal string (uint256)")
    title: str | None
    description: str | None
    image_url: str | None
    thumbnail_url: str | None
    attributes: list[AttributeBody]


class NftPageBody(_Camel):
    nfts: list[NftSummaryBody]
    total: int | None
    page: int
    page_size: int
    has_more: bool
    next_cursor: str | None
    indexing: bool


class TraitValueBody(BaseModel):
    value: str
    count: int


class TraitFacetBody(_Camel):
    trait_type: str
    values: list[TraitValueBody]


class TraitsBody(_Camel):
    traits: list[TraitFacetBody]
    total_tokens: int


class NftBody(NftSummaryBody):
    contract_address: str
    metadata: dict[str, Any] | None
    metadata_error: str | None


class OwnerBalanceBody(BaseModel):
    address: str
    balance: str


class TokenOwnerBody(_Camel):
    contract_address: str
    token_id: str
    owner: str | None
    owners: list[OwnerBalanceBody]
    token_type: str
    cached: bool = Field(description="answered from our ownership index without asking Alchemy")
    verified_at: str | None


class OwnedNftsBody(_Camel):
    contract_address: str
    owner: str
    nfts: list[NftSummaryBody]
    total: int
    page: int
    page_size: int
    has_more: bool
    indexing: bool


class RefreshQueuedBody(_Camel):
    status: Literal["queued"]
    contract_address: str
    cooldown_until: str | None


class RefreshIngestionBody(IngestionBody):
    error: str | None


class RefreshStatusBody(_Camel):
    contract_address: str
    can_refresh: bool
    in_progress: bool
    cooldown_until: str | None
    last_refresh_at: str | None
    ingestion: RefreshIngestionBody


class OwnershipActionRequestBody(_Camel):
    """The body of POST /api/admin/ownership/stats."""

    action: Literal["sync", "discovery-stats", "verify"]
    contract_address: str | None = Field(default=None, description="required by sync; 0x + 40 hex digits")


class AlchemyWebhookRequestBody(BaseModel):
    """An Alchemy NFT-activity webhook (only the envelope is described; the raw body is what is signed)."""

    webhookId: str  # noqa: N815 - Alchemy's field names
    id: str
    createdAt: str  # noqa: N815
    type: Literal["NFT_ACTIVITY"]
    event: dict[str, Any]


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
