"""Helpers shared by the ownership transfer tests: collections, transfers with fresh log ids, table reads."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import boto3
import psycopg

from such_market.config import EventSettings
from such_market.events.publisher import EventPublisher
from such_market.ownership.transfers import Transfer
from such_market.validation import ZERO_ADDRESS

Conn = psycopg.Connection[tuple[object, ...]]
ZERO = ZERO_ADDRESS
_sequence = itertools.count(1)


def address(n: int) -> str:
    return f"0x{n:040x}"


def new_collection(conn: Conn, contract: str, token_type: str) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO collections (contract_address, name, token_type) VALUES (%s, %s, %s) RETURNING id",
        (contract, f"{token_type} test", token_type),
    ).fetchone()
    assert row is not None
    assert isinstance(row[0], uuid.UUID)
    return row[0]


def transfer(
    contract: str,
    token_id: int,
    sender: str,
    receiver: str,
    amount: int = 1,
    *,
    block: int | None = None,
    log_index: int = 0,
    batch_index: int = 0,
    removed: bool = False,
    event_id: str = "whevt_test",
) -> Transfer:
    """A transfer in its own (new) transaction unless ``block`` says where."""
    number = next(_sequence)
    return Transfer(
        contract=contract,
        token_id=token_id,
        from_address=sender,
        to_address=receiver,
        amount=amount,
        block_number=block if block is not None else 1000 + number,
        tx_hash=f"0x{number:064x}",
        log_index=log_index,
        batch_index=batch_index,
        event_id=event_id,
        removed=removed,
    )


def removal(original: Transfer) -> Transfer:
    """The re-org removal of ``original`` (same log, ``removed=True``)."""
    return Transfer(
        contract=original.contract,
        token_id=original.token_id,
        from_address=original.from_address,
        to_address=original.to_address,
        amount=original.amount,
        block_number=original.block_number,
        tx_hash=original.tx_hash,
        log_index=original.log_index,
        batch_index=original.batch_index,
        block_hash=original.block_hash,
        event_id="whevt_removal",
        removed=True,
    )


def ownership(conn: Conn) -> dict[tuple[str, int, str], int]:
    """``{(contract, token, owner): balance}`` of every nft_ownership row."""
    rows = conn.execute(
        "SELECT c.contract_address, o.token_id::text, o.owner_address, o.balance::text "
        "FROM nft_ownership o JOIN collections c ON c.id = o.collection_id"
    ).fetchall()
    return {(str(c), int(str(t)), str(o)): int(str(b)) for c, t, o, b in rows}


def user_collections(conn: Conn) -> dict[tuple[str, str], tuple[int, int]]:
    rows = conn.execute(
        "SELECT uc.owner_address, c.contract_address, uc.token_count, uc.total_balance::text "
        "FROM user_collections uc JOIN collections c ON c.id = uc.collection_id"
    ).fetchall()
    return {(str(o), str(c)): (int(str(n)), int(str(b))) for o, c, n, b in rows}


def wallet_mappings(conn: Conn) -> dict[tuple[str, str], tuple[int, int]]:
    rows = conn.execute(
        "SELECT wallet_address, contract_address, num_distinct_tokens::text, total_balance::text "
        "FROM wallet_collection_mapping WHERE source = 'index'"
    ).fetchall()
    return {(str(w), str(c)): (int(str(n)), int(str(b))) for w, c, n, b in rows}


def outbox(conn: Conn) -> list[tuple[str, dict[str, Any]]]:
    rows = conn.execute("SELECT detail_type, detail FROM cache_events_outbox ORDER BY id").fetchall()
    return [(str(kind), detail) for kind, detail in rows if isinstance(detail, dict)]


def moto_publisher() -> EventPublisher:
    """An EventPublisher on the (mocked) bus; call it inside the ``moto_bus`` fixture."""
    return EventPublisher(EventSettings(), client=boto3.client("events", region_name="us-east-1"))
