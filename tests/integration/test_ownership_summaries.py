"""The ownership summaries (user_collections, wallet_collection_mapping) are maintained by the 0003
statement-level triggers under every kind of change to nft_ownership, in bulk and concurrently, and the
consistency check agrees after each scenario (and notices when a summary is wrong)."""

from __future__ import annotations

import random
import threading
import uuid

import psycopg
import pytest
from psycopg import errors

from such_market.db.consistency import check_summaries

Conn = psycopg.Connection[tuple[object, ...]]


def address(n: int) -> str:
    return f"0x{n:040x}"


CONTRACT_721 = address(0xA721)
CONTRACT_1155 = address(0xB1155)
ALICE, BOB, CAROL, DAVE = (address(0xA11CE), address(0xB0B), address(0xCA401), address(0xDA7E))


@pytest.fixture
def erc721(db: Conn) -> uuid.UUID:
    return new_collection(db, CONTRACT_721, "ERC721")


@pytest.fixture
def erc1155(db: Conn) -> uuid.UUID:
    return new_collection(db, CONTRACT_1155, "ERC1155")


def new_collection(conn: Conn, contract: str, token_type: str) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO collections (contract_address, name, token_type) VALUES (%s, %s, %s) RETURNING id",
        (contract, f"{token_type} test", token_type),
    ).fetchone()
    assert row is not None
    assert isinstance(row[0], uuid.UUID)
    return row[0]


def own(conn: Conn, collection: uuid.UUID, token_id: int, owner: str, balance: int = 1) -> None:
    conn.execute(
        "INSERT INTO nft_ownership (collection_id, token_id, owner_address, balance) VALUES (%s, %s, %s, %s)",
        (collection, token_id, owner, balance),
    )


def user_collections(conn: Conn) -> dict[tuple[str, uuid.UUID], tuple[int, int]]:
    rows = conn.execute(
        "SELECT owner_address, collection_id, token_count, total_balance FROM user_collections"
    ).fetchall()
    return {(str(o), c): (int(str(n)), int(str(b))) for o, c, n, b in rows if isinstance(c, uuid.UUID)}


def mapping(conn: Conn) -> dict[tuple[str, str], tuple[str, int | None, int | None]]:
    rows = conn.execute(
        "SELECT wallet_address, contract_address, source, num_distinct_tokens, total_balance"
        " FROM wallet_collection_mapping"
    ).fetchall()
    return {
        (str(w), str(c)): (str(s), None if n is None else int(str(n)), None if b is None else int(str(b)))
        for w, c, s, n, b in rows
    }


def assert_consistent(conn: Conn) -> None:
    report = check_summaries(conn=conn)
    assert report.ok, report.differences
    assert report.difference_count == 0


def test_inserts_and_deletes_maintain_both_summaries(db: Conn, erc721: uuid.UUID) -> None:
    # Given Alice holds tokens 1-3 and Bob token 4
    for token_id in (1, 2, 3):
        own(db, erc721, token_id, ALICE)
    own(db, erc721, 4, BOB)
    # Then both summaries count them
    assert user_collections(db) == {(ALICE, erc721): (3, 3), (BOB, erc721): (1, 1)}
    assert mapping(db) == {
        (ALICE, CONTRACT_721): ("index", 3, 3),
        (BOB, CONTRACT_721): ("index", 1, 1),
    }
    assert_consistent(db)
    # When Alice loses one token and Bob his only one
    db.execute("DELETE FROM nft_ownership WHERE token_id IN (1, 4)")
    # Then Alice's figures drop and Bob's rows disappear
    assert user_collections(db) == {(ALICE, erc721): (2, 2)}
    assert mapping(db) == {(ALICE, CONTRACT_721): ("index", 2, 2)}
    assert_consistent(db)


def test_transfer_moves_the_token_between_owners(db: Conn, erc721: uuid.UUID) -> None:
    # Given Alice holds tokens 1 and 2
    own(db, erc721, 1, ALICE)
    own(db, erc721, 2, ALICE)
    # When token 1 is transferred to Bob (the ownership row moves to the new owner)
    db.execute("UPDATE nft_ownership SET owner_address = %s WHERE collection_id = %s AND token_id = 1", (BOB, erc721))
    # Then Alice has one token left and Bob one
    assert user_collections(db) == {(ALICE, erc721): (1, 1), (BOB, erc721): (1, 1)}
    # When token 2 follows, and a verification touches every row without changing owners
    db.execute("UPDATE nft_ownership SET owner_address = %s WHERE token_id = 2", (BOB,))
    db.execute("UPDATE nft_ownership SET last_verified_at = now()")
    # Then Alice is gone from both summaries
    assert user_collections(db) == {(BOB, erc721): (2, 2)}
    assert mapping(db) == {(BOB, CONTRACT_721): ("index", 2, 2)}
    assert_consistent(db)


def test_erc1155_balances_and_multiple_owners(db: Conn, erc1155: uuid.UUID) -> None:
    # Given token 7 held by Alice (5) and Bob (3), token 8 by Alice (1)
    own(db, erc1155, 7, ALICE, 5)
    own(db, erc1155, 7, BOB, 3)
    own(db, erc1155, 8, ALICE, 1)
    assert user_collections(db) == {(ALICE, erc1155): (2, 6), (BOB, erc1155): (1, 3)}
    # When Alice sends 2 of token 7 to Bob, in one transaction
    with db.transaction():
        db.execute(
            "UPDATE nft_ownership SET balance = balance - 2 WHERE token_id = 7 AND owner_address = %s",
            (ALICE,),
        )
        db.execute("UPDATE nft_ownership SET balance = balance + 2 WHERE token_id = 7 AND owner_address = %s", (BOB,))
    # Then the distinct counts stay and the balances move
    assert user_collections(db) == {(ALICE, erc1155): (2, 4), (BOB, erc1155): (1, 5)}
    # When Carol receives a huge balance (uint256-sized) of token 8
    own(db, erc1155, 8, CAROL, 2**255)
    # Then the numeric(78,0) figures hold it exactly
    assert user_collections(db)[(CAROL, erc1155)] == (1, 2**255)
    assert mapping(db)[(CAROL, CONTRACT_1155)] == ("index", 1, 2**255)
    assert_consistent(db)


def test_deleting_a_collection_cascades_through_the_summaries(db: Conn, erc721: uuid.UUID, erc1155: uuid.UUID) -> None:
    # Given Alice holds tokens of both collections and Bob a scan row for an unindexed contract
    own(db, erc721, 1, ALICE)
    own(db, erc1155, 1, ALICE, 4)
    db.execute(
        "INSERT INTO wallet_collection_mapping (wallet_address, contract_address, num_distinct_tokens,"
        " total_balance, source) VALUES (%s, %s, 1, 1, 'scan')",
        (BOB, address(0xFEED)),
    )
    # When the ERC-721 collection is deleted
    db.execute("DELETE FROM collections WHERE id = %s", (erc721,))
    # Then its ownership and summary rows are gone and everything else stays
    assert user_collections(db) == {(ALICE, erc1155): (1, 4)}
    assert mapping(db) == {
        (ALICE, CONTRACT_1155): ("index", 1, 4),
        (BOB, address(0xFEED)): ("scan", 1, 1),
    }
    assert_consistent(db)


def test_bulk_sync_of_ten_thousand_rows(db: Conn, erc721: uuid.UUID, erc1155: uuid.UUID) -> None:
    # Given 10k tokens copied in one COPY over 97 owners
    owners = [address(0x1000 + i) for i in range(97)]
    with (
        db.transaction(),
        db.cursor() as cursor,
        cursor.copy("COPY nft_ownership (collection_id, token_id, owner_address, balance) FROM STDIN") as copy,
    ):
        for token_id in range(10_000):
            copy.write_row((erc721, token_id, owners[token_id % 97], 1))
    # And 10k ERC-1155 holdings through INSERT ... SELECT
    db.execute(
        "INSERT INTO nft_ownership (collection_id, token_id, owner_address, balance)"
        " SELECT %s, g %% 500, %s || lpad(to_hex(4096 + g / 500), 40, '0'), g + 1"
        " FROM generate_series(0, 9999) AS g",
        (erc1155, "0x"),
    )
    # Then the summaries cover every owner exactly
    counts = user_collections(db)
    assert sum(n for (_, c), (n, _) in counts.items() if c == erc721) == 10_000
    assert sum(b for (_, c), (_, b) in counts.items() if c == erc1155) == sum(range(1, 10_001))
    assert_consistent(db)
    # When half the tokens change hands in one statement and a third are burnt in another
    db.execute(
        "UPDATE nft_ownership SET owner_address = %s WHERE collection_id = %s AND token_id %% 2 = 0",
        (ALICE, erc721),
    )
    db.execute("DELETE FROM nft_ownership WHERE collection_id = %s AND token_id %% 3 = 0", (erc721,))
    # Then the summaries still agree, with Alice holding the even survivors
    assert user_collections(db)[(ALICE, erc721)][0] == len([t for t in range(10_000) if t % 2 == 0 and t % 3])
    assert_consistent(db)


def test_index_takes_over_a_scan_row(db: Conn, erc721: uuid.UUID) -> None:
    # Given a wallet scan said Alice holds 9 tokens of the contract (and something unparseable elsewhere)
    db.execute(
        "INSERT INTO wallet_collection_mapping (wallet_address, contract_address, collection_id,"
        " num_distinct_tokens, total_balance, source, scanned_at) VALUES"
        " (%s, %s, %s, 9, 9, 'scan', now()), (%s, %s, NULL, NULL, NULL, 'scan', now())",
        (ALICE, CONTRACT_721, erc721, ALICE, address(0xFEED)),
    )
    # And the scan row counts as a difference only once the index holds that key
    assert_consistent(db)
    # When the index learns that Alice holds tokens 1 and 2
    own(db, erc721, 1, ALICE)
    assert mapping(db)[(ALICE, CONTRACT_721)] == ("index", 1, 1)
    own(db, erc721, 2, ALICE)
    # Then the index's own figures replace the scan's (not 9 + 2), and the other scan row stays
    assert mapping(db) == {
        (ALICE, CONTRACT_721): ("index", 2, 2),
        (ALICE, address(0xFEED)): ("scan", None, None),
    }
    assert_consistent(db)


def test_a_scan_row_where_the_index_holds_is_reported_then_taken_over(db: Conn, erc721: uuid.UUID) -> None:
    # Given the index holds Alice's token 1 but a scan row (say a wallet scan written over it) says 40
    own(db, erc721, 1, ALICE)
    db.execute("DELETE FROM wallet_collection_mapping")
    db.execute(
        "INSERT INTO wallet_collection_mapping (wallet_address, contract_address, num_distinct_tokens,"
        " total_balance, source) VALUES (%s, %s, 40, 40, 'scan')",
        (ALICE, CONTRACT_721),
    )
    # Then the check reports the scan row where the index holds the key
    report = check_summaries(conn=db)
    assert not report.ok
    assert report.differences[0]["summary"] == "wallet_collection_mapping (scan row, index holds)"
    # When the index adds a token for Alice
    own(db, erc721, 2, ALICE)
    # Then the row is recomputed from nft_ownership
    assert mapping(db)[(ALICE, CONTRACT_721)] == ("index", 2, 2)
    assert_consistent(db)


def test_the_check_reports_every_kind_of_difference(db: Conn, erc721: uuid.UUID) -> None:
    # Given consistent summaries
    own(db, erc721, 1, ALICE)
    own(db, erc721, 2, BOB)
    assert_consistent(db)
    # When they are corrupted behind the triggers' back: wrong figures, a missing row, an extra row
    db.execute("UPDATE user_collections SET token_count = 5 WHERE owner_address = %s", (ALICE,))
    db.execute("DELETE FROM wallet_collection_mapping WHERE wallet_address = %s", (BOB,))
    db.execute(
        "INSERT INTO user_collections (owner_address, collection_id, token_count, total_balance) VALUES (%s, %s, 1, 1)",
        (CAROL, erc721),
    )
    # Then the check reports each of them with JSON-friendly values
    report = check_summaries(conn=db)
    assert not report.ok
    assert report.difference_count == 3
    by_owner = {(d["summary"], d["owner_address"]): d for d in report.differences}
    assert by_owner[("user_collections", ALICE)]["expected_tokens"] == "1"
    assert by_owner[("user_collections", ALICE)]["actual_tokens"] == "5"
    assert by_owner[("user_collections", CAROL)]["expected_tokens"] is None
    assert by_owner[("wallet_collection_mapping", BOB)]["actual_tokens"] is None
    assert by_owner[("wallet_collection_mapping", BOB)]["collection_id"] == str(erc721)


def test_concurrent_transfers_keep_the_summaries_exact(
    db: Conn, db_url: str, erc721: uuid.UUID, erc1155: uuid.UUID
) -> None:
    # Given 60 ERC-721 tokens spread over four wallets, and one ERC-1155 token each of them holds
    wallets = [ALICE, BOB, CAROL, DAVE]
    for token_id in range(60):
        own(db, erc721, token_id, wallets[token_id % 4])
    for wallet in wallets:
        own(db, erc1155, 1, wallet, 10_000)  # never drained by 5-unit moves
    workers, transactions = 8, 40
    barrier = threading.Barrier(workers)
    failures: list[BaseException] = []
    retries: list[str] = []  # deadlock / serialization retries, as any writer does them

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                barrier.wait()
                for _ in range(transactions):
                    while True:
                        try:
                            with conn.transaction():
                                transfer(conn, rng)
                            break
                        except (errors.DeadlockDetected, errors.SerializationFailure) as error:
                            retries.append(type(error).__name__)
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    def transfer(conn: Conn, rng: random.Random) -> None:
        sender, receiver = rng.sample(wallets, 2)
        if rng.random() < 0.7:
            # An ERC-721 transfer: the row moves to the new owner.
            conn.execute(
                "UPDATE nft_ownership SET owner_address = %s WHERE collection_id = %s AND token_id = %s",
                (receiver, erc721, rng.randrange(60)),
            )
        else:
            # An ERC-1155 transfer of some units, sender down and receiver up in one statement.
            amount = rng.randint(1, 5)
            conn.execute(
                "UPDATE nft_ownership"
                " SET balance = balance + CASE WHEN owner_address = %(to)s THEN %(n)s ELSE -%(n)s END"
                " WHERE collection_id = %(c)s AND token_id = 1 AND owner_address IN (%(from)s, %(to)s)",
                {"c": erc1155, "from": sender, "to": receiver, "n": amount},
            )

    # When eight workers transfer between the same wallets at the same time, each in its own transactions
    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every transaction committed, no token was lost, and the summaries are exact
    assert failures == []
    counts = user_collections(db)
    assert sum(n for (_, c), (n, _) in counts.items() if c == erc721) == 60
    assert_consistent(db)
