"""Reads of the ownership tables: owner rows, applied activity, holdings, statistics, stalest tokens.

Every function is keyword-only, takes a psycopg connection and returns plain values or frozen
dataclasses (token ids and balances as Python ints), so the use cases of this package never see SQL.
None of them opens a transaction except ``ownership_snapshot``; the others run in the caller's (the
transfer use cases call them inside their outbox transaction, after taking the collections' locks).

- ``known_collections``: the id and token type of the collections among some contracts.
- ``latest_applied``: the chain position of the newest applied, not removed transfer of each token in
  ``ownership_activity`` (migration 0008), the caller's own batch excluded.
- ``current_rows``: the owner rows of whole tokens plus single (token, owner) rows, read ``FOR UPDATE``
  in key order, so every writer of ``nft_ownership`` that reads through it locks rows in the same order.
- ``ownership_snapshot``: exact counts, per-collection discovery figures and the summary consistency
  check, read in one REPEATABLE READ READ ONLY transaction so the figures agree with each other.
- ``stalest_tokens``: the least recently verified tokens, read along the ``(collection_id,
  last_verified_at)`` index (never a full scan).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from such_market.db.consistency import ConsistencyReport, check_summaries

if TYPE_CHECKING:
    import psycopg

    Connection = psycopg.Connection[tuple[Any, ...]]

Position = tuple[int, int, int]
"""Where a transfer sits in the chain: (block number, log index, batch index)."""
ActivityKey = tuple[str, int, int, str]
"""The identity of a log entry in ``ownership_activity``: (tx hash, log index, batch index, block hash or '')."""
TokenKey = tuple[uuid.UUID, int]
"""One token: (collection id, token id)."""

_ROWS_PER_TOKEN: Final = 4
"""Rows read per wanted token: ERC-1155 tokens have several rows, so read a few more than the batch."""


@dataclass(frozen=True, slots=True)
class KnownCollection:
    """A collection of ``collections``: its id, contract and token type (ERC721, ERC1155 or UNKNOWN)."""

    id: uuid.UUID
    contract: str
    token_type: str


@dataclass(frozen=True, slots=True)
class OwnershipCounts:
    """Exact row counts of the ownership tables."""

    records: int
    user_collections: int
    wallet_mappings: int
    owners: int
    collections: int


@dataclass(frozen=True, slots=True)
class CollectionDiscovery:
    """How far one collection is indexed: its tokens, their metadata errors and their owners."""

    contract_address: str
    name: str | None
    token_type: str
    total_supply: int | None
    ingestion_state: str
    ingestion_error: str | None
    tokens_indexed: int
    metadata_errors: int
    tokens_with_owner: int
    owners: int


@dataclass(frozen=True, slots=True)
class OwnershipSnapshot:
    """The figures of ``ownership_snapshot``, all read from one snapshot of the database."""

    counts: OwnershipCounts
    discovery: list[CollectionDiscovery]
    consistency: ConsistencyReport


_COLLECTIONS = """
SELECT contract_address, id, token_type FROM collections WHERE contract_address = ANY(%(addresses)s::text[])
"""

# The newest applied, not removed transfer of each ERC-721 token, this batch's own keys excluded.
_LATEST_APPLIED = """
SELECT t.contract_address, t.token_id::text, l.block_number, l.log_index, l.batch_index
FROM unnest(%(contracts)s::text[], %(token_ids)s::numeric[]) AS t(contract_address, token_id)
CROSS JOIN LATERAL (
    SELECT a.block_number, a.log_index, a.batch_index
    FROM ownership_activity AS a
    WHERE a.contract_address = t.contract_address AND a.token_id = t.token_id AND a.applied AND NOT a.removed
      AND (a.tx_hash, a.log_index, a.batch_index, a.block_hash) NOT IN (
          SELECT * FROM unnest(%(key_tx)s::text[], %(key_log)s::int[], %(key_batch)s::int[], %(key_block)s::text[]))
    ORDER BY a.block_number DESC, a.log_index DESC, a.batch_index DESC
    LIMIT 1
) AS l
"""

# Every owner row of whole tokens (ERC-721, reconciliation) plus single (token, owner) rows (ERC-1155
# transfers), locked in key order.
_CURRENT = """
SELECT o.collection_id, o.token_id::text, o.owner_address, o.balance::text
FROM nft_ownership AS o
WHERE (o.collection_id, o.token_id) IN (
          SELECT * FROM unnest(%(token_collections)s::uuid[], %(token_ids)s::numeric[]))
   OR (o.collection_id, o.token_id, o.owner_address) IN (
          SELECT * FROM unnest(%(row_collections)s::uuid[], %(row_token_ids)s::numeric[], %(row_owners)s::text[]))
ORDER BY o.collection_id, o.token_id, o.owner_address
FOR UPDATE
"""

_COUNTS = """
SELECT
    (SELECT count(*) FROM nft_ownership),
    (SELECT count(*) FROM user_collections),
    (SELECT count(*) FROM wallet_collection_mapping),
    (SELECT count(DISTINCT owner_address) FROM nft_ownership),
    (SELECT count(DISTINCT collection_id) FROM nft_ownership)
"""

_DISCOVERY = """
SELECT c.contract_address,
       c.name,
       c.token_type,
       c.total_supply,
       c.ingestion_state,
       c.ingestion_error,
       coalesce(n.tokens, 0)          AS tokens_indexed,
       coalesce(n.metadata_errors, 0) AS metadata_errors,
       coalesce(o.owned_tokens, 0)    AS tokens_with_owner,
       coalesce(o.owners, 0)          AS owners
FROM collections c
LEFT JOIN (
    SELECT collection_id, count(*) AS tokens, count(*) FILTER (WHERE metadata_error IS NOT NULL) AS metadata_errors
    FROM nfts GROUP BY collection_id
) n ON n.collection_id = c.id
LEFT JOIN (
    SELECT collection_id, count(DISTINCT token_id) AS owned_tokens, count(DISTINCT owner_address) AS owners
    FROM nft_ownership GROUP BY collection_id
) o ON o.collection_id = c.id
ORDER BY c.contract_address
"""

# A row's effective verification time is greatest(last_verified_at, its collection's sync watermark,
# migration 0011). Candidates, each read from the (collection_id, last_verified_at) index, never a full
# scan: (a) per collection, its rows stamped at or after its watermark (all rows when it has none), oldest
# first; (b) the rows stamped before their collection's watermark, which count as verified at it:
# collections taken in watermark order, so the scan stops after enough rows.
_STALEST = """
WITH scope AS (
    SELECT c.id, c.contract_address, c.token_type, s.verified_at AS synced_at
    FROM collections AS c
    LEFT JOIN collection_owner_syncs AS s ON s.collection_id = c.id
    WHERE %(collection_id)s::uuid IS NULL OR c.id = %(collection_id)s::uuid
),
own_stamp AS (
    SELECT sc.contract_address, sc.token_type, r.token_id, r.last_verified_at AS verified_at
    FROM scope AS sc
    CROSS JOIN LATERAL (
        SELECT o.token_id, o.last_verified_at
        FROM nft_ownership AS o
        WHERE o.collection_id = sc.id AND o.last_verified_at >= coalesce(sc.synced_at, '-infinity')
        ORDER BY o.last_verified_at
        LIMIT %(rows)s
    ) AS r
),
synced AS (
    SELECT sc.contract_address, sc.token_type, r.token_id, sc.synced_at AS verified_at
    FROM (SELECT * FROM scope WHERE synced_at IS NOT NULL ORDER BY synced_at, id) AS sc
    CROSS JOIN LATERAL (
        SELECT o.token_id
        FROM nft_ownership AS o
        WHERE o.collection_id = sc.id AND o.last_verified_at < sc.synced_at
        ORDER BY o.last_verified_at
        LIMIT %(rows)s
    ) AS r
    LIMIT %(rows)s
)
SELECT contract_address, token_type, token_id::text
FROM (SELECT * FROM own_stamp UNION ALL SELECT * FROM synced) AS candidates
ORDER BY verified_at
LIMIT %(rows)s
"""


def known_collections(*, conn: Connection, addresses: Sequence[str]) -> dict[str, KnownCollection]:
    """The collections among ``addresses`` (lower-case contracts), by contract; unknown ones are absent."""
    rows = conn.execute(_COLLECTIONS, {"addresses": addresses}).fetchall()
    return {address: KnownCollection(id=cid, contract=address, token_type=kind) for address, cid, kind in rows}


def latest_applied(
    *, conn: Connection, tokens: Iterable[tuple[str, int]], exclude: Sequence[ActivityKey]
) -> dict[tuple[str, int], Position]:
    """The position of the newest applied, not removed transfer of each (contract, token id), the
    transfers keyed ``exclude`` not counted; tokens without one are absent. No statement when no token."""
    wanted = sorted(set(tokens))
    if not wanted:
        return {}
    rows = conn.execute(
        _LATEST_APPLIED,
        {
            "contracts": [contract for contract, _ in wanted],
            "token_ids": [str(token) for _, token in wanted],
            "key_tx": [key[0] for key in exclude],
            "key_log": [key[1] for key in exclude],
            "key_batch": [key[2] for key in exclude],
            "key_block": [key[3] for key in exclude],
        },
    ).fetchall()
    return {(contract, int(token)): (int(block), log, batch) for contract, token, block, log, batch in rows}


def current_rows(
    *, conn: Connection, whole_tokens: Iterable[TokenKey], rows: Iterable[tuple[uuid.UUID, int, str]]
) -> dict[TokenKey, dict[str, int]]:
    """The owner rows (owner → balance per token) of every token of ``whole_tokens`` and of every single
    (collection id, token id, owner) of ``rows``, locked ``FOR UPDATE`` in key order until the caller's
    transaction ends. Tokens without a row are absent."""
    tokens = sorted(set(whole_tokens))
    pairs = sorted(set(rows))
    params = {
        "token_collections": [cid for cid, _ in tokens],
        "token_ids": [str(token) for _, token in tokens],
        "row_collections": [cid for cid, _, _ in pairs],
        "row_token_ids": [str(token) for _, token, _ in pairs],
        "row_owners": [owner for _, _, owner in pairs],
    }
    current: dict[TokenKey, dict[str, int]] = defaultdict(dict)
    for cid, token, owner, balance in conn.execute(_CURRENT, params).fetchall():
        current[cid, int(token)][owner] = int(balance)
    return current


def ownership_snapshot(*, conn: Connection) -> OwnershipSnapshot:
    """Exact counts, per-collection discovery (in contract order) and the summary consistency check, in
    one REPEATABLE READ READ ONLY transaction (``conn``: an autocommit connection outside any
    transaction, as the isolation level is set by the transaction's first statement)."""
    import psycopg

    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        counts = conn.execute(_COUNTS).fetchone()
        if counts is None:
            raise psycopg.DataError("count query returned no row")
        rows = conn.execute(_DISCOVERY).fetchall()
        consistency = check_summaries(conn=conn)
    records, user_collections, mappings, owners, collections = (int(str(value)) for value in counts)
    discovery = [
        CollectionDiscovery(
            contract_address=address,
            name=name,
            token_type=token_type,
            total_supply=int(str(supply)) if supply is not None else None,
            ingestion_state=state,
            ingestion_error=error,
            tokens_indexed=int(str(tokens)),
            metadata_errors=int(str(meta_errors)),
            tokens_with_owner=int(str(owned)),
            owners=int(str(holders)),
        )
        for address, name, token_type, supply, state, error, tokens, meta_errors, owned, holders in rows
    ]
    return OwnershipSnapshot(
        counts=OwnershipCounts(
            records=records,
            user_collections=user_collections,
            wallet_mappings=mappings,
            owners=owners,
            collections=collections,
        ),
        discovery=discovery,
        consistency=consistency,
    )


def stalest_tokens(
    *, conn: Connection, limit: int, collection_id: uuid.UUID | None = None
) -> list[tuple[str, str, int]]:
    """Up to ``limit`` distinct (contract, token type, token id), least recently verified first (a row's
    verification time is the later of its ``last_verified_at`` and its collection's last bulk sync,
    ``collection_owner_syncs``, migration 0011); of one collection when ``collection_id`` is given."""
    rows = conn.execute(_STALEST, {"collection_id": collection_id, "rows": limit * _ROWS_PER_TOKEN}).fetchall()
    seen: dict[tuple[str, int], str] = {}
    for contract, token_type, token_id in rows:
        seen.setdefault((contract, int(token_id)), token_type)
        if len(seen) == limit:
            break
    return [(contract, token_type, token_id) for (contract, token_id), token_type in seen.items()]
