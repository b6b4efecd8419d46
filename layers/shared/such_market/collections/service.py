"""The collection use cases behind the public endpoints: cache → PostgreSQL → Alchemy.

Each read returns a ``Served`` (an HTTP status, pre-serialized JSON bytes and how it was served):
a hit costs one cache GET and no decoding. On a miss the loader reads PostgreSQL; a collection seen
for the first time is fetched from Alchemy, stored, and queued for ingestion in the same transaction
(outbox). Unknown entities become short-lived negative entries (404).

Every key of a collection is registered in the collection's index set, and a wallet's tokens also
in the (collection, wallet) index, so events can invalidate exactly what they change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import orjson

from such_market.cache.entries import Entry
from such_market.cache.store import Served
from such_market.cache.tiers import Tier
from such_market.collections.queries import (
    CollectionRow,
    NftRow,
    TokenOwner,
    get_collection,
    get_nft,
    get_nft_page,
    get_owned_tokens,
    get_token_owners,
    get_traits,
)
from such_market.collections.writes import set_ingestion_state, set_token_owners, upsert_collection, upsert_nfts
from such_market.errors import NotFoundError, error_body
from such_market.formats import iso_utc_or_none
from such_market.observability import logger
from such_market.runtime import Runtime
from such_market.validation import encode_cursor, filter_hash

OWNERSHIP_FRESH_FOR = timedelta(hours=1)
UPSTREAM_LEASE_MS = 30_000  # a first-seen collection waits on Alchemy: hold the fill lease long enough
INDEXING_STATES = frozenset({"pending", "queued", "running"})


def _json(status: int, payload: object) -> Entry:
    return Entry(status, orjson.dumps(payload))


def _not_found(message: str) -> Entry:
    return Entry(404, error_body(message, "not_found"))


# -- collection rows ---------------------------------------------------------------------------------
def _collection_or_discover(runtime: Runtime, address: str) -> CollectionRow | None:
    """The stored collection, or (first sight) Alchemy's metadata stored and queued for ingestion."""
    from such_market.collections.from_alchemy import collection_metadata
    from such_market.events.models import CollectionIngestRequested, Event
    from such_market.events.outbox import outbox_transaction

    row = get_collection(conn=runtime.conn, address=address)
    if row is not None:
        return row
    metadata = runtime.alchemy.get_contract_metadata(contract=address)
    if metadata is None:
        return None
    with outbox_transaction(runtime.conn, runtime.publisher) as tx:
        stored = upsert_collection(conn=runtime.conn, metadata=collection_metadata(metadata))
        if stored.ingestion_state == "pending":
            stored = set_ingestion_state(conn=runtime.conn, collection_id=stored.id, state="queued") or stored
            tx.add(Event(CollectionIngestRequested(contract_address=address, reason="first_seen")))
    return stored


def collection_body(row: CollectionRow) -> dict[str, object]:
    return {
        "contractAddress": row.contract_address,
        "name": row.name,
        "symbol": row.symbol,
        "tokenType": row.token_type,
        "totalSupply": row.total_supply,
        "imageUrl": row.image_url,
        "description": row.description,
        "verified": row.verified,
        "indexing": row.ingestion_state in INDEXING_STATES,
        "ingestion": {
            "state": row.ingestion_state,
            "nftsIndexed": row.nfts_indexed,
            "ownersIndexed": row.owners_indexed,
        },
    }


def _unknown(address: str) -> Entry:
    return _not_found(f"no NFT contract at {address}")


def _collection_read(
    runtime: Runtime,
    address: str,
    key: str,
    tier: Tier,
    answer: Callable[[CollectionRow], Entry],
    *,
    extra_indexes: Sequence[str] = (),
) -> Served:
    """Serve ``key`` of a collection's keys: on a miss, find (or discover) the collection and ``answer``.

    Every such key is registered in the collection's index (and ``extra_indexes``), so collection
    events invalidate it; an unknown contract is a short-lived 404.
    """

    def load() -> Entry:
        row = _collection_or_discover(runtime, address)
        return _unknown(address) if row is None else answer(row)

    indexes = [runtime.cache.keys.collection_index(address), *extra_indexes]
    return runtime.cache.fetch(key, tier, load, indexes=indexes, lease_ms=UPSTREAM_LEASE_MS)


# -- use cases ---------------------------------------------------------------------------------------
def collection_metadata(runtime: Runtime, address: str) -> Served:
    """GET /api/collection/{address}."""

    def answer(row: CollectionRow) -> Entry:
        return _json(200, collection_body(row))

    return _collection_read(runtime, address, runtime.cache.keys.collection_metadata(address), Tier.HOT, answer)


def nft_row_body(nft: NftRow) -> dict[str, object]:
    return {
        "tokenId": nft.token_id,
        "title": nft.title,
        "description": nft.description,
        "imageUrl": nft.image_url,
        "thumbnailUrl": nft.thumbnail_url,
        "attributes": nft.attributes,
    }


def nft_page(
    runtime: Runtime,
    address: str,
    *,
    page: int,
    page_size: int,
    filters: Mapping[str, tuple[str, ...]],
    after_token_id: int | None,
) -> Served:
    """GET /api/collection/{address}/nfts — a page in numeric token order, optionally filtered."""
    keys = runtime.cache.keys
    digest = filter_hash(filters)
    if after_token_id is None:
        key = keys.nft_page(address, page, page_size, digest)
    else:
        key = keys.nft_cursor_page(address, after_token_id, page_size, digest)

    def answer(row: CollectionRow) -> Entry:
        indexing = row.ingestion_state in INDEXING_STATES
        result = get_nft_page(
            conn=runtime.conn,
            collection_id=row.id,
            page=page,
            page_size=page_size,
            filters=filters,
            after_token_id=after_token_id,
        )
        if indexing and not filters and len(result.nfts) < page_size:
            return _page_from_alchemy(runtime, row, page=page, page_size=page_size, after_token_id=after_token_id)
        return _json(
            200,
            {
                "nfts": [nft_row_body(nft) for nft in result.nfts],
                "total": result.total,
                "page": page,
                "pageSize": page_size,
                "hasMore": result.has_more,
                "nextCursor": encode_cursor(result.next_cursor_token_id)
                if result.next_cursor_token_id is not None
                else None,
                "indexing": indexing,
            },
        )

    return _collection_read(runtime, address, key, Tier.WARM, answer)


def _page_from_alchemy(
    runtime: Runtime,
    row: CollectionRow,
    *,
    page: int,
    page_size: int,
    after_token_id: int | None,
) -> Entry:
    """A page of a collection we have not indexed yet, straight from getNFTsForContract, stored.

    ``startToken`` is the token after the cursor, or ``page * pageSize`` for page access (exact for
    collections numbered from 0 or 1, which is most of them; the full index replaces it soon).
    """
    from such_market.collections.from_alchemy import nft_record

    start = after_token_id + 1 if after_token_id is not None else page * page_size
    fetched = runtime.alchemy.get_nfts_for_contract_page(
        contract=row.contract_address, start_token=str(start), limit=page_size
    )
    records = [nft_record(nft) for nft in fetched.nfts]
    upsert_nfts(conn=runtime.conn, collection_id=row.id, nfts=records)
    last = records[-1].token_id if records else None
    has_more = fetched.page_key is not None
    total = int(row.total_supply) if row.total_supply is not None else None
    return _json(
        200,
        {
            "nfts": [
                {
                    "tokenId": str(record.token_id),
                    "title": record.title,
                    "description": record.description,
                    "imageUrl": record.image_url,
                    "thumbnailUrl": record.thumbnail_url,
                    "attributes": record.attributes,
                }
                for record in records
            ],
            "total": total,
            "page": page,
            "pageSize": page_size,
            "hasMore": has_more,
            "nextCursor": encode_cursor(last) if has_more and last is not None else None,
            "indexing": True,
        },
    )


def traits(runtime: Runtime, address: str) -> Served:
    """GET /api/collection/{address}/traits."""

    def answer(row: CollectionRow) -> Entry:
        facets = get_traits(conn=runtime.conn, collection_id=row.id)
        return _json(
            200,
            {
                "traits": [
                    {
                        "traitType": facet.trait_type,
                        "values": [{"value": value.value, "count": value.count} for value in facet.values],
                    }
                    for facet in facets.traits
                ],
                "totalTokens": facets.total_tokens,
            },
        )

    return _collection_read(runtime, address, runtime.cache.keys.traits(address), Tier.WARM, answer)


def nft(runtime: Runtime, address: str, token_id: int) -> Served:
    """GET /api/collection/{address}/nfts/{tokenId} — one NFT with its full metadata."""

    def answer(row: CollectionRow) -> Entry:
        from such_market.collections.from_alchemy import nft_record

        detail = get_nft(conn=runtime.conn, collection_id=row.id, token_id=token_id)
        if detail is None:
            fetched = runtime.alchemy.get_nft_metadata(contract=address, token_id=token_id)
            if fetched is None:
                return _not_found(f"no token {token_id} in {address}")
            upsert_nfts(conn=runtime.conn, collection_id=row.id, nfts=[nft_record(fetched)])
            detail = get_nft(conn=runtime.conn, collection_id=row.id, token_id=token_id)
            if detail is None:
                return _not_found(f"no token {token_id} in {address}")
        return _json(
            200,
            {
                "contractAddress": address,
                **nft_row_body(detail),
                "metadata": detail.metadata,
                "metadataError": detail.metadata_error,
            },
        )

    return _collection_read(runtime, address, runtime.cache.keys.nft(address, token_id), Tier.WARM, answer)


def token_owner(runtime: Runtime, address: str, token_id: int) -> Served:
    """GET /api/collection/{address}/nfts/{tokenId}/owner — from nft_ownership when fresh, else Alchemy."""

    def answer(row: CollectionRow) -> Entry:
        owners = get_token_owners(conn=runtime.conn, collection_id=row.id, token_id=token_id)
        fresh = bool(owners) and all(
            owner.last_verified_at > datetime.now(UTC) - OWNERSHIP_FRESH_FOR for owner in owners
        )
        from_store = fresh
        if not fresh:
            holders = runtime.alchemy.get_owners_for_nft(contract=address, token_id=token_id, token_type=row.token_type)
            if not holders:
                return _not_found(f"token {token_id} of {address} has no owner")
            observed = [(holder.address, int(holder.balance or 1)) for holder in holders]
            try:
                owners = set_token_owners(conn=runtime.conn, collection_id=row.id, token_id=token_id, owners=observed)
            except ValueError:
                # Alchemy names several holders of an ERC-721 token (a re-org in flight, bad data):
                # answer what it says, but do not store an impossible state.
                logger.warning("ERC-721 token with several holders upstream", extra={"token_id": str(token_id)})
                now = datetime.now(UTC)
                owners = [TokenOwner(address, str(balance), now) for address, balance in observed]
        return _json(
            200,
            {
                "contractAddress": address,
                "tokenId": str(token_id),
                "owner": owners[0].owner_address if owners else None,
                "owners": [{"address": owner.owner_address, "balance": owner.balance} for owner in owners],
                "tokenType": row.token_type,
                "cached": from_store,
                "verifiedAt": iso_utc_or_none(min(owner.last_verified_at for owner in owners)) if owners else None,
            },
        )

    return _collection_read(runtime, address, runtime.cache.keys.ownership(address, token_id), Tier.HOT, answer)


def owned_tokens(runtime: Runtime, address: str, wallet: str, *, page: int, page_size: int) -> Served:
    """GET /api/collection/{address}/nfts/owned?userAddress= — the wallet's tokens in the collection."""

    def answer(row: CollectionRow) -> Entry:
        result = get_owned_tokens(conn=runtime.conn, collection_id=row.id, owner=wallet, page=page, page_size=page_size)
        return _json(
            200,
            {
                "contractAddress": address,
                "owner": wallet,
                "nfts": [nft_row_body(nft) for nft in result.nfts],
                "total": result.total,
                "page": page,
                "pageSize": page_size,
                "hasMore": result.has_more,
                "indexing": row.ingestion_state in INDEXING_STATES,
            },
        )

    keys = runtime.cache.keys
    return _collection_read(
        runtime,
        address,
        keys.owned(address, wallet, page, page_size),
        Tier.HOT,
        answer,
        extra_indexes=[keys.owned_index(address, wallet)],
    )


def require_collection(runtime: Runtime, address: str) -> CollectionRow:
    """The stored (or newly discovered) collection, or 404."""
    row = _collection_or_discover(runtime, address)
    if row is None:
        raise NotFoundError(f"no NFT contract at {address}")
    return row
