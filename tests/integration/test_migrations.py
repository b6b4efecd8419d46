"""Migrations against a real PostgreSQL: from empty, re-run, concurrent runners, constraints, and the
legacy data path 0003 -> 0004 -> 0005 over a populated legacy database with proof that no ownership
datum is lost, double counted, or silently dropped."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import errors

from such_market.db.consistency import check_summaries
from such_market.db.migrations import MigrationError, applied_versions, discover, migrate
from tests.conftest import MIGRATIONS

Conn = psycopg.Connection[tuple[object, ...]]

ALL_VERSIONS = [m.version for m in discover(MIGRATIONS)]
LEGACY_MIGRATION = next(m for m in discover(MIGRATIONS) if m.version == "0004")

COLLECTION_A = "0x" + "a1" * 20  # indexed ERC-721
COLLECTION_B = "0x" + "b2" * 20  # indexed ERC-1155
UNINDEXED_X = "0x" + "c3" * 20
UNINDEXED_Y = "0x" + "d4" * 20
UNINDEXED_Z = "0x" + "e5" * 20
OWNER_1 = "0x" + "1f" * 20
OWNER_2 = "0x" + "2e" * 20
WALLET_1 = "0x" + "3d" * 20
WALLET_3 = "0x" + "4c" * 20
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def mixed_case(address: str) -> str:
    """``address`` with every other hex letter upper-cased, as a checksummed address would be."""
    return "0x" + "".join(c.upper() if i % 2 else c for i, c in enumerate(address[2:]))


@pytest.fixture
def conn(empty_db_url: str) -> Iterator[Conn]:
    with psycopg.connect(empty_db_url, autocommit=True) as connection:
        yield connection


def table_exists(conn: Conn, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def test_migrate_from_empty_records_every_version_and_creates_the_tables(conn: Conn) -> None:
    # Given an empty database
    # When it is migrated
    report = migrate(conn, MIGRATIONS)
    # Then every migration was applied once, in order, and recorded
    assert list(report.applied) == ALL_VERSIONS
    assert sorted(applied_versions(conn)) == ALL_VERSIONS
    for table in (
        "collections",
        "nfts",
        "collection_traits",
        "nft_traits",
        "fc_users",
        "nft_ownership",
        "user_collections",
        "wallet_collection_mapping",
        "legacy_migration_rejects",
        "cache_events_outbox",
        "notification_tokens",
        "notification_deliveries",
    ):
        assert table_exists(conn, table), table
    # And the legacy cache is gone once 0005 verified the (empty) migration
    assert not table_exists(conn, "user_nft_cache")


def test_second_run_applies_nothing(conn: Conn) -> None:
    # Given a migrated database
    migrate(conn, MIGRATIONS)
    # When the runner runs again
    report = migrate(conn, MIGRATIONS)
    # Then nothing is applied and everything is reported as already there
    assert report.applied == ()
    assert list(report.already_applied) == ALL_VERSIONS


def test_every_migration_file_is_idempotent_sql(conn: Conn) -> None:
    # Given a database migrated up to the legacy drop (0004 and 0005 are data steps over it)
    migrate(conn, MIGRATIONS)
    # When each schema migration's SQL runs a second time
    for migration in discover(MIGRATIONS):
        with conn.transaction():
            conn.execute(migration.sql.encode())
    # Then nothing failed and the ledger is untouched
    assert sorted(applied_versions(conn)) == ALL_VERSIONS


def test_concurrent_runners_apply_each_migration_exactly_once(empty_db_url: str) -> None:
    # Given four runners with their own connections, released at the same moment
    runners = 4
    barrier = threading.Barrier(runners)
    applied: list[tuple[str, ...]] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_db_url, autocommit=True) as own:
                barrier.wait()
                applied.append(migrate(own, MIGRATIONS).applied)
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    # When they all migrate the same empty database
    threads = [threading.Thread(target=run) for _ in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then no runner failed and every migration was applied by exactly one of them
    assert failures == []
    assert sorted(v for versions in applied for v in versions) == ALL_VERSIONS
    with psycopg.connect(empty_db_url, autocommit=True) as check:
        assert sorted(applied_versions(check)) == ALL_VERSIONS


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        pytest.param(
            "INSERT INTO nft_ownership (collection_id, token_id, owner_address) VALUES (%(c)s, 1, %(upper)s)",
            errors.CheckViolation,
            id="upper-case owner address",
        ),
        pytest.param(
            "INSERT INTO nft_ownership (collection_id, token_id, owner_address) VALUES (%(c)s, -1, %(lower)s)",
            errors.CheckViolation,
            id="negative token id",
        ),
        pytest.param(
            "INSERT INTO nft_ownership (collection_id, token_id, owner_address, balance)"
            " VALUES (%(c)s, 1, %(lower)s, 0)",
            errors.CheckViolation,
            id="zero balance",
        ),
        pytest.param(
            "INSERT INTO nft_ownership (collection_id, token_id, owner_address) VALUES (NULL, 1, %(lower)s)",
            errors.NotNullViolation,
            id="null collection",
        ),
        pytest.param(
            "INSERT INTO nfts (collection_id, token_id) VALUES (%(c)s, -5)",
            errors.CheckViolation,
            id="negative nft token id",
        ),
        pytest.param(
            "INSERT INTO collections (contract_address) VALUES (%(upper)s)",
            errors.CheckViolation,
            id="upper-case contract address",
        ),
        pytest.param(
            "INSERT INTO fc_users (fid, verified_eth_addresses) VALUES (7, ARRAY[%(lower)s, %(upper)s])",
            errors.CheckViolation,
            id="upper-case verified address",
        ),
        pytest.param(
            "INSERT INTO wallet_collection_mapping (wallet_address, contract_address, source)"
            " VALUES (%(lower)s, %(lower)s, 'guess')",
            errors.CheckViolation,
            id="unknown mapping source",
        ),
    ],
)
def test_constraints_reject_invalid_rows(db: Conn, statement: str, error: type[psycopg.Error]) -> None:
    # Given a migrated database with one collection
    row = db.execute("INSERT INTO collections (contract_address) VALUES (%s) RETURNING id", (COLLECTION_A,)).fetchone()
    assert row is not None
    params = {"c": row[0], "lower": OWNER_1, "upper": OWNER_1.upper().replace("0X", "0x")}
    # When an invalid row is written / Then the database refuses it
    with pytest.raises(error):
        db.execute(statement, params)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("0x" + "ab" * 20, True),
        ("0x" + "0" * 40, True),
        ("0x" + "ab" * 20 + "a", False),  # 41 hex digits
        ("0x" + "ab" * 19 + "a", False),  # 39
        ("0x" + "AB" * 20, False),
        ("0X" + "ab" * 20, False),
        ("00" + "ab" * 20, False),
        ("0x" + "ab" * 19 + "ag", False),
        ("0x" + "ab" * 19 + "a\n", False),
        ("", False),
    ],
)
def test_is_evm_address_accepts_exactly_lower_case_0x_addresses(db: Conn, value: str, valid: bool) -> None:
    row = db.execute("SELECT is_evm_address(%s)", (value,)).fetchone()
    assert row == (valid,)


# Every column that holds an address, checked by is_evm_address (0012) rather than 0001-0009's
# '^0x[0-9a-f]{40}$', which costs about seven times as much per written row.
ADDRESS_COLUMNS = {
    ("collections", "contract_address"),
    ("fc_users", "custody_address"),
    ("nft_ownership", "owner_address"),
    ("user_collections", "owner_address"),
    ("wallet_collection_mapping", "wallet_address"),
    ("wallet_collection_mapping", "contract_address"),
    ("ownership_activity", "contract_address"),
    ("ownership_activity", "from_address"),
    ("ownership_activity", "to_address"),
    ("wallet_scans", "wallet_address"),
    ("notification_transfers", "contract_address"),
    ("notification_transfers", "counterparty"),
}


def test_every_address_column_is_checked_by_is_evm_address(db: Conn) -> None:
    checks = db.execute(
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid), convalidated FROM pg_constraint"
        " WHERE contype = 'c' AND connamespace = 'public'::regnamespace"
    ).fetchall()
    checked = {
        (str(table), column)
        for table, definition, validated in checks
        for column in [str(definition).removeprefix("CHECK (is_evm_address(").removesuffix("))")]
        if str(definition).startswith("CHECK (is_evm_address(") and validated
    }
    assert checked == ADDRESS_COLUMNS
    assert not [definition for _, definition, _ in checks if "{40}" in str(definition)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", 3),
        ("  3 ", 3),
        ("0", 0),
        ("007", 7),
        ("9" * 78, int("9" * 78)),
        ("0" * 30 + "9" * 78, int("9" * 78)),
        ("9" * 79, None),
        ("1" * 100, None),
        ("1e400", None),
        ("abc", None),
        ("-1", None),
        ("3.5", None),
        ("0x1f", None),
        ("", None),
        ("{}", None),
    ],
)
def test_legacy_parse_uint_accepts_only_uint256_like_integers(db: Conn, text: str, expected: int | None) -> None:
    # Given a legacy numeric string / When it is parsed / Then it is a numeric(78,0) or NULL, never an error
    row = db.execute("SELECT legacy_parse_uint(%s)", (text,)).fetchone()
    assert row is not None
    assert (None if row[0] is None else int(str(row[0]))) == expected


def cache_row(conn: Conn, wallet: str, contracts: object, updated_at: datetime) -> int:
    row = conn.execute(
        "INSERT INTO user_nft_cache (wallet_address, contracts, created_at, updated_at)"
        " VALUES (%s, %s::jsonb, %s, %s) RETURNING id",
        (wallet, json.dumps(contracts), updated_at, updated_at),
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def populate_legacy_database(conn: Conn) -> dict[str, object]:
    """A legacy database as the predecessor left it: mixed-case addresses, duplicate cache rows of one
    wallet, numbers as strings, ints, huge and garbage values. Returns the ids the tests refer to."""
    ids: dict[str, object] = {}
    for name, address, token_type in (("a", COLLECTION_A, "ERC721"), ("b", COLLECTION_B, "ERC1155")):
        row = conn.execute(
            "INSERT INTO collections (contract_address, name, token_type) VALUES (%s, %s, %s) RETURNING id",
            (address, f"Collection {name}", token_type),
        ).fetchone()
        assert row is not None
        ids[name] = row[0]
    checked = NOW - timedelta(days=3)
    conn.execute(
        "INSERT INTO nfts (collection_id, token_id, owner_address, last_owner_check_at) VALUES"
        " (%(a)s, 1, %(o1)s, %(checked)s), (%(a)s, 2, %(o2)s, NULL), (%(a)s, 3, 'not-an-address', NULL),"
        " (%(a)s, 4, NULL, NULL), (%(a)s, 5, %(o1_padded)s, NULL),"
        " (%(b)s, 10, %(o2_upper)s, %(checked)s)",
        {
            "a": ids["a"],
            "b": ids["b"],
            "o1": mixed_case(OWNER_1),
            "o2": OWNER_2,
            "o1_padded": f"  {OWNER_1.upper().replace('0X', '0x')} ",
            "o2_upper": OWNER_2.upper().replace("0X", "0x"),
            "checked": checked,
        },
    )
    # WALLET_1 has two rows: the older (mixed case) and the newer (lower case) disagree about X.
    ids["w1_old"] = cache_row(
        conn,
        mixed_case(WALLET_1),
        [
            {
                "address": mixed_case(COLLECTION_A),
                "totalBalance": "3",
                "numDistinctTokensOwned": "2",
                "name": "A",
                "symbol": "AAA",
                "tokenType": "ERC721",
                "isSpam": False,
            },
            {"address": mixed_case(UNINDEXED_X), "totalBalance": 5, "numDistinctTokensOwned": "  4 "},
        ],
        NOW - timedelta(days=2),
    )
    ids["w1_new"] = cache_row(
        conn,
        WALLET_1,
        [
            {"address": UNINDEXED_X, "totalBalance": "7", "numDistinctTokensOwned": "6", "isSpam": "true"},
            {"address": UNINDEXED_Y, "totalBalance": "1e400", "numDistinctTokensOwned": "abc"},
        ],
        NOW - timedelta(days=1),
    )
    # OWNER_1's cache also lists collection A, which the index already holds: the index row wins.
    ids["o1"] = cache_row(
        conn,
        OWNER_1.upper().replace("0X", "0x"),
        [
            {"address": COLLECTION_A, "totalBalance": "9", "numDistinctTokensOwned": "9"},
            {"address": UNINDEXED_Z, "totalBalance": "1" * 100, "numDistinctTokensOwned": -5},
            {"address": "nope"},
            "just a string",
        ],
        NOW,
    )
    ids["w3"] = cache_row(
        conn,
        WALLET_3,
        [{"address": UNINDEXED_X, "totalBalance": 1e300, "numDistinctTokensOwned": 3.5}],
        NOW,
    )
    ids["bad_wallet"] = cache_row(conn, "not-a-wallet", [{"address": UNINDEXED_X}], NOW)
    ids["not_array"] = cache_row(conn, WALLET_3, {"address": UNINDEXED_Y, "totalBalance": "1"}, NOW)
    return ids


def snapshot(conn: Conn) -> dict[str, list[tuple[object, ...]]]:
    tables = {
        "nft_ownership": "SELECT * FROM nft_ownership ORDER BY collection_id, token_id, owner_address",
        "user_collections": "SELECT * FROM user_collections ORDER BY owner_address, collection_id",
        "wallet_collection_mapping": (
            "SELECT * FROM wallet_collection_mapping ORDER BY wallet_address, contract_address"
        ),
        "legacy_migration_rejects": "SELECT * FROM legacy_migration_rejects ORDER BY id",
    }
    return {name: conn.execute(query.encode()).fetchall() for name, query in tables.items()}


def test_legacy_data_moves_to_the_normalized_tables_without_loss(conn: Conn) -> None:
    # Given a database at 0003 holding the predecessor's data
    migrate(conn, MIGRATIONS, target="0003")
    ids = populate_legacy_database(conn)

    # When 0004 runs
    report = migrate(conn, MIGRATIONS, target="0004")

    # Then it applied without aborting on the odd data
    assert report.applied == ("0004",)
    # And every valid legacy owner is in nft_ownership, lower-cased, once
    ownership = conn.execute(
        "SELECT c.contract_address, o.token_id, o.owner_address, o.balance, o.last_verified_at"
        " FROM nft_ownership o JOIN collections c ON c.id = o.collection_id ORDER BY 1, 2"
    ).fetchall()
    assert [(c, int(str(t)), o, int(str(b))) for c, t, o, b, _ in ownership] == [
        (COLLECTION_A, 1, OWNER_1, 1),
        (COLLECTION_A, 2, OWNER_2, 1),
        (COLLECTION_A, 5, OWNER_1, 1),
        (COLLECTION_B, 10, OWNER_2, 1),
    ]
    assert ownership[0][4] == NOW - timedelta(days=3)  # last_owner_check_at carried over
    # And the summaries were built by the triggers
    user_collections = conn.execute(
        "SELECT owner_address, collection_id, token_count, total_balance FROM user_collections"
        " ORDER BY owner_address, collection_id"
    ).fetchall()
    assert sorted((o, str(c), n, int(str(b))) for o, c, n, b in user_collections) == sorted(
        [(OWNER_1, str(ids["a"]), 2, 2), (OWNER_2, str(ids["a"]), 1, 1), (OWNER_2, str(ids["b"]), 1, 1)]
    )
    # And each (wallet, contract) of the cache is there once, with the newest figures, lower-cased
    mapping = {
        (wallet, contract): (source, collection_id, tokens, balance)
        for wallet, contract, source, collection_id, tokens, balance in conn.execute(
            "SELECT wallet_address, contract_address, source, collection_id,"
            " num_distinct_tokens::text, total_balance::text FROM wallet_collection_mapping"
        ).fetchall()
    }
    assert mapping == {
        (OWNER_1, COLLECTION_A): ("index", ids["a"], "2", "2"),  # the index wins over the cache's 9
        (OWNER_2, COLLECTION_A): ("index", ids["a"], "1", "1"),
        (OWNER_2, COLLECTION_B): ("index", ids["b"], "1", "1"),
        (WALLET_1, COLLECTION_A): ("scan", ids["a"], "2", "3"),  # only in the older row: kept
        (WALLET_1, UNINDEXED_X): ("scan", None, "6", "7"),  # newer row wins, counted once
        (WALLET_1, UNINDEXED_Y): ("scan", None, None, None),  # garbage figures kept as unknown
        (OWNER_1, UNINDEXED_Z): ("scan", None, None, None),
        (WALLET_3, UNINDEXED_X): ("scan", None, None, None),
    }
    scan = conn.execute(
        "SELECT scanned_at, name, symbol, token_type, is_spam FROM wallet_collection_mapping"
        " WHERE wallet_address = %s AND contract_address = %s",
        (WALLET_1, COLLECTION_A),
    ).fetchone()
    assert scan == (NOW - timedelta(days=2), "A", "AAA", "ERC721", False)
    spam = conn.execute(
        "SELECT is_spam FROM wallet_collection_mapping WHERE wallet_address = %s AND contract_address = %s",
        (WALLET_1, UNINDEXED_X),
    ).fetchone()
    assert spam == (True,)
    # And every datum that could not be represented is recorded, not dropped
    rejects = set(conn.execute("SELECT source, source_ref, reason FROM legacy_migration_rejects").fetchall())
    assert rejects == {
        ("nfts", f"{ids['a']}:3", "invalid owner address"),
        ("user_nft_cache", f"{ids['w1_new']}:2", "unparseable totalBalance"),
        ("user_nft_cache", f"{ids['w1_new']}:2", "unparseable numDistinctTokensOwned"),
        ("user_nft_cache", f"{ids['o1']}:2", "unparseable totalBalance"),
        ("user_nft_cache", f"{ids['o1']}:2", "unparseable numDistinctTokensOwned"),
        ("user_nft_cache", f"{ids['o1']}:3", "invalid contract address"),
        ("user_nft_cache", f"{ids['o1']}:4", "contract entry is not an object"),
        ("user_nft_cache", f"{ids['w3']}:1", "unparseable totalBalance"),
        ("user_nft_cache", f"{ids['w3']}:1", "unparseable numDistinctTokensOwned"),
        ("user_nft_cache", str(ids["bad_wallet"]), "invalid wallet address"),
        ("user_nft_cache", str(ids["not_array"]), "contracts is not a JSON array"),
    }
    # And the summaries agree with nft_ownership
    assert check_summaries(conn=conn).ok

    # When 0004's SQL runs again
    before = snapshot(conn)
    with conn.transaction():
        conn.execute(LEGACY_MIGRATION.sql.encode())
    # Then nothing changed
    assert snapshot(conn) == before

    # When 0005 runs
    assert migrate(conn, MIGRATIONS, target="0005").applied == ("0005",)
    # Then the verified legacy table is gone and the normalized data stays
    assert not table_exists(conn, "user_nft_cache")
    assert snapshot(conn) == before
    assert check_summaries(conn=conn).ok


def test_dropping_the_legacy_cache_is_refused_while_it_holds_unmigrated_pairs(conn: Conn) -> None:
    # Given a legacy database migrated through 0004
    migrate(conn, MIGRATIONS, target="0003")
    populate_legacy_database(conn)
    migrate(conn, MIGRATIONS, target="0004")
    # And a cache row written after the data migration (say by a predecessor process still running)
    cache_row(conn, mixed_case("0x" + "5b" * 20), [{"address": mixed_case("0x" + "6a" * 20)}], NOW)

    # When 0005 runs
    with pytest.raises(MigrationError, match=r"refusing to drop user_nft_cache: 1 wallet/contract pairs"):
        migrate(conn, MIGRATIONS, target="0005")

    # Then the legacy table is still there and 0005 is not recorded
    assert table_exists(conn, "user_nft_cache")
    assert "0005" not in applied_versions(conn)
    # And once 0004 is run again, 0005 goes through
    with conn.transaction():
        conn.execute(LEGACY_MIGRATION.sql.encode())
    assert migrate(conn, MIGRATIONS, target="0005").applied == ("0005",)
    assert not table_exists(conn, "user_nft_cache")
