"""The collection use cases behind the public endpoints: cache → PostgreSQL → Alchemy.

Each read returns a ``Served`` (an HTTP status, pre-serialized JSON bytes and how it was served):
a hit costs one cache GET and no decoding. On a miss the loader reads PostgreSQL; a collection seen
for the first time is fetched from Alchemy, stored, and queued for ingestion in the same transaction
(outbox). Unknown entities become short-lived negative entries (404).

Every key of a collection is registered in the collection's index set, and a wallet's tokens also
in the (collection, wallet) index, so events can invalidate exactly what they change.

What is cached, and for how long:

- until an ingestion of the collection has completed (``CollectionRow.indexed``), or while one runs,
  answers say ``indexing: true`` and are cached only briefly (``Tier.BRIEF``): the tables then hold a
  partial index, which must not be served as the collection for a whole tier. Pages of a collection
  never indexed come from PostgreSQL only when they lie wholly in the part a run has committed
  (``ingestion_listed_through``), otherwise from Alchemy; their ``total`` is the contract's supply;
- a token whose metadata the upstream could not read is cached briefly too (SPEC §7);
- a collection seen for the first time costs an Alchemy call, so discovery is throttled by token buckets
  shared through the cache (``cache.throttle``): ``DISCOVERY_PER_SOURCE`` per source IP (the HTTP API
  event's ``requestContext.http.sourceIp``) and ``DISCOVERY_GLOBAL`` overall; past them the answer is
  429 ``discovery_rate_limited`` with ``Retry-After``. Token misses (a token the listing lacks, an
  owner lookup) pay from the same buckets (see ``nft`` and ``token_owner``); a hit, a known collection,
  a listed token or fresh owners never reach them;
- NFT pages are cached only when many clients share them (``_shared_page``): page sizes of
  ``CACHED_PAGE_SIZES``, the first ``MAX_CACHED_PAGES`` pages, cursor pages only when the cursor falls
  on a page boundary of their size (the cursor a page-number page hands out; token order only), filtered
  pages only for one value of one trait type (a facet click) on page 0, in each ``sort`` (its own key
  part). Anything else is served from PostgreSQL (a
  keyset page costs about a millisecond) and not stored (``Entry.cacheable=False``), so distinct cursors
  or filter combinations cannot fill the cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from such_market.cache.entries import Entry
from such_market.cache.store import Served
from such_market.cache.tiers import Tier
from such_market.errors import NotFoundError, TooManyRequestsError, error_body
from such_market.formats import iso_utc_or_none
from such_market.observability import logger
from such_market.runtime import Runtime
from such_market.validation import NftSort, encode_cursor, filter_hash, source_ip

if TYPE_CHECKING:
    from such_market.collections.queries import CollectionRow, NftDetail, NftRow, TokenOwner
    from such_market.collections.writes import NftRecord

# The queries and writes are imported where they run: a cache hit (a read's usual first answer) runs none.

OWNERSHIP_FRESH_FOR = timedelta(hours=1)
UPSTREAM_LEASE_MS = 30_000  # a first-seen collection waits on Alchemy: hold the fill lease long enough
INDEXING_STATES = frozenset({"pending", "queued", "running"})
CACHED_PAGE_SIZES = frozenset({10, 20, 25, 50, 100})
"""Page sizes whose pages are cached (the default 20 and the usual UI choices); other sizes are served."""
MAX_CACHED_PAGES = 20
"""Pages 0..19 of a cached size are cached; deeper pages are served (a range scan at any depth)."""
DISCOVERY_PER_SOURCE = (10, 0.2)
"""First-seen collections one source IP may look up: a burst of 10, then one every 5 s."""
DISCOVERY_GLOBAL = (100, 2.0)
"""First-seen collections looked up overall: a burst of 100, then 2 a second (120 Alchemy calls a minute)."""


class Requester(Protocol):
    """The request being served, as far as discovery needs it (``such_market.http.api.Request``)."""

    @property
    def raw_event(self) -> Mapping[str, Any]: ...


METADATA_ERROR = "the token's metadata could not be read"
"""``metadataError`` of a token whose metadata Alchemy could not read (its own text is stored, not served)."""


def _json(status: int, payload: object, *, brief: bool = False, cacheable: bool = True) -> Entry:
    """A JSON answer; ``brief`` ones (known incomplete) are cached for ``Tier.BRIEF`` at most."""
    return Entry(status, orjson.dumps(payload), cacheable, Tier.BRIEF if brief else None)


def is_indexing(row: CollectionRow) -> bool:
    """Whether the collection's data is incomplete: never ingested completely, or a run is under way."""
    return row.ingestion_state in INDEXING_STATES or not row.indexed


def _not_found(message: str) -> Entry:
    return Entry(404, error_body(message, "not_found"))


# -- collection rows ---------------------------------------------------------------------------------
def _source_ip(requester: Requester | None) -> str | None:
    """The caller's address (``None`` without a requester, or when absent or malformed)."""
    return None if requester is None else source_ip(requester.raw_event)


def _discovery_wait(runtime: Runtime, requester: Requester | None) -> float:
    """Take a discovery token for the caller's source IP and one overall: 0.0 when taken, else the
    seconds until both buckets could give one (nothing taken)."""
    from such_market.cache.throttle import Bucket, take

    keys = runtime.cache.keys
    buckets = [Bucket(keys.durable("throttle", "{discovery}", "global"), *DISCOVERY_GLOBAL)]
    source = _source_ip(requester)
    if source is not None:
        buckets.insert(0, Bucket(keys.durable("throttle", "{discovery}", "ip", source), *DISCOVERY_PER_SOURCE))
    return take(runtime.cache, buckets)


def _throttle_discovery(runtime: Runtime, requester: Requester | None) -> None:
    """Take a discovery token (``_discovery_wait``), or answer 429 ``discovery_rate_limited`` with
    Retry-After. Every Alchemy call a public read makes for something we do not hold (a collection, a
    token, a token's owners) pays one."""
    wait = _discovery_wait(runtime, requester)
    if wait > 0:
        raise TooManyRequestsError(
            "too many collections or tokens looked up for the first time; try again shortly",
            code="discovery_rate_limited",
            retry_after=max(1, math.ceil(wait)),
        )


def _collection_or_discover(runtime: Runtime, address: str, requester: Requester | None) -> CollectionRow | None:
    """The stored collection, or (first sight, within the discovery throttle) Alchemy's metadata stored and
    queued for ingestion."""
    from such_market.collections.queries import get_collection

    row = get_collection(conn=runtime.conn, address=address)
    if row is not None:
        return row
    # Only a first sight needs these (httpx and pydantic behind them): a stored collection's read does not.
    from such_market.collections.from_alchemy import collection_metadata
    from such_market.collections.writes import set_ingestion_state, upsert_collection
    from such_market.events.outbox import outbox_transaction
    from such_market.events.wire import ingest_requested

    _throttle_discovery(runtime, requester)
    metadata = runtime.alchemy.get_contract_metadata(contract=address)
    if metadata is None:
        return None
    with outbox_transaction(runtime.conn, runtime.publisher) as tx:
        stored = upsert_collection(conn=runtime.conn, metadata=collection_metadata(metadata))
        if stored.ingestion_state == "pending":
            stored = set_ingestion_state(conn=runtime.conn, collection_id=stored.id, state="queued") or stored
            tx.add(ingest_requested(address, "first_seen"))
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
        "isSpam": row.is_spam,
        "indexing": is_indexing(row),
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
    requester: Requester | None = None,
) -> Served:
    """Serve ``key`` of a collection's keys: on a miss, find (or discover) the collection and ``answer``.

    Every such key is registered in the collection's index (and ``extra_indexes``), so collection
    events invalidate it; an unknown contract is a short-lived 404.
    """

    def load() -> Entry:
        row = _collection_or_discover(runtime, address, requester)
        return _unknown(address) if row is None else answer(row)

    indexes = [runtime.cache.keys.collection_index(address), *extra_indexes]
    return runtime.cache.fetch(key, tier, load, indexes=indexes, lease_ms=UPSTREAM_LEASE_MS)


# -- use cases ---------------------------------------------------------------------------------------
def metadata_answer(row: CollectionRow) -> Entry:
    """The metadata answer of a stored collection (also what the cache warmer stores)."""
    return _json(200, collection_body(row), brief=is_indexing(row))


def collection_metadata(runtime: Runtime, address: str, *, requester: Requester | None = None) -> Served:
    """GET /api/collection/{address}."""
    key = runtime.cache.keys.collection_metadata(address)
    return _collection_read(runtime, address, key, Tier.HOT, metadata_answer, requester=requester)


def nft_row_body(nft: NftRow) -> dict[str, object]:
    rarity = nft.rarity
    return {
        "tokenId": nft.token_id,
        "title": nft.title,
        "description": nft.description,
        "imageUrl": nft.image_url,
        "thumbnailUrl": nft.thumbnail_url,
        "attributes": nft.attributes,
        "rarity": None if rarity is None else {"rank": rarity.rank, "score": rarity.score},
    }


def nft_page(
    runtime: Runtime,
    address: str,
    *,
    page: int,
    page_size: int,
    filters: Mapping[str, tuple[str, ...]],
    after_token_id: int | None,
    sort: NftSort = "tokenId",
    requester: Requester | None = None,
) -> Served:
    """GET /api/collection/{address}/nfts — a page in numeric token or rarity order, optionally filtered."""
    keys = runtime.cache.keys
    digest = filter_hash(filters)
    if after_token_id is None:
        key = keys.nft_page(address, page, page_size, digest, sort)
    else:
        key = keys.nft_cursor_page(address, after_token_id, page_size, digest, sort)

    def answer(row: CollectionRow) -> Entry:
        return page_answer(
            runtime,
            row,
            page=page,
            page_size=page_size,
            filters=filters,
            after_token_id=after_token_id,
            sort=sort,
            before_upstream=lambda: _throttle_discovery(runtime, requester),
        )

    return _collection_read(runtime, address, key, Tier.WARM, answer, requester=requester)


def page_answer(
    runtime: Runtime,
    row: CollectionRow,
    *,
    page: int,
    page_size: int,
    filters: Mapping[str, tuple[str, ...]],
    after_token_id: int | None,
    sort: NftSort = "tokenId",
    before_upstream: Callable[[], None] | None = None,
) -> Entry:
    """The answer of one NFT page of a stored collection (also what the cache warmer stores); from
    Alchemy only while the collection is not indexed and a token-order page lies beyond what a run
    committed. ``before_upstream`` runs first then: a reader's page pays the discovery throttle (429 past
    it). Rarity pages come from PostgreSQL only: Alchemy lists in token order, and ranks exist only for
    what we hold (a collection not indexed yet has none, so its tokens come in token order, unranked)."""
    from such_market.collections.queries import get_nft_page

    indexing = is_indexing(row)
    result = get_nft_page(
        conn=runtime.conn,
        collection_id=row.id,
        page=page,
        page_size=page_size,
        filters=filters,
        after_token_id=after_token_id,
        sort=sort,
    )
    by_token = sort == "tokenId"
    if by_token and not row.indexed and not filters and not _within_listed(row, result.nfts, page_size):
        if before_upstream is not None:
            before_upstream()
        return _page_from_alchemy(runtime, row, page=page, page_size=page_size, after_token_id=after_token_id)
    shared = _shared_page(
        runtime, row, page=page, page_size=page_size, filters=filters, after=after_token_id, by_token=by_token
    )
    total = int(row.total_supply) if by_token and not row.indexed and not filters and row.total_supply else result.total
    return _json(
        200,
        {
            "nfts": [nft_row_body(nft) for nft in result.nfts],
            "total": total,
            "page": page,
            "pageSize": page_size,
            "hasMore": result.has_more,
            "nextCursor": encode_cursor(result.next_cursor_token_id)
            if result.next_cursor_token_id is not None
            else None,
            "indexing": indexing,
        },
        brief=indexing or not result.nfts,  # an empty page (past the end, a filter matching nothing) is cheap
        cacheable=shared,
    )


def _within_listed(row: CollectionRow, nfts: Sequence[NftRow], page_size: int) -> bool:
    """Whether a page read from a collection never indexed completely is exact: full, and wholly within
    the tokens an ingestion run has committed (stray pages stored by the read path lie beyond it)."""
    through = row.ingestion_listed_through
    return len(nfts) == page_size and through is not None and int(nfts[-1].token_id) <= int(through)


def _shared_page(
    runtime: Runtime,
    row: CollectionRow,
    *,
    page: int,
    page_size: int,
    filters: Mapping[str, tuple[str, ...]],
    after: int | None,
    by_token: bool = True,
) -> bool:
    """Whether a page is one that many clients share, and so worth caching (see the module docstring);
    ``by_token`` False: a rarity-order page, whose cursor pages are served, not cached."""
    if page_size not in CACHED_PAGE_SIZES:
        return False
    if filters:
        return (
            page == 0 and after is None and len(filters) == 1 and all(len(values) == 1 for values in filters.values())
        )
    if after is None:
        return page < MAX_CACHED_PAGES
    if not by_token:
        return False
    from such_market.collections.queries import get_token_position

    position = get_token_position(conn=runtime.conn, collection_id=row.id, token_id=after)
    if position is None:
        return False
    boundary, remainder = divmod(position + 1, page_size)
    return remainder == 0 and boundary < MAX_CACHED_PAGES


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
    from such_market.collections.writes import upsert_nfts

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
                    "rarity": None,  # not ranked before the collection is indexed
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
        brief=True,
    )


def traits_answer(runtime: Runtime, row: CollectionRow) -> Entry:
    """The trait facets of a stored collection (also what the cache warmer stores)."""
    from such_market.collections.queries import get_traits

    facets = get_traits(conn=runtime.conn, collection_id=row.id)
    indexing = is_indexing(row)
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
            "indexing": indexing,
        },
        brief=indexing,
    )


def traits(runtime: Runtime, address: str, *, requester: Requester | None = None) -> Served:
    """GET /api/collection/{address}/traits."""

    def answer(row: CollectionRow) -> Entry:
        return traits_answer(runtime, row)

    return _collection_read(
        runtime, address, runtime.cache.keys.traits(address), Tier.WARM, answer, requester=requester
    )


def nft_detail_body(address: str, detail: NftDetail) -> dict[str, object]:
    return {
        "contractAddress": address,
        **nft_row_body(detail),
        "metadata": detail.metadata,
        "metadataError": METADATA_ERROR if detail.metadata_error else None,
    }


def _fetched_detail(record: NftRecord) -> NftDetail:
    """A token as Alchemy describes it, shaped like a stored one (what ``upsert_nfts`` would store)."""
    from such_market.collections.queries import NftDetail

    return NftDetail(
        str(record.token_id),
        record.title,
        record.description,
        record.image_url,
        record.thumbnail_url,
        list(record.attributes),
        None,  # not stored, so not ranked
        record.metadata,
        record.metadata_error,
    )


def nft(runtime: Runtime, address: str, token_id: int, *, requester: Requester | None = None) -> Served:
    """GET /api/collection/{address}/nfts/{tokenId} — one NFT with its full metadata.

    A token the listing does not hold is read from Alchemy within the discovery throttle, answered and
    cached, but not stored: it joins the listing (pages, totals, facets) only through ingestion or a
    transfer (``ownership.transfers``), never because someone asked for an id. A token a transfer listed
    before its metadata was read gets it read (within the throttle) and stored.
    """

    def answer(row: CollectionRow) -> Entry:
        from such_market.collections.from_alchemy import nft_record
        from such_market.collections.queries import get_nft
        from such_market.collections.writes import upsert_nfts

        detail = get_nft(conn=runtime.conn, collection_id=row.id, token_id=token_id)
        if detail is None or not detail.metadata_read:
            _throttle_discovery(runtime, requester)
            fetched = runtime.alchemy.get_nft_metadata(contract=address, token_id=token_id)
            if fetched is not None and detail is None:
                detail = _fetched_detail(nft_record(fetched))
            elif fetched is not None:
                upsert_nfts(conn=runtime.conn, collection_id=row.id, nfts=[nft_record(fetched)])
                detail = get_nft(conn=runtime.conn, collection_id=row.id, token_id=token_id) or detail
        if detail is None:
            return _not_found(f"no token {token_id} in {address}")
        return _json(
            200,
            nft_detail_body(address, detail),
            # the upstream may read it soon (SPEC §7); a listed token without metadata yet, too
            brief=detail.metadata_error is not None or not detail.metadata_read,
        )

    key = runtime.cache.keys.nft(address, token_id)
    return _collection_read(runtime, address, key, Tier.WARM, answer, requester=requester)


def _owners_answer(
    row: CollectionRow,
    token_id: int,
    owners: Sequence[tuple[str, str | None]],
    verified_at: datetime,
    *,
    cached: bool,
    brief: bool = False,
) -> Entry:
    """The owner answer: ``owners`` as (address, balance) pairs, largest holding first (a balance of
    None: held, amount not known to us)."""
    return _json(
        200,
        {
            "contractAddress": row.contract_address,
            "tokenId": str(token_id),
            "owner": owners[0][0] if owners else None,
            "owners": [{"address": address, "balance": balance} for address, balance in owners],
            "tokenType": row.token_type,
            "cached": cached,
            "verifiedAt": iso_utc_or_none(verified_at),
        },
        brief=brief,
    )


def _stored_answer(row: CollectionRow, token_id: int, owners: Sequence[TokenOwner], *, brief: bool = False) -> Entry:
    pairs = [(owner.owner_address, owner.balance) for owner in owners]
    oldest = min(owner.last_verified_at for owner in owners)
    return _owners_answer(row, token_id, pairs, oldest, cached=True, brief=brief)


def token_owner(runtime: Runtime, address: str, token_id: int, *, requester: Requester | None = None) -> Served:
    """GET /api/collection/{address}/nfts/{tokenId}/owner — from nft_ownership when fresh, else Alchemy.

    A lookup costs one getOwnersForNFT listing (its pages) and nothing per holder: getOwnersForNFT
    names holders only, and reading each ERC-1155 holder's balance cost one getNFTsForOwner call per
    holder (1 + 4.4 calls a token on the stub's collection). Balances come from what we hold instead:
    ERC-721 is 1; an ERC-1155 holder's balance is its stored one. An answer with a holder whose balance
    we do not know says ``balance: null``, is not stored (no guessed balance enters the summaries) and
    is cached briefly; ingestion's owner listing (with balances) or a transfer fills it in. A complete
    answer is stored and then fresh for ``OWNERSHIP_FRESH_FOR``, so repeated misses do not call again.

    Every lookup pays a discovery token (per source IP and overall); when they are spent, a token
    whose stale owners we hold is served from them (``cached: true``, ``verifiedAt`` says how old),
    any other gets 429.
    """

    def answer(row: CollectionRow) -> Entry:
        from such_market.collections.queries import get_token_owners
        from such_market.collections.writes import set_token_owners

        stored = get_token_owners(conn=runtime.conn, collection_id=row.id, token_id=token_id)
        now = datetime.now(UTC)
        if stored and all(owner.last_verified_at > now - OWNERSHIP_FRESH_FOR for owner in stored):
            return _stored_answer(row, token_id, stored)
        if stored and _discovery_wait(runtime, requester) > 0:
            return _stored_answer(row, token_id, stored, brief=True)
        if not stored:
            _throttle_discovery(runtime, requester)
        holders = runtime.alchemy.get_owners_for_nft(
            contract=address, token_id=token_id, token_type=row.token_type, balance_lookup_limit=0
        )
        if not holders:
            return _not_found(f"token {token_id} of {address} has no owner")
        known = {owner.owner_address: owner.balance for owner in stored}
        observed = [(holder.address, holder.balance or known.get(holder.address)) for holder in holders]
        balances = [(holder, int(balance)) for holder, balance in observed if balance is not None]
        if len(balances) < len(observed):
            return _owners_answer(row, token_id, observed, now, cached=False, brief=True)
        try:
            owners = set_token_owners(conn=runtime.conn, collection_id=row.id, token_id=token_id, owners=balances)
        except ValueError:
            # Alchemy names several holders of an ERC-721 token (a re-org in flight, bad data):
            # answer what it says, but do not store an impossible state.
            logger.warning("ERC-721 token with several holders upstream", extra={"token_id": str(token_id)})
            return _owners_answer(row, token_id, observed, now, cached=False)
        return _owners_answer(
            row,
            token_id,
            [(owner.owner_address, owner.balance) for owner in owners],
            min(owner.last_verified_at for owner in owners),
            cached=False,
        )

    key = runtime.cache.keys.ownership(address, token_id)
    return _collection_read(runtime, address, key, Tier.HOT, answer, requester=requester)


def owned_tokens(
    runtime: Runtime, address: str, wallet: str, *, page: int, page_size: int, requester: Requester | None = None
) -> Served:
    """GET /api/collection/{address}/nfts/owned?userAddress= — the wallet's tokens in the collection."""

    def answer(row: CollectionRow) -> Entry:
        from such_market.collections.queries import get_owned_tokens

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
                "indexing": is_indexing(row),
            },
            # Any wallet may be asked for: one holding nothing here is kept as briefly as a not-found.
            brief=is_indexing(row) or not result.nfts,
        )

    keys = runtime.cache.keys
    return _collection_read(
        runtime,
        address,
        keys.owned(address, wallet, page, page_size),
        Tier.HOT,
        answer,
        extra_indexes=[keys.owned_index(address, wallet)],
        requester=requester,
    )


def require_collection(runtime: Runtime, address: str, *, requester: Requester | None = None) -> CollectionRow:
    """The stored (or newly discovered) collection, or 404."""
    row = _collection_or_discover(runtime, address, requester)
    if row is None:
        raise NotFoundError(f"no NFT contract at {address}")
    return row
