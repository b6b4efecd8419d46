"""Ownership statistics for operators: exact SQL counts, summary consistency, discovery per collection.

Every figure is an exact ``count`` over the table (no sampling, no row caps), read in one
REPEATABLE READ transaction so the figures agree with each other (``queries.ownership_snapshot``);
this module shapes them into the answer, with the completeness and coverage ratios.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from such_market.config import AdminSettings, DatabaseSettings, FunctionSettings
from such_market.ownership.queries import ownership_snapshot

if TYPE_CHECKING:
    import psycopg


class OwnershipStatsSettings(FunctionSettings):
    """Settings of the ownership-stats admin function."""

    database: DatabaseSettings
    admin: AdminSettings


def _ratio(part: int, whole: int | None) -> float | None:
    return round(part / whole, 6) if whole else None


def ownership_stats(*, conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, object]:
    """The body of ``GET /api/admin/ownership/stats``."""
    snapshot = ownership_snapshot(conn=conn)
    counts, consistency = snapshot.counts, snapshot.consistency
    discovery = [
        {
            "contractAddress": row.contract_address,
            "name": row.name,
            "tokenType": row.token_type,
            "totalSupply": str(row.total_supply) if row.total_supply is not None else None,
            "ingestionState": row.ingestion_state,
            "lastError": row.ingestion_error,
            "nftsIndexed": row.tokens_indexed,
            "tokensWithOwner": row.tokens_with_owner,
            "owners": row.owners,
            "completeness": _ratio(row.tokens_indexed, row.total_supply),
            "ownershipCoverage": _ratio(row.tokens_with_owner, row.tokens_indexed),
            "metadataErrorRate": _ratio(row.metadata_errors, row.tokens_indexed),
        }
        for row in snapshot.discovery
    ]
    return {
        "totalOwnershipRecords": counts.records,
        "totalUserCollections": counts.user_collections,
        "totalWalletMappings": counts.wallet_mappings,
        "uniqueOwners": counts.owners,
        "uniqueCollections": counts.collections,
        "summaryConsistency": {
            "ok": consistency.ok,
            "differenceCount": consistency.difference_count,
            "differences": consistency.differences,
        },
        "nftDiscovery": {"collections": discovery, "totalCollections": len(discovery)},
    }
