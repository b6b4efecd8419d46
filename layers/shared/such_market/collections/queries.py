"""Read functions of the collection endpoints, each one round trip to PostgreSQL in the common case.

Every function is keyword-only, takes an autocommit psycopg connection and returns frozen dataclasses
holding exactly what the API answers (token ids and uint256 quantities as decimal strings, timestamps as
``datetime``), so a use case can serialize them with orjson without re-shaping.

NFT pages (``get_nft_page``), ordered by numeric token id:

- by page number, no filter: a range scan of ``nfts (collection_id, position)``, i.e. O(page_size) at any
  depth. It needs the collection fully ranked (no ``position IS NULL``, one probe of a partial index); the
  total is then ``max(position) + 1`` (one index probe). While ranks are missing (ingestion has written
  rows but not ranked them yet) the page is an ``OFFSET`` over the primary key, O(depth), and the total a
  ``count(*)``; the answer is the same, only slower.
- by cursor (``after_token_id``): a keyset scan ``token_id > after`` over the primary key, with or without
  filters; the page number is then ignored.
- with trait filters (AND across trait types, OR within one): the token ids of each trait type are
  ``trait_value = ANY(values)`` range scans of the ``nft_traits`` primary key, intersected, and the page
  is cut from them in token order (reading only up to offset + limit). The total comes from the trait
  bitmaps (``collection_traits.positions``, migration 0010): ``bit_count`` of the AND over types of the
  OR over each type's values, a few kB of bit operations whatever the match size. Bitmaps are used only
  when every filtered value's bitmap carries the collection's current generation (read in the same
  statement); otherwise (ranks or traits changed since the last ``rebuild_traits``, a value with no
  bitmap) a second statement counts the intersection exactly, as before. Same answer, only slower.

Rarity order (``sort`` ``rarity`` / ``-rarity``, migration 0016): placed tokens by ``rarity_position``
(rank, then token id; reversed for ``-rarity``), then unplaced ones in token order (``_rarity_page``). An
unfiltered page by number is a place range, O(page_size) at any depth; a filtered one picks its places
from the rarity bitmaps (``collection_traits.rarity_positions``: total and page from a few kB of bits);
without current bitmaps it walks the order probing the filter, or sorts the matches when there are fewer
of them than the walk would read. Same answer, only slower.

The SQL texts are constants (the filtered one exists once per number of trait types), so psycopg's
automatic prepared statements apply.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from such_market.validation import NftSort

    Connection = psycopg.Connection[tuple[Any, ...]]

NO_FILTERS: Mapping[str, Sequence[str]] = {}

# Positions are `integer`: a page that starts beyond it is empty anyway, and clamping keeps the parameter
# an integer so the comparison stays indexable.
_MAX_POSITION = 2**31 - 1
# Token ids are >= 0 (a table constraint): "after -1" is "from the start", which keeps keyset SQL static.
_NO_TOKEN = -1
# A filter lists up to this many values of one trait type as separate (mergeable) range scans.
_MAX_LISTED_VALUES = 8


@dataclass(frozen=True, slots=True)
class CollectionRow:
    """One collection: its metadata and the state of its ingestion."""

    id: uuid.UUID
    contract_address: str
    name: str | None
    symbol: str | None
    token_type: str
    total_supply: str | None
    image_url: str | None
    description: str | None
    verified: bool
    ingestion_state: str
    nfts_indexed: int
    owners_indexed: int
    ingestion_error: str | None
    ingestion_started_at: datetime | None
    ingestion_finished_at: datetime | None
    last_refresh_at: datetime | None
    refresh_cooldown_until: datetime | None
    created_at: datetime
    updated_at: datetime
    ingestion_completed_at: datetime | None
    ingestion_attempts: int
    ingestion_retry_at: datetime | None
    ingestion_resume_key: str | None
    ingestion_listed_through: str | None
    is_spam: bool = False

    @property
    def indexed(self) -> bool:
        """Whether an ingestion of the collection ever completed: until then the tables hold a partial
        index (migration 0014)."""
        return self.ingestion_completed_at is not None


@dataclass(frozen=True, slots=True)
class Rarity:
    """A token's OpenRarity place in its collection (``collections.rarity``): rank 1 is the rarest."""

    rank: int
    score: float


@dataclass(frozen=True, slots=True)
class NftRow:
    """One NFT as pages list it; ``attributes`` is the stored list of ``{trait_type, value}``; ``rarity``
    None while the token is not ranked."""

    token_id: str
    title: str | None
    description: str | None
    image_url: str | None
    thumbnail_url: str | None
    attributes: list[dict[str, Any]]
    rarity: Rarity | None


@dataclass(frozen=True, slots=True)
class NftDetail(NftRow):
    """One NFT with its full upstream metadata and the error the upstream reported for it, if any;
    ``metadata_read`` is False for a token a transfer listed before its metadata was ever read."""

    metadata: dict[str, Any] | None
    metadata_error: str | None
    metadata_read: bool = True


@dataclass(frozen=True, slots=True)
class NftPage:
    """A page of NFTs: ``total`` counts every match (not just this page); ``next_cursor_token_id`` is the
    last token id of the page when ``has_more`` (pass it as ``after_token_id`` for the next page)."""

    nfts: list[NftRow]
    total: int
    has_more: bool
    next_cursor_token_id: int | None


@dataclass(frozen=True, slots=True)
class TraitValueCount:
    value: str
    count: int


@dataclass(frozen=True, slots=True)
class TraitFacet:
    """One trait type and its values, most common first."""

    trait_type: str
    values: list[TraitValueCount]


@dataclass(frozen=True, slots=True)
class CollectionTraits:
    traits: list[TraitFacet]
    total_tokens: int


@dataclass(frozen=True, slots=True)
class TokenOwner:
    owner_address: str
    balance: str
    last_verified_at: datetime


COLLECTION_COLUMNS = """
    id, contract_address, name, symbol, token_type, total_supply::text, image_url, description, verified,
    ingestion_state, nfts_indexed, owners_indexed, ingestion_error, ingestion_started_at, ingestion_finished_at,
    last_refresh_at, refresh_cooldown_until, created_at, updated_at, ingestion_completed_at, ingestion_attempts,
    ingestion_retry_at, ingestion_resume_key, ingestion_listed_through::text, is_spam
"""

_GET_COLLECTION = f"SELECT {COLLECTION_COLUMNS} FROM collections WHERE contract_address = %(address)s"  # noqa: S608

# The token total of a collection: max(position) + 1 when every row is ranked, else an exact count.
_TOTAL = """
    CASE WHEN EXISTS (SELECT 1 FROM nfts WHERE collection_id = %(collection_id)s AND position IS NULL)
         THEN (SELECT count(*) FROM nfts WHERE collection_id = %(collection_id)s)
         ELSE (SELECT coalesce(max(position) + 1, 0) FROM nfts WHERE collection_id = %(collection_id)s)
    END
"""

_NFT_COLUMNS = (
    "n.token_id::text, n.title, n.description, n.image_url, n.thumbnail_url, n.attributes, n.rarity_rank,"
    " n.rarity_score"
)

# One row per NFT of the page, each carrying the collection facts; a page past the end yields one row of
# NULL NFT columns. The NFT scan runs only when the collection is fully ranked.
_PAGE_BY_POSITION = f"""
SELECT s.ranked, s.total, {_NFT_COLUMNS}
FROM (
    SELECT NOT EXISTS (SELECT 1 FROM nfts WHERE collection_id = %(collection_id)s AND position IS NULL) AS ranked,
           (SELECT coalesce(max(position) + 1, 0) FROM nfts WHERE collection_id = %(collection_id)s) AS total
) AS s
LEFT JOIN LATERAL (
    SELECT * FROM nfts
    WHERE s.ranked AND collection_id = %(collection_id)s
      AND position >= %(first)s AND position < %(first)s + %(size)s
) AS n ON true
ORDER BY n.position
"""  # noqa: S608

_PAGE_BY_OFFSET = f"""
SELECT s.total, {_NFT_COLUMNS}
FROM (SELECT count(*) AS total FROM nfts WHERE collection_id = %(collection_id)s) AS s
LEFT JOIN LATERAL (
    SELECT * FROM nfts WHERE collection_id = %(collection_id)s
    ORDER BY token_id OFFSET %(offset)s LIMIT %(limit)s
) AS n ON true
ORDER BY n.token_id
"""  # noqa: S608

_PAGE_AFTER = f"""
SELECT s.total, {_NFT_COLUMNS}
FROM (SELECT {_TOTAL} AS total) AS s
LEFT JOIN LATERAL (
    SELECT * FROM nfts WHERE collection_id = %(collection_id)s AND token_id > %(after)s::numeric
    ORDER BY token_id LIMIT %(limit)s
) AS n ON true
ORDER BY n.token_id
"""  # noqa: S608

_TRAITS = f"""
SELECT ({_TOTAL}) AS total, t.trait_type, t.trait_value, t.token_count
FROM (SELECT 1) AS one
LEFT JOIN collection_traits AS t ON t.collection_id = %(collection_id)s
ORDER BY t.trait_type, t.token_count DESC, t.trait_value
"""  # noqa: S608

_GET_NFT = """
SELECT token_id::text, title, description, image_url, thumbnail_url, attributes, rarity_rank, rarity_score,
       metadata, metadata_error, attributes IS NOT NULL
FROM nfts WHERE collection_id = %(collection_id)s AND token_id = %(token_id)s::numeric
"""

# A row's verification time is the later of its own stamp and its collection's last bulk sync (0011).
_TOKEN_OWNERS = """
SELECT o.owner_address, o.balance::text, greatest(o.last_verified_at, s.verified_at)
FROM nft_ownership AS o
LEFT JOIN collection_owner_syncs AS s ON s.collection_id = o.collection_id
WHERE o.collection_id = %(collection_id)s AND o.token_id = %(token_id)s::numeric
ORDER BY o.balance DESC, o.owner_address
"""

# The wallet's tokens in token order from nft_ownership (owner_address, collection_id, token_id); a token
# whose metadata was never ingested is still listed, with NULL metadata. The total is the trigger-kept
# user_collections figure.
_OWNED = """
SELECT s.total, o.token_id::text, n.title, n.description, n.image_url, n.thumbnail_url, n.attributes,
       n.rarity_rank, n.rarity_score
FROM (
    SELECT coalesce((SELECT token_count FROM user_collections
                     WHERE owner_address = %(owner)s AND collection_id = %(collection_id)s), 0) AS total
) AS s
LEFT JOIN LATERAL (
    SELECT token_id FROM nft_ownership
    WHERE owner_address = %(owner)s AND collection_id = %(collection_id)s
      AND token_id > %(after)s::numeric
    ORDER BY token_id OFFSET %(offset)s LIMIT %(limit)s
) AS o ON true
LEFT JOIN nfts AS n ON n.collection_id = %(collection_id)s AND n.token_id = o.token_id
ORDER BY o.token_id
"""


_HOLDINGS = "SELECT owner_address, token_count, total_balance::text FROM user_collections WHERE collection_id = %s"

_TOKEN_IDS_THROUGH = """
SELECT token_id FROM nfts WHERE collection_id = %(collection_id)s AND token_id <= %(through)s::numeric
"""

_TOKEN_POSITION = """
SELECT position FROM nfts WHERE collection_id = %(collection_id)s AND token_id = %(token_id)s::numeric
"""


def get_collection(*, conn: Connection, address: str) -> CollectionRow | None:
    """The collection of ``address`` (lower-case 0x address), or None when it is not known."""
    row = conn.execute(_GET_COLLECTION, {"address": address}).fetchone()
    return None if row is None else collection_row(row)


def get_nft_page(
    *,
    conn: Connection,
    collection_id: uuid.UUID,
    page: int,
    page_size: int,
    filters: Mapping[str, Sequence[str]] = NO_FILTERS,
    after_token_id: int | None = None,
    sort: NftSort = "tokenId",
) -> NftPage:
    """One page of the collection's NFTs in numeric token order, or with ``sort`` ``rarity`` rarest first
    and ``-rarity`` most common first (see the module docstring for the plans).

    ``filters`` maps a trait type to the values accepted for it: a token matches when, for every type, it
    has at least one of the values (a type with no values matches nothing). With ``after_token_id`` the
    page holds the tokens after that one in the page's order (keyset) and ``page`` is ignored; ``total``
    is always the size of the whole (filtered) collection.
    """
    _check_page(page, page_size)
    if sort != "tokenId":
        return _rarity_page(
            conn=conn,
            collection_id=collection_id,
            page=page,
            page_size=page_size,
            filters=filters,
            after_token_id=after_token_id,
            descending=sort == "-rarity",
        )
    if filters:
        return _filtered_page(
            conn=conn,
            collection_id=collection_id,
            page=page,
            page_size=page_size,
            filters=filters,
            after_token_id=after_token_id,
        )
    if after_token_id is not None:
        rows = conn.execute(
            _PAGE_AFTER, {"collection_id": collection_id, "after": after_token_id, "limit": page_size + 1}
        ).fetchall()
        return _keyset_page(rows, page_size)
    first = page * page_size
    rows = conn.execute(
        _PAGE_BY_POSITION,
        {"collection_id": collection_id, "first": min(first, _MAX_POSITION), "size": page_size},
    ).fetchall()
    ranked, total = bool(rows[0][0]), int(rows[0][1])
    nfts = [_nft_row(row[2:]) for row in rows if row[2] is not None]
    if ranked and len(nfts) == max(0, min(page_size, total - first)):
        has_more = first + len(nfts) < total
        return NftPage(nfts, total, has_more, int(nfts[-1].token_id) if has_more else None)
    # Not (fully) ranked yet: the same page by OFFSET over the primary key.
    rows = conn.execute(
        _PAGE_BY_OFFSET, {"collection_id": collection_id, "offset": first, "limit": page_size + 1}
    ).fetchall()
    return _keyset_page(rows, page_size)


def get_traits(*, conn: Connection, collection_id: uuid.UUID) -> CollectionTraits:
    """The collection's trait facets (by type; values most common first, then by value) and its token
    count."""
    rows = conn.execute(_TRAITS, {"collection_id": collection_id}).fetchall()
    facets: list[TraitFacet] = []
    for _, trait_type, value, count in rows:
        if trait_type is None:
            break
        if not facets or facets[-1].trait_type != trait_type:
            facets.append(TraitFacet(trait_type, []))
        facets[-1].values.append(TraitValueCount(value, count))
    return CollectionTraits(facets, int(rows[0][0]))


def get_nft(*, conn: Connection, collection_id: uuid.UUID, token_id: int) -> NftDetail | None:
    """One NFT with its full metadata, or None when the collection has no such token (yet)."""
    row = conn.execute(_GET_NFT, {"collection_id": collection_id, "token_id": token_id}).fetchone()
    if row is None:
        return None
    token, title, description, image_url, thumbnail_url, attributes, rank, score, metadata, metadata_error, read = row
    return NftDetail(
        token,
        title,
        description,
        image_url,
        thumbnail_url,
        attributes or [],
        _rarity(rank, score),
        metadata,
        metadata_error,
        read,
    )


def get_token_owners(*, conn: Connection, collection_id: uuid.UUID, token_id: int) -> list[TokenOwner]:
    """Who holds the token (largest balance first); empty when nobody is known to."""
    rows = conn.execute(_TOKEN_OWNERS, {"collection_id": collection_id, "token_id": token_id}).fetchall()
    return [TokenOwner(owner, balance, verified_at) for owner, balance, verified_at in rows]


def get_owned_tokens(
    *,
    conn: Connection,
    collection_id: uuid.UUID,
    owner: str,
    page: int,
    page_size: int,
    after_token_id: int | None = None,
) -> NftPage:
    """The tokens ``owner`` holds in the collection, in token order, paged like ``get_nft_page`` (the
    total comes from ``user_collections``; ``after_token_id`` switches to keyset and ignores ``page``)."""
    _check_page(page, page_size)
    offset = 0 if after_token_id is not None else page * page_size
    rows = conn.execute(
        _OWNED,
        {
            "collection_id": collection_id,
            "owner": owner,
            "after": _NO_TOKEN if after_token_id is None else after_token_id,
            "offset": offset,
            "limit": page_size + 1,
        },
    ).fetchall()
    return _keyset_page(rows, page_size)


def collection_holdings(*, conn: Connection, collection_id: uuid.UUID) -> dict[str, tuple[int, str]]:
    """Each wallet holding some of the collection → (its token count, its total balance as a decimal
    string), as the ``user_collections`` summary says."""
    rows = conn.execute(_HOLDINGS, (collection_id,))
    return {owner: (int(count), balance) for owner, count, balance in rows}


def get_token_ids_through(*, conn: Connection, collection_id: uuid.UUID, through: int) -> list[int]:
    """The ids of the collection's stored tokens at or below ``through`` (a resumed ingestion's listed part)."""
    rows = conn.execute(_TOKEN_IDS_THROUGH, {"collection_id": collection_id, "through": through}).fetchall()
    return [int(token_id) for (token_id,) in rows]


def get_token_position(*, conn: Connection, collection_id: uuid.UUID, token_id: int) -> int | None:
    """The token's rank (``nfts.position``), or None when it is unranked or not stored."""
    row = conn.execute(_TOKEN_POSITION, {"collection_id": collection_id, "token_id": token_id}).fetchone()
    return None if row is None else row[0]


def collection_row(row: tuple[Any, ...]) -> CollectionRow:
    """A ``CollectionRow`` from a row selected with ``COLLECTION_COLUMNS``."""
    return CollectionRow(*row)


def _check_page(page: int, page_size: int) -> None:
    if page < 0 or page_size < 1:
        raise ValueError(f"page must be >= 0 and page_size >= 1 (got {page}, {page_size})")


def _nft_row(row: Sequence[Any]) -> NftRow:
    token, title, description, image_url, thumbnail_url, attributes, rank, score = row
    return NftRow(token, title, description, image_url, thumbnail_url, attributes or [], _rarity(rank, score))


def _rarity(rank: int | None, score: float | None) -> Rarity | None:
    return None if rank is None or score is None else Rarity(rank, score)


def _keyset_page(rows: list[tuple[Any, ...]], page_size: int) -> NftPage:
    """A page from rows of (total, NFT columns…) fetched with LIMIT page_size + 1: the extra row, if any,
    only says that more follow."""
    nfts = [_nft_row(row[1:]) for row in rows if row[1] is not None]
    has_more = len(nfts) > page_size
    del nfts[page_size:]
    return NftPage(nfts, int(rows[0][0]), has_more, int(nfts[-1].token_id) if has_more else None)


def _filter_params(
    collection_id: uuid.UUID, filters: Mapping[str, Sequence[str]]
) -> tuple[dict[str, object], tuple[int, ...]]:
    """The parameters of a filter's SQL (``type_<i>`` with ``value_<i>_<j>`` or ``values_<i>``, per trait
    type in name order) and its shape (see ``_filtered_sql``)."""
    params: dict[str, object] = {"collection_id": collection_id}
    shape: list[int] = []
    for index, trait_type in enumerate(sorted(filters)):
        values = list(dict.fromkeys(filters[trait_type]))
        params[f"type_{index}"] = trait_type
        if not 0 < len(values) <= _MAX_LISTED_VALUES:
            params[f"values_{index}"] = values
            shape.append(0)
        else:
            params.update({f"value_{index}_{position}": value for position, value in enumerate(values)})
            shape.append(len(values))
    return params, tuple(shape)


def _bitmap_params(filters: Mapping[str, Sequence[str]]) -> dict[str, object]:
    """The filtered (type, value) pairs, each once, as ``_CURRENT_BITMAPS`` takes them."""
    pairs = sorted({(trait_type, value) for trait_type, values in filters.items() for value in values})
    return {
        "types": [trait_type for trait_type, _ in pairs],
        "values": [value for _, value in pairs],
        "pairs": len(pairs),
    }


def _filtered_page(
    *,
    conn: Connection,
    collection_id: uuid.UUID,
    page: int,
    page_size: int,
    filters: Mapping[str, Sequence[str]],
    after_token_id: int | None,
) -> NftPage:
    params, shape = _filter_params(collection_id, filters)
    params.update(
        {
            "after": _NO_TOKEN if after_token_id is None else after_token_id,
            "offset": 0 if after_token_id is not None else page * page_size,
            "limit": page_size + 1,
        }
    )
    # Custom plans (prepare=False): the best join order depends on how common each value is.
    if all(filters.values()):
        # Every (type, value) pair once; the bitmap total needs each of them current.
        params.update(_bitmap_params(filters))
        rows = conn.execute(_bitmap_filtered_sql(shape), params, prepare=False).fetchall()
        if rows[0][0]:
            return _keyset_page([row[1:] for row in rows], page_size)
    # No current bitmaps (or a type with no accepted value): the exact count of the intersection.
    rows = conn.execute(_filtered_sql(shape), params, prepare=False).fetchall()
    return _keyset_page(rows, page_size)


# -- rarity order (migration 0016) ------------------------------------------------------------------
# Ranked tokens come in rarity_position order (ascending for sort=rarity, descending for -rarity), then the
# unranked ones in token order. Page p of an unfiltered collection is the position range counted from the
# start or the end; the statement also says how many are ranked, so the caller can tell a full range from
# one with a hole (then it walks instead).
_RARITY_RANGE = f"""
SELECT s.ranked, s.total, {_NFT_COLUMNS}
FROM (
    SELECT (SELECT coalesce(max(rarity_position) + 1, 0) FROM nfts WHERE collection_id = %(collection_id)s) AS ranked,
           {_TOTAL} AS total
) AS s
LEFT JOIN LATERAL (
    SELECT * FROM nfts
    WHERE collection_id = %(collection_id)s
      AND rarity_position >= {{low}} AND rarity_position < {{high}}
) AS n ON true
ORDER BY n.rarity_position {{direction}}
"""  # noqa: S608
_RARITY_RANGE_ASCENDING = _RARITY_RANGE.format(low="%(first)s", high="%(first)s + %(size)s", direction="ASC")
_RARITY_RANGE_DESCENDING = _RARITY_RANGE.format(
    low="s.ranked - %(first)s - %(size)s", high="s.ranked - %(first)s", direction="DESC"
)

_RARITY_CURSOR = """
SELECT rarity_position FROM nfts WHERE collection_id = %(collection_id)s AND token_id = %(token_id)s::numeric
"""

_FILTER_TOTAL_EXACT = "SELECT count(*), {tokens} FROM {matched}"


def _rarity_page(
    *,
    conn: Connection,
    collection_id: uuid.UUID,
    page: int,
    page_size: int,
    filters: Mapping[str, Sequence[str]],
    after_token_id: int | None,
    descending: bool,
) -> NftPage:
    """A page in rarity order (see ``_RARITY_RANGE``); ``after_token_id`` continues after that token's place.

    Plans: an unfiltered page by number is a position range, O(page_size) at any depth. Otherwise the page
    is a walk: the rarity index in order (then the unranked tokens), each row kept when it matches the
    filter (one ``nft_traits`` primary-key probe per trait type), up to offset + limit rows; cost
    (offset + limit) / selectivity. A filter whose matches are fewer than that walk would read sorts its
    matches instead (the same intersection as the token-order plan, then a sort of the matches by place):
    cost O(matches). The filtered total comes from the trait bitmaps when current, else an exact count.
    """
    first = page * page_size
    if not filters and after_token_id is None:
        ranged = _rarity_range_page(conn, collection_id, first, page_size, descending=descending)
        if ranged is not None:
            return ranged
    params: dict[str, object] = {"collection_id": collection_id}
    offset = 0 if after_token_id is not None else first
    cursor = _rarity_cursor(conn, collection_id, after_token_id, descending=descending)
    if filters and all(filters.values()) and not cursor["after_unranked"]:
        picked = _rarity_bitmap_page(
            conn, collection_id, filters, cursor, offset=offset, page_size=page_size, descending=descending
        )
        if picked is not None:
            return picked
    shape: tuple[int, ...] = ()
    matches: int | None = None  # a filter's; the unfiltered walk counts the collection itself
    tokens = 0
    if filters:
        filter_params, shape = _filter_params(collection_id, filters)
        matches, tokens = _filtered_total(conn, filter_params, shape, filters)
        params |= filter_params | {"total": matches}
    params |= cursor | {"offset": offset, "limit": page_size + 1}
    # The walk reads about (offset + limit) * tokens / matches rows; sorting the matches costs about matches.
    if matches is not None and matches * matches < (offset + page_size + 1) * tokens:
        statement = _rarity_sorted_sql(shape, descending)
    else:
        statement = _rarity_walk_sql(shape, descending)
    rows = conn.execute(statement, params, prepare=not filters).fetchall()
    return _keyset_page(rows, page_size)


def _rarity_range_page(
    conn: Connection, collection_id: uuid.UUID, first: int, page_size: int, *, descending: bool
) -> NftPage | None:
    """The unfiltered rarity page starting at place ``first`` as a position range, or None when the range
    is not complete (a hole left by a delete, or the page reaches unranked tokens): walk instead."""
    params = {"collection_id": collection_id, "first": min(first, _MAX_POSITION), "size": page_size}
    statement = _RARITY_RANGE_DESCENDING if descending else _RARITY_RANGE_ASCENDING
    rows = conn.execute(statement, params).fetchall()
    ranked, total = int(rows[0][0]), int(rows[0][1])
    nfts = [_nft_row(row[2:]) for row in rows if row[2] is not None]
    if len(nfts) != max(0, min(page_size, ranked - first)) or (first + page_size > ranked and ranked != total):
        return None
    has_more = first + len(nfts) < total
    return NftPage(nfts, total, has_more, int(nfts[-1].token_id) if has_more else None)


# The filter's matches as a bit string over rarity places (migration 0016's bitmaps), when every
# filtered value has a bitmap built for the collection's current generation, and how many tokens it has.
_RARITY_BITMAP_MATCHES = f"""
WITH current AS (
    SELECT ct.trait_type, ct.rarity_positions AS positions
    FROM unnest(%(types)s::text[], %(values)s::text[]) AS f(trait_type, trait_value)
    JOIN collection_traits AS ct
      ON ct.collection_id = %(collection_id)s AND ct.trait_type = f.trait_type AND ct.trait_value = f.trait_value
    WHERE ct.rarity_positions_generation = (
        SELECT generation FROM collection_trait_generations WHERE collection_id = %(collection_id)s
    )
)
SELECT (SELECT count(*) FROM current) = %(pairs)s,
       (SELECT bit_and(t.bits) FROM (SELECT bit_or(positions) AS bits FROM current GROUP BY trait_type) AS t)::text,
       {_TOTAL}
"""  # noqa: S608

_RARITY_PLACES = f"""
SELECT {_NFT_COLUMNS} FROM nfts AS n
WHERE n.collection_id = %(collection_id)s AND n.rarity_position = ANY(%(places)s::integer[])
ORDER BY n.rarity_position {{direction}}
"""  # noqa: S608


def _rarity_bitmap_page(
    conn: Connection,
    collection_id: uuid.UUID,
    filters: Mapping[str, Sequence[str]],
    cursor: Mapping[str, object],
    *,
    offset: int,
    page_size: int,
    descending: bool,
) -> NftPage | None:
    """A filtered rarity page from the rarity bitmaps: the matches' places are the set bits of the AND
    over types of the OR of each type's values, so the total is their count and the page the next
    ``page_size`` of them after ``offset`` (or the cursor's place): a few kB of bits and one index probe per
    row, at any depth. None when some filtered value has no current bitmap, when some token is not placed
    (the bitmaps cover placed tokens only), or when the places moved between the two statements."""
    row = conn.execute(_RARITY_BITMAP_MATCHES, {"collection_id": collection_id, **_bitmap_params(filters)}).fetchone()
    if row is None or not row[0] or row[1] is None or len(row[1]) != int(row[2]):
        return None
    bits: str = row[1]
    ordered = bits[::-1] if descending else bits  # index i of ``ordered`` is place len-1-i for -rarity
    after = int(cursor["after_position"])  # type: ignore[call-overload]
    start = 0 if after in {-1, _MAX_POSITION} else (len(bits) - after if descending else after + 1)
    indexes = _set_bits(ordered, start, skip=offset, take=page_size + 1)
    places = [len(bits) - 1 - index for index in indexes] if descending else indexes
    shown = places[:page_size]
    statement = _RARITY_PLACES.format(direction="DESC" if descending else "ASC")
    rows = conn.execute(statement, {"collection_id": collection_id, "places": shown}).fetchall()
    if len(rows) != len(shown):
        return None
    nfts = [_nft_row(row) for row in rows]
    has_more = len(places) > page_size
    return NftPage(nfts, bits.count("1"), has_more, int(nfts[-1].token_id) if has_more else None)


def _set_bits(bits: str, start: int, *, skip: int, take: int) -> list[int]:
    """The indexes of up to ``take`` set bits of ``bits`` ('0'/'1' text) from ``start`` on, after skipping
    ``skip`` of them: a binary search over C-speed counts for the skip, then ``find``."""
    low, high = start, len(bits)
    if skip:
        while low < high:  # the smallest end with ``skip`` set bits in [start, end)
            middle = (low + high) // 2
            if bits.count("1", start, middle) >= skip:
                high = middle
            else:
                low = middle + 1
    found: list[int] = []
    index = low
    while len(found) < take:
        index = bits.find("1", index)
        if index < 0:
            break
        found.append(index)
        index += 1
    return found


def _rarity_cursor(
    conn: Connection, collection_id: uuid.UUID, after_token_id: int | None, *, descending: bool
) -> dict[str, object]:
    """Where a rarity-order page starts: for ``_rarity_walk_sql``, ranked tokens beyond ``after_position``
    (in the page's direction), then unranked tokens above ``unranked_after``; for ``_rarity_sorted_sql``,
    the sort key of the cursor's token (``after_unranked``, ``after_key``, ``after_token``)."""
    start: dict[str, object] = {
        "after_position": _MAX_POSITION if descending else -1,
        "unranked_after": _NO_TOKEN,
        "after_unranked": False,
        "after_key": -(2**62),
        "after_token": _NO_TOKEN,
    }
    if after_token_id is None:
        return start
    row = conn.execute(_RARITY_CURSOR, {"collection_id": collection_id, "token_id": after_token_id}).fetchone()
    position = None if row is None else row[0]
    if position is None:  # an unranked token (or one gone): the ranked part lies before it
        return {
            "after_position": -1 if descending else _MAX_POSITION,
            "unranked_after": after_token_id,
            "after_unranked": True,
            "after_key": 0,
            "after_token": after_token_id,
        }
    return start | {
        "after_position": position,
        "after_key": -position if descending else position,
        "after_token": after_token_id,
    }


def _filtered_total(
    conn: Connection, params: Mapping[str, object], shape: tuple[int, ...], filters: Mapping[str, Sequence[str]]
) -> tuple[int, int]:
    """(tokens matching the filter, tokens of the collection): the match count from current trait bitmaps
    when every filtered value has one, else counted exactly."""
    if all(filters.values()):
        row = conn.execute(
            f"{_CURRENT_BITMAPS}\nSELECT b.usable, b.total, {_TOTAL} FROM ({_BITMAP_TOTAL}) AS b",
            {**params, **_bitmap_params(filters)},
        ).fetchone()
        assert row is not None  # noqa: S101 - a one-row SELECT
        if row[0]:
            return int(row[1] or 0), int(row[2])
    row = conn.execute(
        _FILTER_TOTAL_EXACT.format(tokens=_TOTAL, matched=_matched_sql(shape, "")), params, prepare=False
    ).fetchone()
    assert row is not None  # noqa: S101 - a one-row SELECT
    return int(row[0]), int(row[1])


def _filter_probes(shape: tuple[int, ...]) -> str:
    """One ``nft_traits`` primary-key probe per filtered trait type, for the row ``nfts`` of a walk. Each is
    a scalar subquery (``LIMIT 1``), which PostgreSQL runs per row as it is reached: an ``EXISTS`` would be
    pulled up into a semi-join that reads every match of the value before the first row comes out."""
    probes = []
    for index, values in enumerate(shape):
        if values == 0:
            accepted = f"ANY(%(values_{index})s::text[])"
        else:
            accepted = f"ANY(ARRAY[{', '.join(f'%(value_{index}_{j})s' for j in range(values))}]::text[])"
        probes.append(
            "\n      AND (SELECT true FROM nft_traits AS t WHERE t.collection_id = %(collection_id)s"  # noqa: S608
            f" AND t.trait_type = %(type_{index})s AND t.trait_value = {accepted} AND t.token_id = nfts.token_id"
            " LIMIT 1)"
        )
    return "".join(probes)


@functools.lru_cache(maxsize=256)
def _rarity_walk_sql(shape: tuple[int, ...], descending: bool) -> str:
    """The walk (see ``_rarity_page``): the ranked branch in the page's direction, then the unranked tokens
    in token order, read lazily (an Append under a LIMIT stops at offset + limit rows). ``shape`` () is
    the unfiltered walk; its total is the collection's, a filter's is passed in (``%(total)s``)."""
    probes = _filter_probes(shape)
    comparison, direction = ("<", "DESC") if descending else (">", "ASC")
    total = "%(total)s::bigint" if shape else _TOTAL
    return f"""
SELECT s.total, {_NFT_COLUMNS}
FROM (SELECT {total} AS total) AS s
LEFT JOIN LATERAL (
    SELECT * FROM (
        (SELECT nfts.*, 0 AS unranked FROM nfts
         WHERE collection_id = %(collection_id)s AND rarity_position {comparison} %(after_position)s{probes}
         ORDER BY rarity_position {direction})
        UNION ALL
        (SELECT nfts.*, 1 AS unranked FROM nfts
         WHERE collection_id = %(collection_id)s AND rarity_position IS NULL
           AND token_id > %(unranked_after)s::numeric{probes}
         ORDER BY token_id)
    ) AS walk
    OFFSET %(offset)s LIMIT %(limit)s
) AS n ON true
ORDER BY n.unranked, n.rarity_position {direction}, n.token_id
"""  # noqa: S608


@functools.lru_cache(maxsize=256)
def _rarity_sorted_sql(shape: tuple[int, ...], descending: bool) -> str:
    """A filter's matches (the token-order plan's intersection) sorted by place: ranked first in the page's
    direction, then unranked by token id; the cursor is the sort key of its token."""
    sign = "-1" if descending else "1"
    key = f"(n.rarity_position IS NULL), coalesce(n.rarity_position::bigint * {sign}, 0), n.token_id"
    return f"""
SELECT s.total, {_NFT_COLUMNS}
FROM (SELECT %(total)s::bigint AS total) AS s
LEFT JOIN LATERAL (
    SELECT n.* FROM {_matched_sql(shape, "")}
    JOIN nfts AS n ON n.collection_id = %(collection_id)s AND n.token_id = t0.token_id
    WHERE ({key}) > (%(after_unranked)s, %(after_key)s::bigint, %(after_token)s::numeric)
    ORDER BY {key}
    OFFSET %(offset)s LIMIT %(limit)s
) AS n ON true
ORDER BY {key}
"""  # noqa: S608


def _matched_sql(shape: tuple[int, ...], bound: str) -> str:
    """The token ids matching the filter (see ``_filtered_sql``): per trait type a merge of primary-key
    range scans of ``nft_traits``, the types joined on token_id; ``bound`` is an extra condition of every
    scan."""

    def tokens(index: int, values: int) -> str:
        scan = (
            "SELECT token_id FROM nft_traits WHERE collection_id = %(collection_id)s"  # noqa: S608 - placeholders
            f" AND trait_type = %(type_{index})s{bound} AND trait_value = "
        )
        if values == 0:
            return f"{scan.replace('SELECT', 'SELECT DISTINCT', 1)}ANY(%(values_{index})s::text[])"
        return " UNION ".join(f"{scan}%(value_{index}_{position})s" for position in range(values))

    sets = [f"({tokens(index, values)}) AS t{index}" for index, values in enumerate(shape)]
    return sets[0] + "".join(f"\n    JOIN {joined} USING (token_id)" for joined in sets[1:])


_AFTER_BOUND = " AND token_id > %(after)s::numeric"

# The bitmaps (migration 0010) of the filtered (type, value) pairs (%(types)s/%(values)s, each pair once)
# that were built for the collection's current generation; ``usable`` when each of the %(pairs)s has one,
# and then ``total`` is bit_count of the AND over types of the OR within each type.
_CURRENT_BITMAPS = """
WITH current AS (
    SELECT ct.trait_type, ct.positions
    FROM unnest(%(types)s::text[], %(values)s::text[]) AS f(trait_type, trait_value)
    JOIN collection_traits AS ct
      ON ct.collection_id = %(collection_id)s AND ct.trait_type = f.trait_type AND ct.trait_value = f.trait_value
    WHERE ct.positions_generation = (
        SELECT generation FROM collection_trait_generations WHERE collection_id = %(collection_id)s
    )
)"""
_BITMAP_TOTAL = """
    SELECT (SELECT count(*) FROM current) = %(pairs)s AS usable,
           (SELECT bit_count(bit_and(t.bits))
            FROM (SELECT bit_or(positions) AS bits FROM current GROUP BY trait_type) AS t) AS total"""


@functools.lru_cache(maxsize=256)
def _bitmap_filtered_sql(shape: tuple[int, ...]) -> str:
    """The filtered-page statement that takes its total from the trait bitmaps (migration 0010).

    ``current`` holds the bitmaps of the filtered (type, value) pairs (``%(types)s``/``%(values)s``, each
    pair once) that were built for the collection's current generation; ``usable`` says every one of the
    ``%(pairs)s`` pairs has one. All current bitmaps have the same length (the ranked count they were built
    for), so the total is ``bit_count`` of the AND over types of the OR within each type. The page is the
    same LIMITed merge as ``_filtered_sql``'s, run only when ``usable`` (a one-time filter); when it is
    false the caller runs ``_filtered_sql`` instead.
    """
    return f"""
{_CURRENT_BITMAPS}
SELECT s.usable, s.total, {_NFT_COLUMNS}
FROM ({_BITMAP_TOTAL}) AS s
LEFT JOIN LATERAL (
    SELECT token_id FROM {_matched_sql(shape, _AFTER_BOUND)}
    WHERE s.usable
    ORDER BY token_id OFFSET %(offset)s LIMIT %(limit)s
) AS m ON true
LEFT JOIN nfts AS n ON n.collection_id = %(collection_id)s AND n.token_id = m.token_id
ORDER BY m.token_id
"""  # noqa: S608


@functools.lru_cache(maxsize=256)
def _filtered_sql(shape: tuple[int, ...]) -> str:
    """The filtered-page statement for one filter shape: per trait type (in name order) the number of
    accepted values, or 0 for "more than ``_MAX_LISTED_VALUES``, passed as an array".

    Each trait type's tokens come from primary-key range scans of ``nft_traits``, one per value, each
    already in token order; a merge (UNION, which also lists once a token holding two accepted values of the
    type) keeps that order, and the types are joined on token_id, which the planner can do as merge joins.
    The page then reads the stream only up to offset + limit, while the total counts all of it, without a
    sort or hash of the whole match in the common case. A type with many values uses one ``= ANY`` scan and
    DISTINCT instead.
    """
    return f"""
SELECT s.total, {_NFT_COLUMNS}
FROM (SELECT count(*) AS total FROM {_matched_sql(shape, "")}) AS s
LEFT JOIN LATERAL (
    SELECT token_id FROM {_matched_sql(shape, _AFTER_BOUND)}
    ORDER BY token_id OFFSET %(offset)s LIMIT %(limit)s
) AS m ON true
LEFT JOIN nfts AS n ON n.collection_id = %(collection_id)s AND n.token_id = m.token_id
ORDER BY m.token_id
"""  # noqa: S608


__all__ = [
    "CollectionRow",
    "CollectionTraits",
    "NftDetail",
    "NftPage",
    "NftRow",
    "TokenOwner",
    "TraitFacet",
    "TraitValueCount",
    "collection_holdings",
    "get_collection",
    "get_nft",
    "get_nft_page",
    "get_owned_tokens",
    "get_token_ids_through",
    "get_token_owners",
    "get_token_position",
    "get_traits",
]
