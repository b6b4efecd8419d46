"""Response models of the collection endpoints for the OpenAPI document.

The shapes ``collections.service`` (collection, NFT pages, one NFT, traits, token owner, a wallet's
tokens) and ``collections.refresh`` (refresh queued, refresh status) answer. They only document: the
use cases serialize their own dataclasses to bytes and the hot paths never instantiate these models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from such_market.schema_base import CamelModel


class IngestionBody(CamelModel):
    state: Literal["pending", "queued", "running", "complete", "failed"]
    nfts_indexed: int
    owners_indexed: int


class CollectionBody(CamelModel):
    contract_address: str
    name: str | None
    symbol: str | None
    token_type: Literal["ERC721", "ERC1155", "UNKNOWN"]
    total_supply: str | None
    image_url: str | None
    description: str | None
    verified: bool
    is_spam: bool = Field(description="Alchemy flags the contract as spam")
    indexing: bool
    ingestion: IngestionBody


class AttributeBody(BaseModel):
    trait_type: str
    value: str


class RarityBody(BaseModel):
    rank: int = Field(ge=1, description="OpenRarity rank in the collection: 1 is the rarest; equal scores share one")
    score: float = Field(description="OpenRarity score (information content over the collection's entropy)")


class NftSummaryBody(CamelModel):
    token_id: str = Field(description="decimal string (uint256)")
    title: str | None
    description: str | None
    image_url: str | None
    thumbnail_url: str | None
    attributes: list[AttributeBody]
    rarity: RarityBody | None = Field(description="null while the token is not ranked (collection not indexed yet)")


class NftPageBody(CamelModel):
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


class TraitFacetBody(CamelModel):
    trait_type: str
    values: list[TraitValueBody]


class TraitsBody(CamelModel):
    traits: list[TraitFacetBody]
    total_tokens: int
    indexing: bool


class NftBody(NftSummaryBody):
    contract_address: str
    metadata: dict[str, Any] | None
    metadata_error: str | None = Field(
        description="set when the upstream could not read the token's metadata (our words, never its text)"
    )


class OwnerBalanceBody(BaseModel):
    address: str
    balance: str | None = Field(
        description="units held (1 for ERC-721); null for an ERC-1155 holder whose balance we do not hold yet"
    )


class TokenOwnerBody(CamelModel):
    contract_address: str
    token_id: str
    owner: str | None
    owners: list[OwnerBalanceBody]
    token_type: str
    cached: bool = Field(description="answered from our ownership index without asking Alchemy")
    verified_at: str | None


class OwnedNftsBody(CamelModel):
    contract_address: str
    owner: str
    nfts: list[NftSummaryBody]
    total: int
    page: int
    page_size: int
    has_more: bool
    indexing: bool


class RefreshQueuedBody(CamelModel):
    status: Literal["queued"]
    contract_address: str
    cooldown_until: str | None


class RefreshIngestionBody(IngestionBody):
    error: str | None


class RefreshStatusBody(CamelModel):
    contract_address: str
    can_refresh: bool
    in_progress: bool
    cooldown_until: str | None
    last_refresh_at: str | None
    ingestion: RefreshIngestionBody
