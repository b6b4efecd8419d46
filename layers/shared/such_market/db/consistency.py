"""The ownership consistency check: do the summaries agree with ``nft_ownership``?

``user_collections`` and the index-maintained rows of ``wallet_collection_mapping`` are kept up to date by
database triggers (migration 0003). ``check_summaries`` recomputes both from ``nft_ownership`` through the
SQL function ``ownership_summary_differences()`` and reports every difference; an empty report means the
summaries are exact. Used by the tests, the benchmarks and operators after a bulk sync.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

MAX_REPORTED_DIFFERENCES = 100

_DIFFERENCES = """
SELECT summary, owner_address, collection_id, contract_address,
       expected_tokens, actual_tokens, expected_balance, actual_balance,
       count(*) OVER () AS difference_count
FROM ownership_summary_differences()
ORDER BY summary, owner_address, contract_address, collection_id
LIMIT %(limit)s
"""

_COLUMNS = (
    "summary",
    "owner_address",
    "collection_id",
    "contract_address",
    "expected_tokens",
    "actual_tokens",
    "expected_balance",
    "actual_balance",
)


@dataclass(frozen=True, slots=True)
class ConsistencyReport:
    """The outcome of one check: ``differences`` holds the first ``MAX_REPORTED_DIFFERENCES`` of
    ``difference_count`` differences, each with JSON-friendly values (numbers and ids as strings)."""

    ok: bool
    differences: list[dict[str, object]]
    difference_count: int


def check_summaries(*, conn: psycopg.Connection[tuple[object, ...]]) -> ConsistencyReport:
    """Recompute the ownership summaries from ``nft_ownership`` and report every difference."""
    rows = conn.execute(_DIFFERENCES, {"limit": MAX_REPORTED_DIFFERENCES}).fetchall()
    differences = [
        {name: _json_friendly(value) for name, value in zip(_COLUMNS, row[: len(_COLUMNS)], strict=True)}
        for row in rows
    ]
    total = int(str(rows[0][-1])) if rows else 0
    return ConsistencyReport(ok=total == 0, differences=differences, difference_count=total)


def _json_friendly(value: object) -> object:
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    return value
