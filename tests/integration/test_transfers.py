"""apply_transfers against a real PostgreSQL: ERC-721 moves, ERC-1155 balances, re-orgs, replays, unknown
collections, the at-most-one-owner index, concurrency, and a stateful model check (hypothesis)."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from such_market.db.consistency import check_summaries
from such_market.events.publisher import EventPublisher
from such_market.ownership.transfers import Transfer, apply_transfers
from tests.conftest import MotoBus
from tests.integration.ownership_helpers import (
    ZERO,
    Conn,
    address,
    moto_publisher,
    new_collection,
    outbox,
    ownership,
    removal,
    transfer,
    user_collections,
    wallet_mappings,
)

C721 = address(0xA721)
C1155 = address(0xB1155)
UNKNOWN = address(0xDEAD)
ALICE, BOB, CAROL = address(0xA11CE), address(0xB0B), address(0xCA401)


@pytest.fixture
def publisher(moto_bus: MotoBus) -> EventPublisher:
    return moto_publisher()


@pytest.fixture
def collections(db: Conn) -> dict[str, uuid.UUID]:
    return {C721: new_collection(db, C721, "ERC721"), C1155: new_collection(db, C1155, "ERC1155")}


def apply(db: Conn, publisher: EventPublisher, *transfers: Transfer) -> object:
    return apply_transfers(conn=db, transfers=transfers, publisher=publisher)


def assert_consistent(db: Conn) -> None:
    report = check_summaries(conn=db)
    assert report.ok, report.differences


def test_mint_transfer_burn_moves_one_row(db: Conn, collections: object, publisher: EventPublisher) -> None:
    # Given a minted ERC-721 token
    apply(db, publisher, transfer(C721, 7, ZERO, ALICE))
    assert ownership(db) == {(C721, 7, ALICE): 1}
    created = db.execute("SELECT created_at FROM nft_ownership").fetchone()
    # When it is transferred
    result = apply_transfers(conn=db, transfers=[transfer(C721, 7, ALICE, BOB)], publisher=publisher)
    # Then the row moved (same row, new owner; the old owner is not left behind), summaries follow
    assert ownership(db) == {(C721, 7, BOB): 1}
    assert db.execute("SELECT created_at FROM nft_ownership").fetchone() == created
    assert user_collections(db) == {(BOB, C721): (1, 1)}
    assert wallet_mappings(db) == {(BOB, C721): (1, 1)}
    assert (result.applied, result.duplicates, result.ignored) == (1, 0, 0)
    assert result.changes.wallets == {C721: frozenset({ALICE, BOB})}
    # And a burn deletes it
    apply(db, publisher, transfer(C721, 7, BOB, CAROL), transfer(C721, 7, CAROL, ZERO))
    assert ownership(db) == {}
    assert user_collections(db) == {}
    assert wallet_mappings(db) == {}
    assert_consistent(db)


def test_events_commit_with_the_change(db: Conn, collections: object, moto_bus: MotoBus) -> None:
    publisher = moto_publisher()
    result = apply_transfers(conn=db, transfers=[transfer(C721, 1, ZERO, ALICE)], publisher=publisher)
    kinds = [kind for kind, _ in outbox(db)]
    # the mint also put the token into the collection's listing (it was not listed): collection.updated
    assert kinds == ["nft.transferred", "ownership.changed", "collection.updated"]
    changed = outbox(db)[1][1]
    assert changed["contractAddress"] == C721
    assert changed["tokenIds"] == ["1"]
    assert changed["wallets"] == [ALICE]
    assert outbox(db)[2][1]["reason"] == "tokens_listed"
    assert len(result.outbox_ids) == 3
    published = {message["detail-type"] for message in moto_bus.received()}
    assert published == {"nft.transferred", "ownership.changed", "collection.updated"}
    assert db.execute("SELECT count(*) FROM cache_events_outbox WHERE published_at IS NULL").fetchone() == (0,)


def test_erc1155_batch_and_partial_balances(db: Conn, collections: object, publisher: EventPublisher) -> None:
    # Given a batch mint of two ids to Alice
    mint = [transfer(C1155, 1, ZERO, ALICE, 10, block=5, log_index=3, batch_index=i) for i in range(1)]
    mint.append(transfer(C1155, 2, ZERO, ALICE, 4, block=5, log_index=3, batch_index=1))
    apply(db, publisher, *mint)
    # When she sends part of id 1 and all of id 2 to Bob (one TransferBatch log)
    apply(
        db,
        publisher,
        transfer(C1155, 1, ALICE, BOB, 3, block=6, log_index=0, batch_index=0),
        transfer(C1155, 2, ALICE, BOB, 4, block=6, log_index=0, batch_index=1),
    )
    # Then balances are partial, emptied rows are gone, summaries agree
    assert ownership(db) == {(C1155, 1, ALICE): 7, (C1155, 1, BOB): 3, (C1155, 2, BOB): 4}
    assert user_collections(db) == {(ALICE, C1155): (1, 7), (BOB, C1155): (2, 7)}
    # And a burn of more than held empties the row instead of going negative
    apply(db, publisher, transfer(C1155, 1, BOB, ZERO, 99))
    assert ownership(db) == {(C1155, 1, ALICE): 7, (C1155, 2, BOB): 4}
    assert_consistent(db)


def test_reorg_reverses_exactly_once(db: Conn, collections: object, publisher: EventPublisher) -> None:
    apply(db, publisher, transfer(C721, 3, ZERO, ALICE), transfer(C1155, 9, ZERO, ALICE, 5))
    moved, sent = transfer(C721, 3, ALICE, BOB), transfer(C1155, 9, ALICE, BOB, 2)
    apply(db, publisher, moved, sent)
    assert ownership(db) == {(C721, 3, BOB): 1, (C1155, 9, ALICE): 3, (C1155, 9, BOB): 2}
    # When the re-org removal arrives
    result = apply_transfers(conn=db, transfers=[removal(moved), removal(sent)], publisher=publisher)
    # Then both are undone
    assert result.reversed == 2
    assert ownership(db) == {(C721, 3, ALICE): 1, (C1155, 9, ALICE): 5}
    # And a repeated removal, or the orphaned transfer again, changes nothing
    again = apply_transfers(conn=db, transfers=[removal(moved), removal(sent), moved, sent], publisher=publisher)
    assert (again.applied, again.reversed, again.duplicates) == (0, 0, 4)
    assert ownership(db) == {(C721, 3, ALICE): 1, (C1155, 9, ALICE): 5}
    assert_consistent(db)


def test_removal_before_its_transfer_is_a_tombstone(db: Conn, collections: object, publisher: EventPublisher) -> None:
    apply(db, publisher, transfer(C721, 4, ZERO, ALICE))
    late = transfer(C721, 4, ALICE, BOB)
    first = apply_transfers(conn=db, transfers=[removal(late)], publisher=publisher)
    assert first.ignored == 1
    second = apply_transfers(conn=db, transfers=[late], publisher=publisher)
    assert second.duplicates == 1
    assert ownership(db) == {(C721, 4, ALICE): 1}


def test_replay_changes_nothing(db: Conn, collections: object, publisher: EventPublisher) -> None:
    batch = [transfer(C721, 1, ZERO, ALICE), transfer(C1155, 1, ZERO, BOB, 3)]
    apply(db, publisher, *batch)
    before, events = ownership(db), len(outbox(db))
    result = apply_transfers(conn=db, transfers=batch + batch, publisher=publisher)
    assert (result.received, result.applied, result.duplicates) == (4, 0, 4)
    assert ownership(db) == before
    assert len(outbox(db)) == events  # no event for a duplicate


def test_out_of_order_erc721_transfer_does_not_move_back(
    db: Conn, collections: object, publisher: EventPublisher
) -> None:
    older, newer = transfer(C721, 5, ZERO, ALICE, block=100), transfer(C721, 5, ALICE, BOB, block=101)
    apply(db, publisher, newer)
    result = apply_transfers(conn=db, transfers=[older], publisher=publisher)
    assert ownership(db) == {(C721, 5, BOB): 1}
    # And the outcome says so: recorded as stale, not applied
    assert (result.applied, result.stale, result.reversed, result.duplicates, result.ignored) == (0, 1, 0, 0, 0)
    # And the removal of a transfer the token has moved on from is stale too
    undone = apply_transfers(conn=db, transfers=[removal(older)], publisher=publisher)
    assert (undone.reversed, undone.stale) == (0, 1)
    assert ownership(db) == {(C721, 5, BOB): 1}


def test_unknown_collection_is_recorded_not_indexed(db: Conn, collections: object, publisher: EventPublisher) -> None:
    result = apply_transfers(conn=db, transfers=[transfer(UNKNOWN, 1, ZERO, ALICE)], publisher=publisher)
    assert (result.applied, result.ignored) == (0, 1)
    assert ownership(db) == {}
    assert db.execute("SELECT applied, collection_id FROM ownership_activity").fetchall() == [(False, None)]
    assert [kind for kind, _ in outbox(db)] == ["nft.transferred"]


def test_erc721_at_most_one_owner_is_enforced_by_the_database(db: Conn, collections: dict[str, uuid.UUID]) -> None:
    db.execute(
        "INSERT INTO nft_ownership (collection_id, token_id, owner_address) VALUES (%s, 1, %s)",
        (collections[C721], ALICE),
    )
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO nft_ownership (collection_id, token_id, owner_address) VALUES (%s, 1, %s)",
            (collections[C721], BOB),
        )
    # ERC-1155 tokens keep any number of holders
    for owner in (ALICE, BOB):
        db.execute(
            "INSERT INTO nft_ownership (collection_id, token_id, owner_address, balance) VALUES (%s, 1, %s, 2)",
            (collections[C1155], owner),
        )


def test_concurrent_transfers_on_the_same_wallets(
    db_url: str, db: Conn, collections: object, moto_bus: MotoBus
) -> None:
    # Given tokens spread over three wallets in both collections
    wallets = [ALICE, BOB, CAROL]
    publisher = moto_publisher()
    apply(db, publisher, *(transfer(C721, t, ZERO, wallets[t % 3]) for t in range(30)))
    apply(db, publisher, *(transfer(C1155, t, ZERO, w, 100) for t in range(3) for w in wallets))
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                for step in range(15):
                    token = (seed * 7 + step) % 30
                    owner = ownership(conn)
                    holder = next((o for (c, t, o) in owner if c == C721 and t == token), None)
                    batch = [transfer(C1155, step % 3, wallets[seed % 3], wallets[(seed + 1) % 3], 1)]
                    if holder is not None:
                        batch.append(transfer(C721, token, holder, wallets[(seed + step) % 3]))
                    apply_transfers(conn=conn, transfers=batch, publisher=publisher)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    # When six threads move tokens between the same wallets at once
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then nothing failed, every ERC-721 token still has exactly one owner, balances are conserved
    assert errors == []
    rows = ownership(db)
    assert sorted(t for (c, t, _) in rows if c == C721) == list(range(30))
    assert sum(b for (c, _, _), b in rows.items() if c == C1155) == 900
    assert_consistent(db)


# --------------------------------------------------------------------------------------------------
# Stateful: random operations against a plain model

WALLETS = [address(0x100 + i) for i in range(4)]
TOKENS = range(4)


def _run_model(db: Conn, publisher: EventPublisher) -> None:
    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            db.execute("TRUNCATE ownership_activity, cache_events_outbox, collections CASCADE")
            self.ids = {C721: new_collection(db, C721, "ERC721"), C1155: new_collection(db, C1155, "ERC1155")}
            self.model: dict[tuple[str, int, str], int] = {}
            self.applied: list[Transfer] = []
            self.block = 1

        def _apply(self, *transfers: Transfer) -> None:
            apply_transfers(conn=db, transfers=transfers, publisher=publisher)

        def _next(self, contract: str, token: int, sender: str, receiver: str, amount: int = 1) -> Transfer:
            self.block += 1
            return transfer(contract, token, sender, receiver, amount, block=self.block)

        def _owner(self, token: int) -> str | None:
            return next((o for (c, t, o) in self.model if c == C721 and t == token), None)

        def _add(self, key: tuple[str, int, str], delta: int) -> None:
            balance = self.model.get(key, 0) + delta
            if balance > 0:
                self.model[key] = balance
            else:
                self.model.pop(key, None)

        @rule(token=st.sampled_from(TOKENS), to=st.sampled_from([*WALLETS, ZERO]))
        def erc721_transfer(self, token: int, to: str) -> None:
            owner = self._owner(token) or ZERO
            if owner == ZERO and to == ZERO:
                return
            move = self._next(C721, token, owner, to)
            self._apply(move)
            if owner != ZERO:
                self.model.pop((C721, token, owner))
            if to != ZERO:
                self.model[C721, token, to] = 1
            self.applied.append(move)

        @rule(
            token=st.sampled_from(TOKENS),
            sender=st.sampled_from([*WALLETS, ZERO]),
            receiver=st.sampled_from([*WALLETS, ZERO]),
            amount=st.integers(1, 5),
        )
        def erc1155_transfer(self, token: int, sender: str, receiver: str, amount: int) -> None:
            if sender != ZERO and self.model.get((C1155, token, sender), 0) < amount:
                sender = ZERO  # not enough to send: make it a mint
            if sender == receiver:
                return
            move = self._next(C1155, token, sender, receiver, amount)
            self._apply(move)
            if sender != ZERO:
                self._add((C1155, token, sender), -amount)
            if receiver != ZERO:
                self._add((C1155, token, receiver), amount)
            self.applied.append(move)

        @rule()
        def replay_last(self) -> None:
            if self.applied:
                self._apply(self.applied[-1])

        @rule()
        def reorg_last(self) -> None:
            if not self.applied:
                return
            last = self.applied.pop()
            self._apply(removal(last))
            token, sender, receiver, amount = last.token_id, last.from_address, last.to_address, last.amount
            if last.contract == C721:
                # undone only while the receiver still holds it (it does: later transfers were undone first)
                assert receiver == (self._owner(token) or ZERO)
                self.model.pop((C721, token, receiver), None)
                if sender != ZERO:
                    self.model[C721, token, sender] = 1
                return
            if receiver != ZERO:
                self._add((C1155, token, receiver), -amount)
            if sender != ZERO:
                self._add((C1155, token, sender), amount)

        @rule(contract=st.sampled_from([C721, C1155]))
        def delete_and_recreate_collection(self, contract: str) -> None:
            db.execute("DELETE FROM collections WHERE contract_address = %s", (contract,))
            self.ids[contract] = new_collection(db, contract, "ERC721" if contract == C721 else "ERC1155")
            self.model = {key: value for key, value in self.model.items() if key[0] != contract}
            self.applied = [t for t in self.applied if t.contract != contract]

        @invariant()
        def matches_model(self) -> None:
            assert ownership(db) == self.model
            expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
            for (contract, _, owner), balance in self.model.items():
                expected[owner, contract][0] += 1
                expected[owner, contract][1] += balance
            summary = {key: (tokens, balance) for key, (tokens, balance) in expected.items()}
            assert user_collections(db) == summary
            assert wallet_mappings(db) == summary
            assert check_summaries(conn=db).ok

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=15, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )


def test_random_operations_match_a_model(db: Conn, publisher: EventPublisher) -> None:
    _run_model(db, publisher)
