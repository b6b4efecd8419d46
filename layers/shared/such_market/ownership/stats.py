"""Ownership statistics for operators: exact SQL counts, summary consistency, discovery per collection.

Every figure is an exact ``count`` over the table (no sampling, no row caps), read in one
REPEATABLE READ transaction so the figures agree with each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from such_market.config import AdminSettings, DatabaseSettings
from such_market.db.consistency import check_summaries

if TYPE_CHECKING:
    import psycopg


class OwnershipStatsSettings(DatabaseSettings, AdminSettings):
    """Settings of the ownership-stats admin function."""


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


def _ratio(part: int, whole: int | None) -> float | None:
    return round(part / whole, 6) if whole else None


def ownership_stats(*, conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, object]:
    """The body of ``GET /api/admin/ownership/stats``."""
    import psycopg

    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        counts = conn.execute(_COUNTS).fetchone()
        if counts is None:
            raise psycopg.DataError("count query returned no row")
        rows = conn.execute(_DISCOVERY).fetchall()
        consistency = check_summaries(conn=conn)
    records, user_collections, mappings, owners, collections = (int(str(value)) for value in counts)
    discovery = []
    for address, name, token_type, supply, state, error, tokens, meta_errors, owned, holders in rows:
        total_supply = int(str(supply)) if supply is not None else None
        token_count, error_count, owned_count = int(str(tokens)), int(str(meta_errors)), int(str(owned))
        discovery.append(
            {
                "contractAddress": address,
                "name": name,
                "tokenType": token_type,
                "totalSupply": str(total_supply) if total_supply is not None else None,
                "ingestionState": state,
                "lastError": error,
                "nftsIndexed": token_count,
                "tokensWithOwner": owned_count,
                "owners": int(str(holders)),
                "completeness": _ratio(token_count, total_supply),
                "ownershipCoverage": _ratio(owned_count, token_count),
                "metadataErrorRate": _ratio(error_count, token_count),
            }
        )
    return {
        "totalOwnershipRecords": records,
        "totalUserCollections": user_collections,
        "totalWalletMappings": mappings,
        "uniqueOwners": owners,
        "uniqueCollections": collections,
        "summaryConsistency": {
            "ok": consistency.ok,
            "differenceCount": consistency.difference_count,
            "differences": consistency.differences,
        },
        "nftDiscovery": {"collections": discovery, "totalCollections": len(discovery)},
    }
