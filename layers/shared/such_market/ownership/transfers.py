"""Applying ownership changes: on-chain transfers (the Alchemy webhook) and verified owners (re-verification).

This module holds the logic (planning, de-duplication, the two use cases, retries, events); its SQL is
in ``queries`` (reads) and ``writes`` (locks, the activity log, the mover). There is one mover of
``nft_ownership``, ``writes.merge_owner_rows``: every change of this module — a transfer, the reversal of
a re-orged transfer, a correction found by re-verification — is planned as "these rows of these tokens
should end like this" and written by ONE ``MERGE`` (insert, move, balance change, delete,
``last_verified_at = now()`` on every touched row), so the summary triggers of migration 0003 run once per
action over the whole batch.

Two entry points, each ONE transaction that also writes its events through the outbox
(``outbox_transaction``: the change and its events commit together, and are published right after):

- ``apply_transfers``: transfers as the chain reports them. ERC-721: the token moves to ``to`` (a mint
  creates the row, a burn to 0x0 deletes it, a move updates the one row, never leaving the old owner
  behind); a transfer older than the newest one already applied to the token (an out-of-order delivery)
  does not move it back. ERC-1155: the sender's balance drops (its row is deleted at 0, never below) and
  the receiver's grows; a TransferBatch is several ``Transfer``s with distinct ``batch_index``es.
  Every transfer is recorded in ``ownership_activity`` (migration 0008) under the identity of its log,
  so a replay changes nothing and ``removed=True`` (a re-org) reverses an applied transfer exactly once
  (ERC-721: back to ``from`` if ``to`` still holds it; ERC-1155: the balances flow back). Removals are
  undone before the batch's new transfers are applied (newest first), as a re-org replaces the orphaned
  logs by the new chain's. Transfers of contracts not in ``collections`` are recorded but create no
  ownership rows: we only index collections we know, and their ingestion loads a full owner snapshot.
  Emits ``nft.transferred`` per transfer that was not a duplicate and ``ownership.changed`` per contract
  whose rows changed.
- ``reconcile_owners``: the complete holder lists of some tokens as observed upstream (re-verification);
  rows are made to match, unchanged rows get ``last_verified_at = now()``; emits ``ownership.changed``.

Concurrency: both take the ownership lock of each collection (``writes.lock_ownership``, in address
order) before reading the current owners, so two writers of this module never interleave on one
collection and never lock summary rows in opposite orders. A deadlock or unique violation caused by a
writer outside this module (which does not take the lock) rolls the attempt back; it is retried a few
times.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Literal

from such_market.events.outbox import outbox_transaction
from such_market.events.wire import (
    PublishableEvent,
    collection_updated,
    nft_transferred,
    ownership_changes,
)
from such_market.observability import logger
from such_market.ownership.queries import (
    ActivityKey,
    KnownCollection,
    Position,
    current_rows,
    known_collections,
    latest_applied,
)
from such_market.ownership.writes import (
    OwnerRowWrite,
    RecordedTransfer,
    lock_ownership,
    merge_owner_rows,
    record_activity,
)
from such_market.validation import MAX_UINT256, ZERO_ADDRESS, normalize_address

if TYPE_CHECKING:
    import psycopg

    from such_market.events.publisher import EventPublisher

    Connection = psycopg.Connection[tuple[Any, ...]]

TokenType = Literal["ERC721", "ERC1155"]

MAX_ATTEMPTS: Final = 3
"""Attempts of one transaction when a writer outside this module deadlocks or races with it."""

_HASH_LENGTH = 66
_MAX_LOG_INDEX = 2**31 - 1
_MAX_BLOCK = 2**63 - 1


# --------------------------------------------------------------------------------------------------
# Inputs and outputs


def _hash(value: str, name: str) -> str:
    text = value.lower()
    if len(text) != _HASH_LENGTH or not text.startswith("0x") or any(c not in "0123456789abcdef" for c in text[2:]):
        raise ValueError(f"{name} must be 0x followed by 64 hexadecimal digits")
    return text


@dataclass(frozen=True, slots=True)
class Transfer:
    """One token's transfer from one log. Addresses and hashes are normalized to lower case on creation;
    ``ValueError`` for anything out of range.

    ``batch_index`` is the token's position in an ERC-1155 TransferBatch log (0 otherwise);
    ``block_hash`` (optional) tells a re-mined transaction from the orphaned one; ``token_type`` is the
    payload's hint, used only when the collection's own type is UNKNOWN; ``event_id`` is the delivery's
    id (kept for the audit trail).
    """

    contract: str
    token_id: int
    from_address: str
    to_address: str
    amount: int
    block_number: int
    tx_hash: str
    log_index: int
    event_id: str
    removed: bool = False
    batch_index: int = 0
    block_hash: str | None = None
    token_type: TokenType | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "contract", normalize_address(self.contract))
        set_(self, "from_address", normalize_address(self.from_address))
        set_(self, "to_address", normalize_address(self.to_address))
        set_(self, "tx_hash", _hash(self.tx_hash, "tx_hash"))
        if self.block_hash is not None:
            set_(self, "block_hash", _hash(self.block_hash, "block_hash"))
        if not 0 <= self.token_id <= MAX_UINT256 or not 0 <= self.amount <= MAX_UINT256:
            raise ValueError("token_id and amount must be between 0 and 2**256-1")
        if not 0 <= self.log_index <= _MAX_LOG_INDEX or not 0 <= self.batch_index <= _MAX_LOG_INDEX:
            raise ValueError("log_index and batch_index must be non-negative 32-bit integers")
        if not 0 <= self.block_number <= _MAX_BLOCK:
            raise ValueError("block_number must be a non-negative 64-bit integer")
        if not self.event_id or len(self.event_id) > 200:
            raise ValueError("event_id must be 1 to 200 characters")

    @property
    def key(self) -> ActivityKey:
        """The identity of the log entry: (tx hash, log index, batch index, block hash or '')."""
        return (self.tx_hash, self.log_index, self.batch_index, self.block_hash or "")

    @property
    def position(self) -> Position:
        """Where the transfer sits in the chain: (block, log index, batch index)."""
        return (self.block_number, self.log_index, self.batch_index)


@dataclass(frozen=True, slots=True)
class ObservedToken:
    """The complete holder list of one token as observed upstream: ``owners`` maps address → balance
    (``None``: holds an unknown balance — an existing row keeps its balance, a new one gets 1)."""

    contract: str
    token_id: int
    owners: Mapping[str, int | None]


@dataclass(frozen=True, slots=True)
class OwnershipChanges:
    """What one write changed, per contract: the tokens whose rows changed and the wallets that gained or
    lost some; ``touched`` counts the rows written (changed or only re-verified)."""

    tokens: Mapping[str, frozenset[int]] = field(default_factory=dict)
    wallets: Mapping[str, frozenset[str]] = field(default_factory=dict)
    touched: int = 0

    @property
    def changed_tokens(self) -> int:
        return sum(len(tokens) for tokens in self.tokens.values())


@dataclass(frozen=True, slots=True)
class TransferResult:
    """The outcome of ``apply_transfers``; every received transfer is counted in exactly one of:

    ``applied``: new transfers of known collections that took effect in ``nft_ownership``; ``reversed``:
    removals that undid an applied transfer; ``stale``: recorded without moving the token because it
    moved on since (an ERC-721 transfer older than the newest one applied to the token, delivered out of
    order, or the removal of a transfer the token has moved on from); ``duplicates``: transfers (or
    removals) already recorded; ``ignored``: recorded without effect (unknown collection, a removal of a
    transfer never applied).
    """

    received: int
    applied: int
    reversed: int
    duplicates: int
    ignored: int
    changes: OwnershipChanges
    stale: int = 0
    outbox_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """The outcome of ``reconcile_owners``: ``skipped`` tokens could not be reconciled (unknown
    collection, or an ERC-721 token reported with several holders)."""

    changes: OwnershipChanges
    skipped: int
    outbox_ids: tuple[int, ...] = ()


# --------------------------------------------------------------------------------------------------
# Planning: current rows → wanted rows → MERGE source rows


@dataclass
class _Plan:
    """The rows to write and what they change, accumulated over tokens."""

    writes: list[OwnerRowWrite] = field(default_factory=list)
    tokens: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    wallets: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def token(
        self, collection: KnownCollection, token_id: int, current: Mapping[str, int], wanted: Mapping[str, int]
    ) -> None:
        """Plan the rows of the ``current`` and ``wanted`` owners of one token to end as ``wanted`` (a
        missing or zero balance: no row). Unchanged rows are rewritten as they are (re-verified now).
        For an ERC-721 token, a holder replaced by another is a move of the row."""
        removed = sorted(owner for owner, balance in current.items() if balance > 0 and wanted.get(owner, 0) <= 0)
        added = sorted(owner for owner, balance in wanted.items() if balance > 0 and current.get(owner, 0) <= 0)
        if collection.token_type == "ERC721" and removed and added:
            old, new = removed.pop(0), added.pop(0)
            self.writes.append(OwnerRowWrite(collection.id, token_id, old, new, wanted[new]))
            self._changed(collection, token_id, old, new)
        for owner in removed:
            self.writes.append(OwnerRowWrite(collection.id, token_id, owner, owner, 0))
            self._changed(collection, token_id, owner)
        for owner in added:
            self.writes.append(OwnerRowWrite(collection.id, token_id, None, owner, wanted[owner]))
            self._changed(collection, token_id, owner)
        for owner, balance in sorted(wanted.items()):
            if balance > 0 and current.get(owner, 0) > 0:
                self.writes.append(OwnerRowWrite(collection.id, token_id, owner, owner, balance))
                if balance != current[owner]:
                    self._changed(collection, token_id, owner)

    def _changed(self, collection: KnownCollection, token_id: int, *owners: str) -> None:
        self.tokens[collection.contract].add(token_id)
        self.wallets[collection.contract].update(owners)


def _lock_and_load(conn: Connection, contracts: Iterable[str]) -> dict[str, KnownCollection]:
    """Take the collections' advisory locks (sorted, one statement) and read the known ones."""
    addresses = sorted(set(contracts))
    lock_ownership(conn=conn, addresses=addresses)
    return known_collections(conn=conn, addresses=addresses)


def lock_collections(*, conn: Connection, contracts: Iterable[str]) -> None:
    """Take this module's per-collection advisory locks inside the caller's transaction (for other
    writers of ``nft_ownership`` — such as a full owner sync — that must not interleave with transfers)."""
    _lock_and_load(conn, contracts)


def _write(conn: Connection, plan: _Plan) -> OwnershipChanges:
    """Write ``plan`` through the one mover (``merge_owner_rows``: one MERGE) and say what it changed."""
    merge_owner_rows(conn=conn, rows=plan.writes)
    return OwnershipChanges(
        tokens={contract: frozenset(tokens) for contract, tokens in plan.tokens.items() if tokens},
        wallets={contract: frozenset(wallets) for contract, wallets in plan.wallets.items() if wallets},
        touched=len(plan.writes),
    )


def ownership_events(changes: OwnershipChanges) -> list[PublishableEvent]:
    """``ownership.changed`` per contract (split so no list exceeds ``MAX_LIST_ITEMS``), in wire form."""
    events: list[PublishableEvent] = []
    for contract in sorted(changes.tokens):
        events += ownership_changes(
            contract, sorted(changes.tokens[contract]), sorted(changes.wallets.get(contract, ()))
        )
    return events


def _with_retries[T](
    conn: Connection, publisher: EventPublisher, attempt: Callable[[], tuple[T, list[PublishableEvent]]]
) -> tuple[T, tuple[int, ...]]:
    """Run ``attempt`` in an outbox transaction with its events; retry when another writer deadlocked or
    raced with it (the attempt is rolled back as a whole, events included). Returns the attempt's result
    and the outbox ids of its events."""
    from psycopg import errors

    for number in range(1, MAX_ATTEMPTS + 1):
        try:
            with outbox_transaction(conn, publisher) as tx:
                result, events = attempt()
                for event in events:
                    tx.add(event)
        except (errors.DeadlockDetected, errors.SerializationFailure, errors.UniqueViolation):
            if number == MAX_ATTEMPTS:
                raise
            logger.warning("ownership write raced with another writer; retrying", extra={"attempt": number})
        else:
            return result, tuple(tx.outbox_ids)
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------------------------------
# Transfers


def _dedupe(transfers: Sequence[Transfer]) -> tuple[list[Transfer], int]:
    """One transfer per log key; a removal wins over the transfer it removes (applied and undone in one
    go is no change). Returns the kept transfers and how many were dropped as duplicates."""
    kept: dict[ActivityKey, Transfer] = {}
    for transfer in transfers:
        present = kept.get(transfer.key)
        if present is None or (transfer.removed and not present.removed):
            kept[transfer.key] = transfer
    return list(kept.values()), len(transfers) - len(kept)


def _effective_type(collection: KnownCollection, hint: TokenType | None) -> KnownCollection:
    """The collection with the type its transfers follow: its own, else the payload's hint, else balances."""
    if collection.token_type in ("ERC721", "ERC1155"):
        return collection
    return KnownCollection(collection.id, collection.contract, hint or "ERC1155")


def _apply_attempt(conn: Connection, transfers: Sequence[Transfer]) -> tuple[TransferResult, list[PublishableEvent]]:
    collections = _lock_and_load(conn, (t.contract for t in transfers))
    by_key = {t.key: t for t in transfers}
    recorded = record_activity(conn=conn, transfers=transfers)

    # What to do with each newly recorded transfer or newly recorded removal: (record, collection, sign).
    steps: list[tuple[RecordedTransfer, KnownCollection, int]] = []
    kinds: dict[uuid.UUID, KnownCollection] = {}
    for record in recorded:
        transfer = by_key[record.key]
        collection = collections.get(transfer.contract)
        applies = record.inserted and record.applied
        reverses = not record.inserted and record.applied
        if not (applies or reverses) or collection is None or collection.id != record.collection_id:
            continue  # unknown collection, tombstone of a never-applied transfer, or a re-created collection
        kind = kinds.setdefault(collection.id, _effective_type(collection, transfer.token_type))
        steps.append((record, kind, 1 if applies else -1))
    # Undo the orphaned transfers newest first, then apply the new ones oldest first.
    steps.sort(key=lambda step: (step[2], step[0].position if step[2] > 0 else _negated(step[0].position)))

    single = [(record, kind) for record, kind, _ in steps if kind.token_type == "ERC721"]
    latest = latest_applied(
        conn=conn, tokens=((kind.contract, record.token_id) for record, kind in single), exclude=list(by_key)
    )
    current = current_rows(
        conn=conn,
        whole_tokens=((kind.id, record.token_id) for record, kind in single),
        rows=(
            (kind.id, record.token_id, owner)
            for record, kind, _ in steps
            if kind.token_type != "ERC721"
            for owner in (record.from_address, record.to_address)
            if owner != ZERO_ADDRESS
        ),
    )
    wanted = {key: dict(owners) for key, owners in current.items()}
    took_effect = {1: 0, -1: 0}  # forward transfers, removals
    for record, kind, sign in steps:
        holders = wanted.setdefault((kind.id, record.token_id), {})
        if kind.token_type == "ERC721":
            took_effect[sign] += _move_single(holders, record, sign, latest, (kind.contract, record.token_id))
        else:
            _move_balance(holders, record, sign)
            took_effect[sign] += 1

    plan = _Plan()
    for (collection_id, token_id), holders in sorted(wanted.items(), key=lambda item: (str(item[0][0]), item[0][1])):
        plan.token(kinds[collection_id], token_id, current.get((collection_id, token_id), {}), holders)
    changes = _write(conn, plan)

    events = [_transferred_event(record, by_key[record.key]) for record in recorded]
    events.extend(ownership_events(changes))
    events.extend(_list_transferred_tokens(conn, [(record, kind) for record, kind, sign in steps if sign > 0]))
    result = TransferResult(
        received=len(transfers),
        applied=took_effect[1],
        reversed=took_effect[-1],
        duplicates=len(transfers) - len(recorded),
        ignored=len(recorded) - len(steps),
        changes=changes,
        stale=len(steps) - took_effect[1] - took_effect[-1],
    )
    return result, events


def _list_transferred_tokens(
    conn: Connection, applied: Sequence[tuple[RecordedTransfer, KnownCollection]]
) -> list[PublishableEvent]:
    """Add the tokens that applied transfers show to exist (a mint or a move, not a burn) to their
    collection's listing when it lacks them (a token minted since the last ingestion), and say so with
    ``collection.updated`` per collection whose listing grew: its pages and totals changed. This and
    ingestion are the only ways into the listing (a single-token read never adds one)."""
    from such_market.collections.writes import list_tokens

    tokens: dict[KnownCollection, set[int]] = defaultdict(set)
    for record, kind in applied:
        if record.to_address != ZERO_ADDRESS:
            tokens[kind].add(record.token_id)
    events: list[PublishableEvent] = []
    for kind in sorted(tokens, key=lambda known: known.contract):
        if list_tokens(conn=conn, collection_id=kind.id, token_ids=tokens[kind]):
            events.append(collection_updated(kind.contract, "tokens_listed"))
    return events


def _negated(position: Position) -> Position:
    return (-position[0], -position[1], -position[2])


def _transferred_event(record: RecordedTransfer, transfer: Transfer) -> PublishableEvent:
    """``nft.transferred`` of a recorded transfer, with the values as stored (a removal names the
    transfer it removes)."""
    return nft_transferred(
        contract_address=transfer.contract,
        token_id=record.token_id,
        from_address=record.from_address,
        to_address=record.to_address,
        amount=record.amount,
        block_number=record.position[0],
        tx_hash=record.key[0],
        log_index=record.key[1],
        removed=transfer.removed,
    )


def _move_single(
    holders: dict[str, int],
    record: RecordedTransfer,
    sign: int,
    latest: dict[tuple[str, int], Position],
    token: tuple[str, int],
) -> bool:
    """ERC-721: apply (sign 1) or undo (sign -1) one transfer to the token's holder map; False when it
    is stale (the token has moved on since) and changes nothing."""
    if sign > 0:
        if token in latest and record.position <= latest[token]:
            return False  # an older transfer delivered late: the token already moved on
        latest[token] = record.position
        holders.clear()
        if record.to_address != ZERO_ADDRESS:
            holders[record.to_address] = 1
        return True
    holds_now = holders.get(record.to_address, 0) > 0 if record.to_address != ZERO_ADDRESS else not holders
    if not holds_now:
        return False  # the token has moved on since: a later transfer (or re-verification) decides
    holders.clear()
    if record.from_address != ZERO_ADDRESS:
        holders[record.from_address] = 1
    return True


def _move_balance(holders: dict[str, int], record: RecordedTransfer, sign: int) -> None:
    """ERC-1155: apply (sign 1) or undo (sign -1) one transfer's amount; balances never go below 0."""
    source, target = (record.from_address, record.to_address) if sign > 0 else (record.to_address, record.from_address)
    if source != ZERO_ADDRESS:
        holders[source] = max(0, holders.get(source, 0) - record.amount)
    if target != ZERO_ADDRESS:
        holders[target] = holders.get(target, 0) + record.amount


def apply_transfers(*, conn: Connection, transfers: Sequence[Transfer], publisher: EventPublisher) -> TransferResult:
    """Record and apply ``transfers`` (see the module docstring) in one transaction with their events.

    ``conn`` is an autocommit connection outside any transaction (the outbox transaction is opened
    here). The same log listed twice in the batch counts once (a removal wins). Returns counts and the
    changes; an empty batch writes nothing.
    """
    unique, repeated = _dedupe(transfers)
    if not unique:
        return TransferResult(
            received=len(transfers), applied=0, reversed=0, duplicates=repeated, ignored=0, changes=OwnershipChanges()
        )
    result, outbox_ids = _with_retries(conn, publisher, lambda: _apply_attempt(conn, unique))
    return replace(result, received=len(transfers), duplicates=result.duplicates + repeated, outbox_ids=outbox_ids)


# --------------------------------------------------------------------------------------------------
# Reconciliation (re-verification)


def _reconcile_attempt(
    conn: Connection, observed: Sequence[ObservedToken]
) -> tuple[ReconcileResult, list[PublishableEvent]]:
    collections = _lock_and_load(conn, (token.contract for token in observed))
    known = [token for token in observed if token.contract in collections]
    current = current_rows(conn=conn, whole_tokens=((collections[t.contract].id, t.token_id) for t in known), rows=())
    plan = _Plan()
    skipped = len(observed) - len(known)
    for token in sorted(known, key=lambda t: (t.contract, t.token_id)):
        collection = collections[token.contract]
        held = current.get((collection.id, token.token_id), {})
        wanted = {
            owner: (held.get(owner) or 1) if balance is None else balance
            for owner, balance in token.owners.items()
            if balance is None or balance > 0
        }
        if collection.token_type == "ERC721":
            if len(wanted) > 1:
                skipped += 1
                logger.warning("an ERC-721 token was reported with several holders; left as it is")
                continue
            wanted = dict.fromkeys(wanted, 1)
        plan.token(collection, token.token_id, held, wanted)
    changes = _write(conn, plan)
    return ReconcileResult(changes=changes, skipped=skipped), ownership_events(changes)


def reconcile_owners(
    *, conn: Connection, observed: Sequence[ObservedToken], publisher: EventPublisher
) -> ReconcileResult:
    """Make the owner rows of each observed token match its observed holders, in one transaction with
    the ``ownership.changed`` events; rows that already match are re-verified (``last_verified_at``)."""
    if not observed:
        return ReconcileResult(changes=OwnershipChanges(), skipped=0)
    result, outbox_ids = _with_retries(conn, publisher, lambda: _reconcile_attempt(conn, observed))
    return replace(result, outbox_ids=outbox_ids)


__all__ = [
    "ObservedToken",
    "OwnershipChanges",
    "ReconcileResult",
    "TokenType",
    "Transfer",
    "TransferResult",
    "apply_transfers",
    "lock_collections",
    "ownership_events",
    "reconcile_owners",
]
