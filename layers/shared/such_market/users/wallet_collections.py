"""Reads and writes of ``wallet_collection_mapping`` and ``wallet_scans``: which collections a wallet holds,
from where, and when it was last scanned.

Rows with ``source = 'index'`` are maintained by the ``nft_ownership`` triggers (migration 0003) and are
the truth for the collections we index; rows with ``source = 'scan'`` hold what the last Alchemy wallet
scan reported for the others. A scan never writes over an index row: its upsert updates only scan rows,
and a scan row of a key the index comes to hold is taken over by the trigger.

``wallet_scans`` (migration 0009) records every stored scan — when, whether it reached the end of the
listing, how many collections it found — in the same transaction as its rows, so "was this wallet scanned,
and when" has an answer even when the scan left no row (it found nothing, or only contracts the index
holds). Writers take an autocommit
connection and open their own ``conn.transaction()`` (a savepoint inside a caller's transaction); rows of
one wallet are written in contract order, the order in which the triggers lock them, after its
``wallet_scans`` row, which serializes concurrent scans of the wallet.

Every function is keyword-only. Figures are decimal strings (``numeric(78,0)``); names, symbols and token
types of an index row come from ``collections`` when it knows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import psycopg

    from such_market.upstream.alchemy import OwnerContract

    Connection = psycopg.Connection[tuple[Any, ...]]

Source = Literal["index", "scan"]

_UPSERT_SCAN = """
INSERT INTO wallet_collection_mapping AS m (
    wallet_address, contract_address, collection_id, num_distinct_tokens, total_balance, source,
    last_owned_at, scanned_at, name, symbol, token_type, is_spam
)
SELECT %(wallet)s, s.contract_address, c.id, s.tokens, s.balance, 'scan', now(), now(), s.name, s.symbol,
       s.token_type, s.is_spam
FROM unnest(%(contracts)s::text[], %(tokens)s::numeric[], %(balances)s::numeric[], %(names)s::text[],
            %(symbols)s::text[], %(token_types)s::text[], %(spam)s::boolean[])
    AS s(contract_address, tokens, balance, name, symbol, token_type, is_spam)
LEFT JOIN collections AS c ON c.contract_address = s.contract_address
ORDER BY s.contract_address
ON CONFLICT (wallet_address, contract_address) DO UPDATE
SET collection_id = excluded.collection_id, num_distinct_tokens = excluded.num_distinct_tokens,
    total_balance = excluded.total_balance, last_owned_at = excluded.last_owned_at,
    scanned_at = excluded.scanned_at, name = excluded.name, symbol = excluded.symbol,
    token_type = excluded.token_type, is_spam = excluded.is_spam
WHERE m.source = 'scan'
"""

_DELETE_UNLISTED_SCANS = """
DELETE FROM wallet_collection_mapping
WHERE wallet_address = %(wallet)s AND source = 'scan' AND NOT (contract_address = ANY(%(contracts)s::text[]))
"""

_RECORD_SCAN = """
INSERT INTO wallet_scans (wallet_address, scanned_at, complete, contracts_found)
VALUES (%(wallet)s, now(), %(complete)s, %(contracts_found)s)
ON CONFLICT (wallet_address) DO UPDATE
SET scanned_at = excluded.scanned_at, complete = excluded.complete, contracts_found = excluded.contracts_found
"""

# One statement, so the scan record and the rows come from one snapshot: a scan committing meanwhile is
# seen either entirely or not at all. A wallet without rows yields one row of NULL mapping columns, which
# come in ``HeldCollection``'s field order.
_HOLDINGS = """
SELECT w.wallet, s.scanned_at, s.complete, s.contracts_found,
       s.scanned_at > now() - make_interval(secs => %(max_age)s) AS scan_fresh,
       m.contract_address, coalesce(c.name, m.name), coalesce(c.symbol, m.symbol),
       coalesce(nullif(c.token_type, 'UNKNOWN'), m.token_type, c.token_type),
       m.num_distinct_tokens::text, m.total_balance::text, m.is_spam, m.source
FROM unnest(%(wallets)s::text[]) AS w(wallet)
LEFT JOIN wallet_scans AS s ON s.wallet_address = w.wallet
LEFT JOIN wallet_collection_mapping AS m ON m.wallet_address = w.wallet
LEFT JOIN collections AS c ON c.id = m.collection_id
ORDER BY w.wallet, lower(coalesce(c.name, m.name)) NULLS LAST, m.contract_address
"""


@dataclass(frozen=True, slots=True)
class HeldCollection:
    """One (wallet, contract) row: the figures as decimal strings (``None`` when the source had none)."""

    contract_address: str
    name: str | None
    symbol: str | None
    token_type: str | None
    num_distinct_tokens: str | None
    total_balance: str | None
    is_spam: bool | None
    source: Source


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """The last stored scan of a wallet (its ``wallet_scans`` row). ``complete`` is false when the listing
    stopped before its end; ``contracts_found`` is how many collections the scan found; ``fresh`` says
    whether ``scanned_at`` lies within the ``max_age`` it was read with."""

    scanned_at: datetime
    complete: bool
    contracts_found: int
    fresh: bool


@dataclass(frozen=True, slots=True)
class WalletHoldings:
    """What the tables hold for one wallet, and its last scan (``None``: never scanned)."""

    wallet_address: str
    collections: list[HeldCollection]
    last_scan: ScanRecord | None

    @property
    def scan_fresh(self) -> bool:
        """Whether the wallet has a scan recent enough to trust."""
        return self.last_scan is not None and self.last_scan.fresh


def store_wallet_scan(
    *,
    conn: Connection,
    wallet: str,
    contracts: Sequence[OwnerContract],
    complete: bool,
    reported_total: int | None = None,
) -> None:
    """Store a scan of ``wallet`` in one transaction: record it in ``wallet_scans`` (even when it listed
    nothing), upsert its scan rows (index rows are left alone), and when the scan is ``complete``, delete
    the wallet's scan rows for contracts it no longer lists.

    The record's ``contracts_found`` is the number of distinct contracts listed, or ``reported_total``
    (Alchemy's ``totalCount``) when that is larger.
    """
    listed = {contract.address: contract for contract in reversed(contracts)}  # the first listing wins
    ordered = [listed[address] for address in sorted(listed)]
    record = {"wallet": wallet, "complete": complete, "contracts_found": max(len(ordered), reported_total or 0)}
    params = {
        "wallet": wallet,
        "contracts": [contract.address for contract in ordered],
        "tokens": [contract.num_distinct_tokens_owned for contract in ordered],
        "balances": [contract.total_balance for contract in ordered],
        "names": [contract.name for contract in ordered],
        "symbols": [contract.symbol for contract in ordered],
        "token_types": [contract.token_type for contract in ordered],
        "spam": [contract.is_spam for contract in ordered],
    }
    with conn.transaction():
        conn.execute(_RECORD_SCAN, record)
        if ordered:
            conn.execute(_UPSERT_SCAN, params)
        if complete:
            conn.execute(_DELETE_UNLISTED_SCANS, {"wallet": wallet, "contracts": params["contracts"]})


def get_wallet_holdings(*, conn: Connection, wallets: Sequence[str], max_age: timedelta) -> dict[str, WalletHoldings]:
    """``{wallet: holdings}`` for every wallet in ``wallets`` (empty holdings for a wallet without rows),
    each with its last scan, judged fresh when it is at most ``max_age`` old."""
    distinct = list(dict.fromkeys(wallets))  # a repeated wallet would repeat its rows
    rows = conn.execute(_HOLDINGS, {"wallets": distinct, "max_age": max_age.total_seconds()}).fetchall()
    held: dict[str, list[HeldCollection]] = {wallet: [] for wallet in distinct}
    scans: dict[str, ScanRecord] = {}
    for wallet, scanned_at, complete, found, fresh, *collection in rows:
        if scanned_at is not None:
            scans[wallet] = ScanRecord(scanned_at, complete, found, fresh)
        if collection[0] is not None:  # a contract address: the wallet has this row
            held[wallet].append(HeldCollection(*collection))
    return {wallet: WalletHoldings(wallet, collections, scans.get(wallet)) for wallet, collections in held.items()}
