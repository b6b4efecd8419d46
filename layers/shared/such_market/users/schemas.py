"""Response models of the user endpoints for the OpenAPI document (profile, verifications, nft-contracts).

The shapes ``users.service`` answers: a Farcaster profile, its verified addresses, and the NFT contracts
held by the user's wallets (cache-backed and normalized). They only document: the use cases serialize
their own rows to bytes and the handlers never instantiate these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from such_market.schema_base import CamelModel


class ProfileBody(CamelModel):
    fid: int
    username: str | None
    display_name: str | None
    pfp_url: str | None
    custody_address: str | None = Field(description="lower-case")
    verified_addresses: list[str] = Field(description="verified Ethereum addresses, lower-case")
    follower_count: int | None
    following_count: int | None
    fetched_at: str = Field(description="when the profile was last fetched from Neynar (ISO 8601, UTC)")


class VerificationsBody(CamelModel):
    fid: int
    username: str | None
    custody_address: str | None
    verified_addresses: list[str]


class UserSummaryBody(CamelModel):
    fid: int
    username: str | None
    display_name: str | None
    pfp_url: str | None


class WalletContractBody(CamelModel):
    address: str
    name: str | None
    symbol: str | None
    token_type: str = Field(description="ERC721, ERC1155 or UNKNOWN")
    total_balance: str | None = Field(description="decimal string (uint256)")
    num_distinct_tokens_owned: str | None = Field(description="decimal string")
    is_spam: bool = Field(description="Alchemy flags the collection as spam")


class WalletCollectionsBody(CamelModel):
    wallet_address: str
    status: Literal["success", "error", "truncated"] = Field(
        description="error: the wallet could not be scanned now, so the answer is not cached (the normalized "
        "answer still lists what our tables hold for it); truncated: the wallet holds more collections than one "
        "scan lists"
    )
    contracts: list[WalletContractBody]
    total_collections_found: int
    spam_hidden: int = Field(
        description="the wallet's spam collections left out of contracts (0 with includeSpam=true)"
    )


class NftContractsBody(CamelModel):
    user: UserSummaryBody
    wallets: list[WalletCollectionsBody]
    total_wallets: int
    successful_wallets: int
    total_collections: int = Field(description="distinct contracts across the user's wallets")
    spam_hidden: int = Field(
        description="distinct spam contracts left out across the wallets (0 with includeSpam=true)"
    )
    message: str


class NormalizedNftContractsBody(NftContractsBody):
    system: Literal["normalized"]
