"""Reads and writes of ``wallet_collection_mapping``: which collections a wallet holds, and from where.

Rows with ``source = 'index'`` are maintained by the ``nft_ownership`` triggers (migration 0003) and are
the truth for the collections we index; rows with ``source = 'scan'`` hold what the last Alchemy wallet
scan reported for the others. A scan never writes over an index row: its upsert updates only scan rows,
and a scan row of a key the index comes to hold is taken over by the trigger. Writers take an autocommit
connection and open their own ``conn.transaction()`` (a savepoint inside a caller's transaction); rows of
one wallet are written in contract order, the order in which the triggers lock them.

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

_HOLDINGS = """
SELECT m.wallet_address, m.contract_address,
       coalesce(c.name, m.name), coalesce(c.symbol, m.symbol),
       coalesce(nullif(c.token_type, 'UNKNOWN'), m.token_type, c.token_type),
       m.num_distinct_tokens::text, m.total_balance::text, m.is_spam, m.source, m.scanned_at,
       m.scanned_at > now() - make_interval(secs => %(max_age)s) AS scan_fresh
FROM wallet_collection_mapping AS m
LEFT JOIN collections AS c ON c.id = m.collection_id
WHERE m.wallet_address = ANY(%(wallets)s::text[])
ORDER BY m.wallet_address, lower(coalesce(c.name, m.name)) NULLS LAST, m.contract_address
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
class WalletHoldings:
    """What the tables hold for one wallet, and whether a scan of it is recent enough to trust.

    ``last_scanned_at`` is the newest ``scanned_at`` of its scan rows (``None``: never scanned, as far as
    the rows tell); ``scan_fresh`` says whether it lies within the ``max_age`` it was read with.
    """

    wallet_address: str
    collections: list[HeldCollection]
    last_scanned_at: datetime | None
    scan_fresh: bool


def store_wallet_scan(*, conn: Connection, wallet: str, contracts: Sequence[OwnerContract], complete: bool) -> None:
    """Store a scan of ``wallet``: upsert its scan rows (index rows are left alone), and when the scan is
    ``complete``, delete the wallet's scan rows for contracts it no longer lists."""
    listed = {contract.address: contract for contract in reversed(contracts)}  # the first listing wins
    ordered = [listed[address] for address in sorted(listed)]
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
        if ordered:
            conn.execute(_UPSERT_SCAN, params)
        if complete:
            conn.execute(_DELETE_UNLISTED_SCANS, {"wallet": wallet, "contracts": params["contracts"]})


def get_wallet_holdings(*, conn: Connection, wallets: Sequence[str], max_age: timedelta) -> dict[str, WalletHoldings]:
    """``{wallet: holdings}`` for every wallet in ``wallets`` (empty holdings for a wallet without rows)."""
    rows = conn.execute(_HOLDINGS, {"wallets": list(wallets), "max_age": max_age.total_seconds()}).fetchall()
    held: dict[str, list[HeldCollection]] = {wallet: [] for wallet in wallets}
    scanned: dict[str, datetime] = {}
    fresh: set[str] = set()
    for wallet, contract, name, symbol, token_type, tokens, balance, spam, source, scanned_at, scan_fresh in rows:
        held[wallet].append(HeldCollection(contract, name, symbol, token_type, tokens, balance, spam, source))
        if source == "scan" and scanned_at is not None:
            scanned[wallet] = max(scanned_at, scanned.get(wallet, scanned_at))
            if scan_fresh:
                fresh.add(wallet)
    return {
        wallet: WalletHoldings(wallet, collections, scanned.get(wallet), wallet in fresh)
        for wallet, collections in held.items()
    }
