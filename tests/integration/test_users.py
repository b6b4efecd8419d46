"""The user endpoints through their handlers, against real PostgreSQL and Valkey and both upstream stubs:
profile cache → fc_users → Neynar, verifications, nft-contracts scans stored in wallet_collection_mapping
and recorded in wallet_scans, the normalized answer from the tables (rescanning only wallets without a
fresh scan record, empty and truncated scans included), index rows never overwritten, partial failures,
degradation."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis
import user_nft_contracts
import user_nft_contracts_normalized
import user_profile
import user_verifications

from local.alchemy_stub import COLLECTIONS, ERC721_CONTRACT, SPAM_CONTRACTS, AlchemyStub, spam_airdrops, wallet_holdings
from local.neynar_stub import (
    SECOND_WALLET_EVERY,
    WALLETLESS_FID,
    NeynarStub,
    custody_address,
    stub_user,
    user_wallets,
)
from such_market.cache.keys import CacheKeys
from such_market.cache.store import get_cache
from such_market.config import load_settings
from such_market.events.invalidation import invalidate_for
from such_market.events.models import OwnershipChanged
from such_market.users.service import UsersSettings
from such_market.users.wallets import fids_owning
from tests.conftest import MotoBus
from tests.functions.conftest import FakeContext, load_event

KEYS = CacheKeys("such-market")
CONTEXT: Any = FakeContext()
SCANS = "getContractsForOwner"
BULK = "user/bulk"
TWO_WALLET_FID = SECOND_WALLET_EVERY  # fid 5 verifies two wallets
HANDLERS = {
    "user_profile": (user_profile, "/api/profile/{fid}"),
    "user_verifications": (user_verifications, "/api/verifications/{fid}"),
    "user_nft_contracts": (user_nft_contracts, "/api/nft-contracts/{fid}"),
    "user_nft_contracts_normalized": (user_nft_contracts_normalized, "/api/nft-contracts/{fid}/normalized"),
}


@dataclass
class Reply:
    status: int
    cache: str | None
    body: Any
    headers: dict[str, str]


Call = Callable[..., Reply]


@pytest.fixture
def users_env(lambda_env: dict[str, str]) -> dict[str, str]:
    """A cold container pointed at this test's database, cache and both upstream stubs."""
    return lambda_env


@pytest.fixture
def call(users_env: dict[str, str]) -> Call:
    """Invoke a user handler with an HTTP API v2 event built from its events/ sample."""

    def invoke(name: str, fid: object, query: dict[str, str] | None = None) -> Reply:
        module, route = HANDLERS[name]
        event = load_event(name)
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{key}={value}" for key, value in (query or {}).items())
        path = route.format(fid=fid)
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["pathParameters"] = {"fid": str(fid)}
        event["requestContext"]["requestId"] = str(uuid.uuid4())
        result = module.lambda_handler(event, CONTEXT)
        headers = {name.lower(): value for name, value in (result.get("headers") or {}).items()}
        return Reply(result["statusCode"], headers.get("x-cache"), json.loads(result["body"]), headers)

    return invoke


def stored_mapping(db: psycopg.Connection[Any], wallet: str) -> dict[str, tuple[Any, ...]]:
    rows = db.execute(
        "SELECT contract_address, source, num_distinct_tokens::text, total_balance::text, scanned_at IS NOT NULL "
        "FROM wallet_collection_mapping WHERE wallet_address = %s",
        (wallet,),
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def scan_record(db: psycopg.Connection[Any], wallet: str) -> tuple[Any, ...] | None:
    """(complete, contracts_found, scanned_at) of the wallet's ``wallet_scans`` row."""
    return db.execute(
        "SELECT complete, contracts_found, scanned_at FROM wallet_scans WHERE wallet_address = %s", (wallet,)
    ).fetchone()


ScanAnswer = Callable[[dict[str, list[str]]], tuple[int, bytes, dict[str, str]]]


def answer_scans_with(
    alchemy_stub: AlchemyStub, monkeypatch: pytest.MonkeyPatch, rewrite: Callable[[dict[str, Any]], None]
) -> None:
    """Make the stub's getContractsForOwner answer its usual page rewritten in place by ``rewrite``."""
    answer: ScanAnswer = alchemy_stub._methods[SCANS]

    def scan(params: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        status, body, headers = answer({name: value for name, value in params.items() if name != "pageKey"})
        payload = json.loads(body)
        rewrite(payload)
        return status, json.dumps(payload).encode(), headers

    monkeypatch.setitem(alchemy_stub._methods, SCANS, scan)


def expected_figures(wallet: str) -> dict[str, tuple[str, str]]:
    """{contract: (distinct tokens, total balance)} of the Alchemy stub's ground truth."""
    return {
        contract: (str(len(tokens)), str(sum(tokens.values()))) for contract, tokens in wallet_holdings(wallet).items()
    }


# -- profile -------------------------------------------------------------------------------------------


def test_profile_miss_then_hit(call: Call, neynar_stub: NeynarStub, db: psycopg.Connection[Any]) -> None:
    # Given a user Neynar knows, asked for twice
    first = call("user_profile", 1)
    second = call("user_profile", 1)
    # Then the first answer is filled from Neynar, the second is a hit of the same bytes
    assert (first.status, first.cache) == (200, "MISS")
    assert (second.status, second.cache) == (200, "HIT")
    assert first.body == second.body
    expected = stub_user(1)
    assert expected is not None
    assert first.body["username"] == expected["username"]
    assert first.body["displayName"] == expected["display_name"]
    assert first.body["custodyAddress"] == custody_address(1)  # the stub answers it upper-cased
    assert first.body["verifiedAddresses"] == user_wallets(1)
    assert first.body["followerCount"] == expected["follower_count"]
    assert neynar_stub.request_count(BULK, fid=1) == 1
    # And the user is stored in fc_users
    assert db.execute("SELECT username, verified_eth_addresses FROM fc_users WHERE fid = 1").fetchone() == (
        expected["username"],
        user_wallets(1),
    )


def test_a_fresh_stored_profile_is_served_without_neynar(
    call: Call, neynar_stub: NeynarStub, cache: redis.Redis, db: psycopg.Connection[Any]
) -> None:
    call("user_profile", 2)
    cache.flushdb()
    again = call("user_profile", 2)
    assert (again.status, again.cache) == (200, "MISS")
    assert neynar_stub.request_count(BULK) == 1
    # An fc_users row older than the hot tier is fetched again
    db.execute("UPDATE fc_users SET fetched_at = now() - interval '1 hour' WHERE fid = 2")
    cache.flushdb()
    call("user_profile", 2)
    assert neynar_stub.request_count(BULK) == 2


def test_unknown_fid_is_404_and_cached_briefly(call: Call, neynar_stub: NeynarStub, cache: redis.Redis) -> None:
    first = call("user_profile", 999_999)
    second = call("user_profile", 999_999)
    assert (first.status, first.body["code"]) == (404, "not_found")
    assert (second.status, second.cache) == (404, "HIT")
    assert neynar_stub.request_count(BULK) == 1
    ttl_ms = cache.pttl(KEYS.user_profile(999_999))
    assert 0 < ttl_ms <= 60_000


@pytest.mark.parametrize("name", sorted(HANDLERS))
@pytest.mark.parametrize("fid", ["abc", "0", "-1", "1.5", "99999999999999999999", "0x10"])
def test_bad_fid_is_400_on_every_endpoint(call: Call, neynar_stub: NeynarStub, name: str, fid: str) -> None:
    reply = call(name, fid)
    assert (reply.status, reply.body["code"]) == (400, "invalid_fid")
    assert set(reply.body) == {"error", "code"}
    assert neynar_stub.request_count() == 0


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_unknown_user_is_404_on_every_endpoint(call: Call, alchemy_stub: AlchemyStub, name: str) -> None:
    reply = call(name, 424_242)
    assert (reply.status, reply.body["code"]) == (404, "not_found")
    assert alchemy_stub.request_count() == 0


def test_neynar_down_serves_the_stored_profile(
    call: Call, neynar_stub: NeynarStub, cache: redis.Redis, db: psycopg.Connection[Any]
) -> None:
    call("user_profile", 3)
    db.execute("UPDATE fc_users SET fetched_at = now() - interval '1 day' WHERE fid = 3")
    cache.flushdb()
    neynar_stub.server_error_every = 1
    reply = call("user_profile", 3)
    assert (reply.status, reply.body["fid"]) == (200, 3)


def test_neynar_down_without_a_stored_profile_is_503(call: Call, neynar_stub: NeynarStub) -> None:
    neynar_stub.rate_limit_every = 1
    reply = call("user_profile", 4)
    assert (reply.status, reply.body["code"]) == (503, "service_unavailable")
    assert "retry-after" in reply.headers
    assert neynar_stub.request_count(BULK) == 2  # NEYNAR_MAX_ATTEMPTS


def test_a_changed_profile_commits_user_updated(
    call: Call, moto_bus: MotoBus, cache: redis.Redis, db: psycopg.Connection[Any]
) -> None:
    call("user_profile", 6)
    old_wallet = "0x" + "66" * 20
    db.execute(
        "UPDATE fc_users SET username = 'old', verified_eth_addresses = ARRAY[%s], "
        "fetched_at = now() - interval '1 hour' WHERE fid = 6",
        (old_wallet,),
    )
    cache.flushdb()
    call("user_profile", 6)
    detail_type, detail = db.execute(
        "SELECT detail_type, detail FROM cache_events_outbox ORDER BY id DESC LIMIT 1"
    ).fetchone() or (None, None)
    assert detail_type == "user.updated"
    assert detail["fid"] == 6
    assert {old_wallet, *user_wallets(6), custody_address(6)} == set(detail["wallets"])


# -- verifications ---------------------------------------------------------------------------------------


def test_verifications(call: Call, neynar_stub: NeynarStub) -> None:
    reply = call("user_verifications", TWO_WALLET_FID)
    again = call("user_verifications", TWO_WALLET_FID)
    assert reply.status == 200
    assert reply.body == {
        "fid": TWO_WALLET_FID,
        "username": f"such{TWO_WALLET_FID}",
        "custodyAddress": custody_address(TWO_WALLET_FID),
        "verifiedAddresses": user_wallets(TWO_WALLET_FID),
    }
    assert len(reply.body["verifiedAddresses"]) == 2
    assert again.cache == "HIT"


# -- nft-contracts -----------------------------------------------------------------------------------------


def test_nft_contracts_shape_scan_rows_and_cache(
    call: Call, alchemy_stub: AlchemyStub, db: psycopg.Connection[Any], cache: redis.Redis
) -> None:
    wallets = user_wallets(TWO_WALLET_FID)
    # When the user's collections are asked for twice
    reply = call("user_nft_contracts", TWO_WALLET_FID)
    again = call("user_nft_contracts", TWO_WALLET_FID)
    # Then the answer has the SPEC shape, with each wallet's collections as Alchemy lists them
    assert reply.status == 200
    body = reply.body
    assert set(body) == {
        "user",
        "wallets",
        "totalWallets",
        "successfulWallets",
        "totalCollections",
        "spamHidden",
        "message",
    }
    assert body["user"]["fid"] == TWO_WALLET_FID
    assert [wallet["walletAddress"] for wallet in body["wallets"]] == wallets
    assert (body["totalWallets"], body["successfulWallets"]) == (2, 2)
    distinct: set[str] = set()
    for wallet in body["wallets"]:
        assert set(wallet) == {"walletAddress", "status", "contracts", "totalCollectionsFound", "spamHidden"}
        assert wallet["status"] == "success"
        figures = {
            contract["address"]: (contract["numDistinctTokensOwned"], contract["totalBalance"])
            for contract in wallet["contracts"]
        }
        assert figures == expected_figures(wallet["walletAddress"])
        assert wallet["totalCollectionsFound"] == len(figures) + wallet["spamHidden"]
        for contract in wallet["contracts"]:
            assert set(contract) == {
                "address",
                "name",
                "symbol",
                "tokenType",
                "totalBalance",
                "numDistinctTokensOwned",
                "isSpam",
            }
            collection = COLLECTIONS[contract["address"]]
            assert (contract["name"], contract["symbol"], contract["tokenType"]) == (
                collection.name,
                collection.symbol,
                collection.token_type,
            )
            assert contract["isSpam"] is False
        distinct |= set(figures)
    assert body["totalCollections"] == len(distinct)
    # And each scan is stored as scan rows, and recorded in wallet_scans in the same transaction
    for wallet in wallets:
        stored = stored_mapping(db, wallet)
        assert stored == {contract: ("scan", *figures, True) for contract, figures in expected_figures(wallet).items()}
        record = scan_record(db, wallet)
        assert record is not None
        assert record[:2] == (True, len(expected_figures(wallet)))
        row_stamps = db.execute(
            "SELECT DISTINCT scanned_at FROM wallet_collection_mapping WHERE wallet_address = %s", (wallet,)
        ).fetchall()
        assert row_stamps == [(record[2],)]  # one transaction: one now()
    # And the answer and each wallet's list are cached: the second call is a hit without Alchemy
    assert (again.cache, again.body) == ("HIT", body)
    assert alchemy_stub.request_count(SCANS) == 2
    assert cache.exists(KEYS.user_collections(TWO_WALLET_FID), *(KEYS.wallet_contracts(w) for w in wallets)) == 3


def test_a_user_without_wallets(call: Call, alchemy_stub: AlchemyStub) -> None:
    for name in ("user_nft_contracts", "user_nft_contracts_normalized"):
        reply = call(name, WALLETLESS_FID)
        assert reply.status == 200
        assert (reply.body["wallets"], reply.body["totalWallets"], reply.body["totalCollections"]) == ([], 0, 0)
        assert reply.body["message"]
    assert alchemy_stub.request_count() == 0


def test_a_rescan_deletes_scan_rows_no_longer_listed(
    call: Call, db: psycopg.Connection[Any], cache: redis.Redis
) -> None:
    wallet = user_wallets(1)[0]
    gone = "0x" + "9a" * 20
    db.execute(
        "INSERT INTO wallet_collection_mapping (wallet_address, contract_address, num_distinct_tokens, total_balance,"
        " source, scanned_at) VALUES (%s, %s, 1, 1, 'scan', now() - interval '3 days')",
        (wallet, gone),
    )
    call("user_nft_contracts", 1)
    assert gone not in stored_mapping(db, wallet)


def test_one_failing_wallet_does_not_fail_the_others_and_is_not_cached(
    call: Call, alchemy_stub: AlchemyStub, monkeypatch: pytest.MonkeyPatch, cache: redis.Redis
) -> None:
    # Given Alchemy fails the scan of the user's second wallet
    healthy, failing = user_wallets(TWO_WALLET_FID)
    answer = alchemy_stub._methods[SCANS]

    def scan(params: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        if params["owner"][0].lower() == failing:
            return 400, b'{"error":{"message":"owner is not valid"}}', {"Content-Type": "application/json"}
        return answer(params)

    monkeypatch.setitem(alchemy_stub._methods, SCANS, scan)
    # When the user's collections are asked for, plain and normalized
    for name in ("user_nft_contracts", "user_nft_contracts_normalized"):
        reply = call(name, TWO_WALLET_FID)
        # Then the failing wallet says error, the other is complete
        assert reply.status == 200
        statuses = {wallet["walletAddress"]: wallet["status"] for wallet in reply.body["wallets"]}
        assert statuses == {healthy: "success", failing: "error"}
        assert (reply.body["totalWallets"], reply.body["successfulWallets"]) == (2, 1)
        assert "failed" in reply.body["message"]
    # And the partial answers are not cached, the failed wallet's list neither
    assert not cache.exists(KEYS.user_collections(TWO_WALLET_FID))
    assert not cache.exists(KEYS.user_collections_normalized(TWO_WALLET_FID))
    assert not cache.exists(KEYS.wallet_contracts(failing))
    assert cache.exists(KEYS.wallet_contracts(healthy))
    # And once Alchemy answers again, so does the wallet
    monkeypatch.setitem(alchemy_stub._methods, SCANS, answer)
    reply = call("user_nft_contracts", TWO_WALLET_FID)
    assert [wallet["status"] for wallet in reply.body["wallets"]] == ["success", "success"]


# -- normalized --------------------------------------------------------------------------------------------


def test_normalized_is_answered_from_the_tables_after_a_scan(
    call: Call, alchemy_stub: AlchemyStub, cache: redis.Redis
) -> None:
    plain = call("user_nft_contracts", TWO_WALLET_FID)
    scans = alchemy_stub.request_count(SCANS)
    normalized = call("user_nft_contracts_normalized", TWO_WALLET_FID)
    assert (normalized.status, normalized.cache, normalized.body["system"]) == (200, "MISS", "normalized")
    assert alchemy_stub.request_count(SCANS) == scans  # nothing rescanned: the stored scans are fresh
    assert {key: value for key, value in normalized.body.items() if key != "system"} == {
        **plain.body,
        "wallets": [
            {**wallet, "contracts": sorted(wallet["contracts"], key=lambda c: (c["name"].lower(), c["address"]))}
            for wallet in plain.body["wallets"]
        ],
    }
    assert call("user_nft_contracts_normalized", TWO_WALLET_FID).cache == "HIT"


def test_normalized_scans_a_wallet_once_then_serves_the_tables(
    call: Call, alchemy_stub: AlchemyStub, cache: redis.Redis, db: psycopg.Connection[Any]
) -> None:
    wallet = user_wallets(7)[0]
    first = call("user_nft_contracts_normalized", 7)
    assert alchemy_stub.request_count(SCANS) == 1
    cache.flushdb()
    second = call("user_nft_contracts_normalized", 7)
    assert alchemy_stub.request_count(SCANS) == 1
    assert first.body == second.body
    # Freshness is the scan record's: old scan rows under a fresh record are not rescanned
    db.execute("UPDATE wallet_collection_mapping SET scanned_at = now() - interval '2 days'")
    cache.flushdb()
    call("user_nft_contracts_normalized", 7)
    assert alchemy_stub.request_count(SCANS) == 1
    # A scan record older than the cold tier is redone, and the record renewed
    db.execute("UPDATE wallet_scans SET scanned_at = now() - interval '2 days'")
    cache.flushdb()
    third = call("user_nft_contracts_normalized", 7)
    assert alchemy_stub.request_count(SCANS) == 2
    assert third.body == first.body
    record = scan_record(db, wallet)
    assert record is not None
    assert record[2] > datetime.now(UTC) - timedelta(minutes=5)


@pytest.mark.parametrize("found", ["nothing", "only-indexed-contracts"])
def test_a_scan_that_leaves_no_scan_row_is_remembered(
    call: Call,
    alchemy_stub: AlchemyStub,
    *,
    monkeypatch: pytest.MonkeyPatch,
    cache: redis.Redis,
    db: psycopg.Connection[Any],
    found: str,
) -> None:
    # Given Alchemy lists nothing for the wallet, or only the collection our index already holds for it
    wallet = user_wallets(8)[0]
    if found == "nothing":
        listed: set[str] = set()
    else:
        _index_one_token(db, wallet, 999_999)
        listed = {ERC721_CONTRACT}

    def keep_listed(payload: dict[str, Any]) -> None:
        payload["contracts"] = [contract for contract in payload["contracts"] if contract["address"].lower() in listed]
        payload["totalCount"] = len(payload["contracts"])

    answer_scans_with(alchemy_stub, monkeypatch, keep_listed)
    # When the normalized answer misses the cache
    first = call("user_nft_contracts_normalized", 8)
    # Then the wallet is scanned once, leaves no scan row, and the scan is recorded
    assert alchemy_stub.request_count(SCANS) == 1
    assert {source for source, *_ in stored_mapping(db, wallet).values()} <= {"index"}
    record = scan_record(db, wallet)
    assert record is not None
    assert record[:2] == (True, len(listed))
    (body,) = first.body["wallets"]
    assert (body["status"], [c["address"] for c in body["contracts"]], body["totalCollectionsFound"]) == (
        "success",
        sorted(listed),
        len(listed),
    )
    # And the next miss is answered from the tables without scanning it again
    cache.flushdb()
    second = call("user_nft_contracts_normalized", 8)
    assert (second.status, second.cache) == (200, "MISS")
    assert alchemy_stub.request_count(SCANS) == 1
    assert second.body == first.body
    # And once the record is older than the cold tier, the wallet is scanned again
    db.execute("UPDATE wallet_scans SET scanned_at = now() - interval '2 days'")
    cache.flushdb()
    call("user_nft_contracts_normalized", 8)
    assert alchemy_stub.request_count(SCANS) == 2


def test_a_truncated_scan_is_recorded_incomplete_and_served_as_truncated(
    call: Call,
    alchemy_stub: AlchemyStub,
    monkeypatch: pytest.MonkeyPatch,
    cache: redis.Redis,
    db: psycopg.Connection[Any],
) -> None:
    # Given Alchemy keeps answering the same page key, so the scan stops before the end of the listing
    wallet = user_wallets(9)[0]
    expected = {*expected_figures(wallet), *spam_airdrops(wallet)}  # the scan lists the spam it hides too
    assert spam_airdrops(wallet)

    def repeat_page_key(payload: dict[str, Any]) -> None:
        payload["pageKey"] = "same-key"

    answer_scans_with(alchemy_stub, monkeypatch, repeat_page_key)
    # When the normalized answer misses the cache
    first = call("user_nft_contracts_normalized", 9)
    # Then the scan stopped at the repeated key, its rows are stored and its record says incomplete
    assert alchemy_stub.request_count(SCANS) == 2
    assert set(stored_mapping(db, wallet)) == set(expected)
    record = scan_record(db, wallet)
    assert record is not None
    assert record[:2] == (False, len(expected))
    (body,) = first.body["wallets"]
    assert (body["status"], body["totalCollectionsFound"]) == ("truncated", len(expected))
    assert "more collections" in first.body["message"]
    # And the next miss serves the same truncated answer from the tables, without a rescan
    cache.flushdb()
    second = call("user_nft_contracts_normalized", 9)
    assert alchemy_stub.request_count(SCANS) == 2
    assert second.body == first.body


def _index_one_token(db: psycopg.Connection[Any], wallet: str, token_id: int) -> None:
    """Our own index says ``wallet`` holds one token of the ERC-721 stub collection (trigger-maintained row)."""
    collection_id = db.execute(
        "INSERT INTO collections (contract_address, name, symbol, token_type) VALUES (%s, 'Such Punks', 'SUCH',"
        " 'ERC721') ON CONFLICT (contract_address) DO UPDATE SET name = excluded.name RETURNING id",
        (ERC721_CONTRACT,),
    ).fetchone()
    assert collection_id is not None
    db.execute(
        "INSERT INTO nft_ownership (collection_id, token_id, owner_address, balance) VALUES (%s, %s, %s, 1)",
        (collection_id[0], token_id, wallet),
    )


def test_scans_never_overwrite_index_rows(call: Call, db: psycopg.Connection[Any]) -> None:
    # Given our index says wallet 1 holds exactly one token of the ERC-721 collection
    wallet = user_wallets(1)[0]
    _index_one_token(db, wallet, 999_999)
    alchemy_figures = expected_figures(wallet)[ERC721_CONTRACT]
    assert alchemy_figures != ("1", "1")
    before = db.execute(
        "SELECT num_distinct_tokens, total_balance, source, scanned_at, updated_at FROM wallet_collection_mapping"
        " WHERE wallet_address = %s AND contract_address = %s",
        (wallet, ERC721_CONTRACT),
    ).fetchone()
    # When the wallet is scanned (Alchemy reports other figures for that collection)
    plain = call("user_nft_contracts", 1)
    # Then the index row is untouched, the other collections are stored as scan rows
    after = db.execute(
        "SELECT num_distinct_tokens, total_balance, source, scanned_at, updated_at FROM wallet_collection_mapping"
        " WHERE wallet_address = %s AND contract_address = %s",
        (wallet, ERC721_CONTRACT),
    ).fetchone()
    assert after == before
    assert before is not None
    assert before[2] == "index"
    assert {source for contract, (source, *_) in stored_mapping(db, wallet).items() if contract != ERC721_CONTRACT} == {
        "scan"
    }
    # And the plain answer shows Alchemy's figures, the normalized one the index's
    held = {c["address"]: c for c in plain.body["wallets"][0]["contracts"]}
    assert (held[ERC721_CONTRACT]["numDistinctTokensOwned"], held[ERC721_CONTRACT]["totalBalance"]) == alchemy_figures
    normalized = call("user_nft_contracts_normalized", 1)
    indexed = {c["address"]: c for c in normalized.body["wallets"][0]["contracts"]}
    assert (indexed[ERC721_CONTRACT]["numDistinctTokensOwned"], indexed[ERC721_CONTRACT]["totalBalance"]) == ("1", "1")


def test_a_transfer_invalidates_the_plain_answer_and_the_index_shows_it_at_once(
    call: Call, db: psycopg.Connection[Any], cache: redis.Redis
) -> None:
    # Given both answers are cached for user 1
    wallet = user_wallets(1)[0]
    call("user_nft_contracts", 1)
    call("user_nft_contracts_normalized", 1)
    # When a transfer lands in the index and its event is consumed
    _index_one_token(db, wallet, 123_456)
    front = get_cache(load_settings(UsersSettings).cache)

    def owners(wallets: Any) -> list[int]:
        return fids_owning(conn=db, wallets=wallets)

    invalidate_for(
        OwnershipChanged(contract_address=ERC721_CONTRACT, token_ids=("123456",), wallets=(wallet,)), front, owners
    )
    # Then the user's plain answer and the wallet's list are gone
    assert not cache.exists(KEYS.user_collections(1), KEYS.wallet_contracts(wallet))
    # And the tables show the index figures at once
    cache.delete(KEYS.user_collections_normalized(1))
    normalized = call("user_nft_contracts_normalized", 1)
    indexed = {c["address"]: c for c in normalized.body["wallets"][0]["contracts"]}
    assert indexed[ERC721_CONTRACT]["numDistinctTokensOwned"] == "1"


def test_a_transfer_invalidates_the_normalized_answer(
    call: Call, db: psycopg.Connection[Any], cache: redis.Redis
) -> None:
    wallet = user_wallets(1)[0]
    call("user_nft_contracts_normalized", 1)
    front = get_cache(load_settings(UsersSettings).cache)
    invalidate_for(
        OwnershipChanged(contract_address=ERC721_CONTRACT, token_ids=("1",), wallets=(wallet,)),
        front,
        lambda wallets: fids_owning(conn=db, wallets=wallets),
    )
    assert not cache.exists(KEYS.user_collections_normalized(1))


# -- spam (issue 18) ----------------------------------------------------------------------------------------

SPAM_FID = 1  # verifies wallet_address(1), which holds stub tokens and received both spam airdrops


@pytest.mark.parametrize("name", ["user_nft_contracts", "user_nft_contracts_normalized"])
def test_spam_is_left_out_by_default_counted_and_listed_with_include_spam(
    name: str, call: Call, alchemy_stub: AlchemyStub, cache: redis.Redis, db: psycopg.Connection[Any]
) -> None:
    (wallet,) = user_wallets(SPAM_FID)
    airdrops = spam_airdrops(wallet)
    assert set(airdrops) == set(SPAM_CONTRACTS)
    spam_key = (KEYS.user_collections if name == "user_nft_contracts" else KEYS.user_collections_normalized)(
        SPAM_FID, include_spam=True
    )
    # When the user's collections are asked for without includeSpam
    plain = call(name, SPAM_FID)
    # Then the spam collections Alchemy flags are left out, and counted per wallet and overall
    (body,) = plain.body["wallets"]
    assert {contract["address"] for contract in body["contracts"]} == set(expected_figures(wallet))
    assert not any(contract["isSpam"] for contract in body["contracts"])
    assert (body["spamHidden"], plain.body["spamHidden"]) == (len(airdrops), len(airdrops))
    assert body["totalCollectionsFound"] == len(expected_figures(wallet)) + len(airdrops)
    assert plain.body["totalCollections"] == len(expected_figures(wallet))
    assert "2 spam collections hidden" in plain.body["message"]
    # And the scan stored them, flagged (the tables keep what Alchemy said; the answer filters)
    spam_rows = db.execute(
        "SELECT contract_address FROM wallet_collection_mapping WHERE wallet_address = %s AND is_spam", (wallet,)
    ).fetchall()
    assert {row[0] for row in spam_rows} == set(airdrops)

    # When they are asked for with includeSpam=true
    with_spam = call(name, SPAM_FID, {"includeSpam": "true"})
    # Then the spam collections are listed, flagged, with their figures, and nothing is counted hidden
    (body,) = with_spam.body["wallets"]
    listed = {contract["address"]: contract for contract in body["contracts"]}
    assert set(listed) == set(expected_figures(wallet)) | set(airdrops)
    for contract, tokens in airdrops.items():
        assert (listed[contract]["isSpam"], listed[contract]["numDistinctTokensOwned"]) == (True, "1")
        assert listed[contract]["totalBalance"] == str(tokens)
    assert (body["spamHidden"], with_spam.body["spamHidden"]) == (0, 0)
    assert with_spam.body["totalCollections"] == len(expected_figures(wallet)) + len(airdrops)
    # And each form is cached under its own key, from one wallet scan
    assert with_spam.cache == "MISS"
    assert call(name, SPAM_FID, {"includeSpam": "true"}).body == with_spam.body
    assert call(name, SPAM_FID).body == plain.body
    assert cache.exists(spam_key) == 1
    assert alchemy_stub.request_count(SCANS) == 1


def test_an_ownership_change_drops_both_forms_of_the_users_answers(
    call: Call, db: psycopg.Connection[Any], cache: redis.Redis
) -> None:
    (wallet,) = user_wallets(SPAM_FID)
    for name in ("user_nft_contracts", "user_nft_contracts_normalized"):
        call(name, SPAM_FID)
        call(name, SPAM_FID, {"includeSpam": "true"})
    assert cache.exists(*KEYS.user_collection_keys(SPAM_FID)) == 4
    invalidate_for(
        OwnershipChanged(contract_address=ERC721_CONTRACT, token_ids=("1",), wallets=(wallet,)),
        get_cache(load_settings(UsersSettings).cache),
        lambda wallets: fids_owning(conn=db, wallets=wallets),
    )
    assert cache.exists(*KEYS.user_collection_keys(SPAM_FID)) == 0


@pytest.mark.parametrize("value", ["yes", "1", ""])
@pytest.mark.parametrize("name", ["user_nft_contracts", "user_nft_contracts_normalized"])
def test_an_include_spam_that_is_not_a_boolean_is_a_400(name: str, value: str, call: Call) -> None:
    reply = call(name, SPAM_FID, {"includeSpam": value})
    assert reply.status == 400
    assert reply.body["code"] == "invalid_include_spam"


# -- sample events ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_sample_event_answers_below_500(name: str, users_env: dict[str, str], moto_bus: MotoBus) -> None:
    module, _ = HANDLERS[name]
    result = module.lambda_handler(load_event(name), CONTEXT)
    assert result["statusCode"] == 200, result
