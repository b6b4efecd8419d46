"""Writes of the ownership package: the per-collection locks, the activity log and the one mover of owner rows.

Every function is keyword-only, takes a psycopg connection and runs in the caller's transaction (none
opens one: the transfer use cases group them, with their events, in one outbox transaction), one
statement each, set-based over the whole batch:

- ``lock_ownership``: the transaction-level advisory lock of "changing this collection's
  owners" (class ``OWNERSHIP_LOCK_CLASS``, object ``hashtext(contract)``) of each collection, taken in
  one statement in address order, so every writer takes them in the same order. Held until the caller's
  transaction ends.
- ``record_activity``: records transfers in ``ownership_activity`` (migration 0008) under the identity
  of their log. A new log is inserted (``applied`` when its collection is known and it is not a removal);
  a removal of a recorded, not yet removed log marks that row removed; anything else is a duplicate and
  is not returned. Returns the rows as stored, so a reversal undoes exactly what was recorded.
- ``merge_owner_rows``: the one statement of this package that changes ``nft_ownership``, a ``MERGE``
  of planned rows (insert, move, balance change, delete; ``last_verified_at = now()`` on every row it
  keeps), so the summary triggers of migration 0003 run once for the whole batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from such_market.ownership.queries import ActivityKey, Position

if TYPE_CHECKING:
    import psycopg

    Connection = psycopg.Connection[tuple[Any, ...]]

OWNERSHIP_LOCK_CLASS: Final = 0x5C4D_0008
"""Advisory lock class of "changing this collection's owners" (object id: hashtext of the contract)."""


class TransferLog(Protocol):
    """What ``record_activity`` stores of one transfer (``transfers.Transfer`` is one): lower-case
    addresses and hashes, ``block_hash`` None when the payload had none."""

    @property
    def block_hash(self) -> str | None: ...
    @property
    def tx_hash(self) -> str: ...
    @property
    def log_index(self) -> int: ...
    @property
    def batch_index(self) -> int: ...
    @property
    def event_id(self) -> str: ...
    @property
    def contract(self) -> str: ...
    @property
    def token_id(self) -> int: ...
    @property
    def from_address(self) -> str: ...
    @property
    def to_address(self) -> str: ...
    @property
    def amount(self) -> int: ...
    @property
    def block_number(self) -> int: ...
    @property
    def removed(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class RecordedTransfer:
    """A transfer as stored, returned by ``record_activity``: ``inserted`` False for a removal that
    marked a recorded transfer removed (then the other values are the recorded transfer's);
    ``applied`` whether the recorded transfer was applied to ``nft_ownership``."""

    key: ActivityKey
    inserted: bool
    applied: bool
    collection_id: uuid.UUID | None
    token_id: int
    from_address: str
    to_address: str
    amount: int
    position: Position


@dataclass(frozen=True, slots=True)
class OwnerRowWrite:
    """One planned row of ``merge_owner_rows``: the row of ``old_owner`` (None: no row yet) of the token
    ends as ``new_owner`` holding ``balance``; a ``balance`` of 0 deletes it."""

    collection_id: uuid.UUID
    token_id: int
    old_owner: str | None
    new_owner: str
    balance: int


# One statement; the array comes sorted, so every writer takes the locks in the same order.
_LOCK_COLLECTIONS = """
SELECT pg_advisory_xact_lock(%(lock_class)s, hashtext(address))
FROM unnest(%(addresses)s::text[]) AS a(address)
"""

# New keys are inserted; a removal of a recorded, not yet removed key marks it removed; anything else
# conflicts without an update and is not returned (a duplicate). Returns the stored row, so a reversal
# undoes exactly what was recorded.
_RECORD = """
INSERT INTO ownership_activity AS a (
    block_hash, tx_hash, log_index, batch_index, event_id, contract_address, collection_id, token_id,
    from_address, to_address, amount, block_number, removed, applied, applied_at, removed_at
)
SELECT i.block_hash, i.tx_hash, i.log_index, i.batch_index, i.event_id, i.contract_address, c.id, i.token_id,
       i.from_address, i.to_address, i.amount, i.block_number, i.removed,
       c.id IS NOT NULL AND NOT i.removed,
       CASE WHEN c.id IS NOT NULL AND NOT i.removed THEN now() END,
       CASE WHEN i.removed THEN now() END
FROM unnest(%(block_hashes)s::text[], %(tx_hashes)s::text[], %(log_indexes)s::int[], %(batch_indexes)s::int[],
            %(event_ids)s::text[], %(contracts)s::text[], %(token_ids)s::numeric[], %(froms)s::text[],
            %(tos)s::text[], %(amounts)s::numeric[], %(blocks)s::bigint[], %(removed)s::boolean[])
     AS i(block_hash, tx_hash, log_index, batch_index, event_id, contract_address, token_id, from_address,
          to_address, amount, block_number, removed)
LEFT JOIN collections AS c ON c.contract_address = i.contract_address
ORDER BY i.tx_hash, i.log_index, i.batch_index, i.block_hash
ON CONFLICT (tx_hash, log_index, batch_index, block_hash) DO UPDATE
SET removed = true, removed_at = now()
WHERE excluded.removed AND NOT a.removed
RETURNING a.tx_hash, a.log_index, a.batch_index, a.block_hash, (a.xmax = 0) AS inserted, a.applied,
          a.collection_id, a.token_id::text, a.from_address, a.to_address, a.amount::text, a.block_number
"""

# The one mover. Source rows: (collection, token, matched owner or NULL, owner to hold, balance; 0 = delete).
_MERGE = """
MERGE INTO nft_ownership AS o
USING (
    SELECT * FROM unnest(%(collections)s::uuid[], %(token_ids)s::numeric[], %(old_owners)s::text[],
                         %(new_owners)s::text[], %(balances)s::numeric[])
        AS s(collection_id, token_id, old_owner, new_owner, balance)
    ORDER BY collection_id, token_id, old_owner, new_owner
) AS s
ON o.collection_id = s.collection_id AND o.token_id = s.token_id AND o.owner_address = s.old_owner
WHEN MATCHED AND s.balance = 0 THEN DELETE
WHEN MATCHED THEN
    UPDATE SET owner_address = s.new_owner, balance = s.balance, last_verified_at = now()
WHEN NOT MATCHED AND s.balance > 0 THEN
    INSERT (collection_id, token_id, owner_address, balance, last_verified_at)
    VALUES (s.collection_id, s.token_id, s.new_owner, s.balance, now())
"""


def lock_ownership(*, conn: Connection, addresses: Iterable[str]) -> None:
    """Take the ownership lock of each collection of ``addresses`` (lower-case contracts, known or not),
    in address order, until the caller's transaction ends."""
    conn.execute(_LOCK_COLLECTIONS, {"lock_class": OWNERSHIP_LOCK_CLASS, "addresses": sorted(set(addresses))})


def record_activity(*, conn: Connection, transfers: Sequence[TransferLog]) -> list[RecordedTransfer]:
    """Record ``transfers`` (one per log identity) in ``ownership_activity``; returns the rows inserted
    or marked removed, duplicates left out."""
    params = {
        "block_hashes": [t.block_hash or "" for t in transfers],
        "tx_hashes": [t.tx_hash for t in transfers],
        "log_indexes": [t.log_index for t in transfers],
        "batch_indexes": [t.batch_index for t in transfers],
        "event_ids": [t.event_id for t in transfers],
        "contracts": [t.contract for t in transfers],
        "token_ids": [str(t.token_id) for t in transfers],
        "froms": [t.from_address for t in transfers],
        "tos": [t.to_address for t in transfers],
        "amounts": [str(t.amount) for t in transfers],
        "blocks": [t.block_number for t in transfers],
        "removed": [t.removed for t in transfers],
    }
    return [
        RecordedTransfer(
            key=(tx, log, batch, block_hash),
            inserted=inserted,
            applied=applied,
            collection_id=cid,
            token_id=int(token),
            from_address=sender,
            to_address=receiver,
            amount=int(amount),
            position=(int(block), log, batch),
        )
        for tx, log, batch, block_hash, inserted, applied, cid, token, sender, receiver, amount, block in conn.execute(
            _RECORD, params
        ).fetchall()
    ]


def merge_owner_rows(*, conn: Connection, rows: Sequence[OwnerRowWrite]) -> None:
    """Write the planned ``rows`` in one ``MERGE`` (no statement when there is none)."""
    if not rows:
        return
    conn.execute(
        _MERGE,
        {
            "collections": [w.collection_id for w in rows],
            "token_ids": [str(w.token_id) for w in rows],
            "old_owners": [w.old_owner for w in rows],
            "new_owners": [w.new_owner for w in rows],
            "balances": [str(w.balance) for w in rows],
        },
    )
