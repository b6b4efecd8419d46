"""Alchemy's models → the rows we store: one mapping, used by the read path and by ingestion."""

from __future__ import annotations

from typing import Literal

from such_market.collections.writes import CollectionMetadata, NftRecord
from such_market.upstream.alchemy import ContractMetadata, Nft

TokenType = Literal["ERC721", "ERC1155", "UNKNOWN"]
_TOKEN_TYPES: dict[str, TokenType] = {"ERC721": "ERC721", "ERC1155": "ERC1155"}


def token_type(value: str | None) -> TokenType:
    return _TOKEN_TYPES.get((value or "").upper().replace("-", ""), "UNKNOWN")


def collection_metadata(metadata: ContractMetadata) -> CollectionMetadata:
    opensea = metadata.opensea
    return CollectionMetadata(
        contract_address=metadata.address,
        name=metadata.name or (opensea.collection_name if opensea else None),
        symbol=metadata.symbol,
        token_type=token_type(metadata.token_type),
        total_supply=int(metadata.total_supply) if metadata.total_supply is not None else None,
        image_url=opensea.image_url if opensea else None,
        description=opensea.description if opensea else None,
        verified=bool(opensea and opensea.safelist_request_status == "verified"),
        is_spam=bool(metadata.is_spam),
    )


def nft_record(nft: Nft) -> NftRecord:
    return NftRecord(
        token_id=int(nft.token_id),
        title=nft.title,
        description=nft.description,
        image_url=nft.image_url or nft.original_image_url,
        thumbnail_url=nft.thumbnail_url,
        metadata=nft.metadata or None,
        attributes=[{"trait_type": attribute.trait_type, "value": attribute.value} for attribute in nft.attributes],
        metadata_error=nft.metadata_error,
    )
