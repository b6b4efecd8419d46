"""The collection endpoints through the template's routes, against real PostgreSQL, Valkey and the
Alchemy stub: success shapes, MISS then HIT, 404s, every bad input → 400, degradation."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from unittest.mock import ANY

import psycopg
import pytest
import redis

from local.alchemy_stub import (
    BROKEN_METADATA_ERRORS,
    ERC721_CONTRACT,
    NOT_A_CONTRACT,
    SPAM_CONTRACTS,
    AlchemyStub,
    broken_token_ids,
)
from local.services import free_port
from such_market.collections.service import METADATA_ERROR
from such_market.container import close_all
from tests.fixtures.seed import COLORS, seed_indexed_collection
from tests.functions.conftest import Reply

SEEDED = "0x" + "5e" * 20
HOLDER = "0x" + "11" * 20
OTHER_HOLDER = "0x" + "22" * 20
SIZES = ("S", "M", "L", "XL")
Api = Callable[..., Reply]


@pytest.fixture
def seeded(db: psycopg.Connection[Any]) -> None:
    """An indexed ERC-721 collection of 100 tokens (ids 0, 3, 6, …) with two trait types and owners."""
    seed_indexed_collection(
        db, address=SEEDED, tokens=100, holder=lambda index: HOLDER if index < 30 else OTHER_HOLDER, sizes=SIZES
    )


def test_metadata_miss_then_hit(api: Api, seeded: None) -> None:
    first = api("GET", f"/api/collection/{SEEDED.upper().replace('0X', '0x')}")
    second = api("GET", f"/api/collection/{SEEDED}")
    assert (first.status, first.cache) == (200, "MISS")
    assert (second.status, second.cache) == (200, "HIT")
    assert first.body == second.body
    assert first.body["contractAddress"] == SEEDED
    assert first.body["tokenType"] == "ERC721"
    assert first.body["indexing"] is False


def test_first_seen_collection_is_fetched_stored_and_queued(
    api: Api, db: psycopg.Connection[Any], alchemy_stub: AlchemyStub
) -> None:
    reply = api("GET", f"/api/collection/{ERC721_CONTRACT}")
    assert reply.status == 200
    assert reply.body["indexing"] is True
    state, queued = db.execute(
        "SELECT c.ingestion_state, (SELECT count(*) FROM cache_events_outbox o "
        " WHERE o.detail_type = 'collection.ingest_requested' AND o.detail->>'contractAddress' = %s) "
        "FROM collections c WHERE c.contract_address = %s",
        (ERC721_CONTRACT, ERC721_CONTRACT),
    ).fetchone()
    assert (state, queued) == ("queued", 1)
    assert alchemy_stub.request_count("getContractMetadata") == 1


@pytest.mark.parametrize(("address", "spam"), [(SPAM_CONTRACTS[0], True), (ERC721_CONTRACT, False)])
def test_collection_metadata_says_whether_alchemy_flags_it_as_spam(
    api: Api, db: psycopg.Connection[Any], cache: redis.Redis, address: str, spam: bool
) -> None:
    # When a collection is seen for the first time, its metadata carries Alchemy's spam flag
    reply = api("GET", f"/api/collection/{address}")
    assert (reply.status, reply.body["isSpam"]) == (200, spam)
    # And the flag is stored with the collection, so the answer from PostgreSQL says the same
    assert db.execute("SELECT is_spam FROM collections WHERE contract_address = %s", (address,)).fetchone() == (spam,)
    cache.flushdb()
    again = api("GET", f"/api/collection/{address}")
    assert (again.cache, again.body["isSpam"]) == ("MISS", spam)


def test_unknown_contract_is_404_and_cached_briefly(api: Api, alchemy_stub: AlchemyStub, cache: redis.Redis) -> None:
    first = api("GET", f"/api/collection/{NOT_A_CONTRACT}")
    second = api("GET", f"/api/collection/{NOT_A_CONTRACT}")
    assert (first.status, first.body["code"]) == (404, "not_found")
    assert (second.status, second.cache) == (404, "HIT")
    assert alchemy_stub.request_count("getContractMetadata") == 1
    ttl = cache.pttl(f"such-market:collections:{{{NOT_A_CONTRACT}}}:metadata")
    assert 0 < ttl <= 60_000


def test_unindexed_collection_page_comes_from_alchemy(api: Api, alchemy_stub: AlchemyStub) -> None:
    reply = api("GET", f"/api/collection/{ERC721_CONTRACT}/nfts?page=2&pageSize=5")
    assert reply.status == 200
    assert reply.body["indexing"] is True
    assert [nft["tokenId"] for nft in reply.body["nfts"]] == ["10", "11", "12", "13", "14"]
    assert reply.body["hasMore"] is True


def test_pages_are_in_numeric_token_order_with_cursor(api: Api, seeded: None) -> None:
    first = api("GET", f"/api/collection/{SEEDED}/nfts?pageSize=10")
    assert (first.status, first.cache) == (200, "MISS")
    assert [nft["tokenId"] for nft in first.body["nfts"]] == [str(i * 3) for i in range(10)]
    assert first.body["total"] == 100
    assert first.body["hasMore"] is True
    deep = api("GET", f"/api/collection/{SEEDED}/nfts?page=9&pageSize=10")
    assert [nft["tokenId"] for nft in deep.body["nfts"]] == [str(i * 3) for i in range(90, 100)]
    assert deep.body["hasMore"] is False
    after = api("GET", f"/api/collection/{SEEDED}/nfts?pageSize=10&cursor={first.body['nextCursor']}")
    assert [nft["tokenId"] for nft in after.body["nfts"]] == [str(i * 3) for i in range(10, 20)]
    again = api("GET", f"/api/collection/{SEEDED}/nfts?pageSize=10")
    assert again.cache == "HIT"


def test_trait_filters_and_across_types_or_within(api: Api, seeded: None) -> None:
    reply = api("GET", f"/api/collection/{SEEDED}/nfts?pageSize=100&trait.Color=Red&trait.Size=S&trait.Size=M")
    expected = [str(i * 3) for i in range(100) if COLORS[i % 3] == "Red" and SIZES[i % 4] in {"S", "M"}]
    assert [nft["tokenId"] for nft in reply.body["nfts"]] == expected
    assert reply.body["total"] == len(expected)


def test_traits(api: Api, seeded: None) -> None:
    reply = api("GET", f"/api/collection/{SEEDED}/traits")
    assert reply.status == 200
    assert reply.body["totalTokens"] == 100
    facets = {facet["traitType"]: {v["value"]: v["count"] for v in facet["values"]} for facet in reply.body["traits"]}
    assert facets == {"Color": {"Red": 34, "Green": 33, "Blue": 33}, "Size": {"S": 25, "M": 25, "L": 25, "XL": 25}}


def test_single_nft_and_unknown_token(api: Api, seeded: None) -> None:
    reply = api("GET", f"/api/collection/{SEEDED}/nfts/0x9")
    assert (reply.status, reply.body["tokenId"], reply.body["title"]) == (200, "9", "Seed #9")
    missing = api("GET", f"/api/collection/{SEEDED}/nfts/1")
    assert (missing.status, missing.body["code"]) == (404, "not_found")


def test_owner_from_the_index(api: Api, seeded: None, alchemy_stub: AlchemyStub) -> None:
    reply = api("GET", f"/api/collection/{SEEDED}/nfts/3/owner")
    assert reply.status == 200
    assert reply.body["owner"] == HOLDER
    assert reply.body["owners"] == [{"address": HOLDER, "balance": "1"}]
    assert reply.body["cached"] is True
    assert alchemy_stub.request_count() == 0


def test_owner_not_indexed_comes_from_alchemy_and_is_stored(
    api: Api, alchemy_stub: AlchemyStub, db: psycopg.Connection[Any]
) -> None:
    reply = api("GET", f"/api/collection/{ERC721_CONTRACT}/nfts/42/owner")
    assert reply.status == 200
    assert reply.body["cached"] is False
    stored = db.execute("SELECT owner_address FROM nft_ownership WHERE token_id = 42").fetchall()
    assert stored == [(reply.body["owner"],)]


def test_owned_tokens(api: Api, seeded: None) -> None:
    reply = api(
        "GET", f"/api/collection/{SEEDED}/nfts/owned?userAddress={HOLDER.upper().replace('0X', '0x')}&pageSize=20"
    )
    assert reply.status == 200
    assert reply.body["total"] == 30
    assert [nft["tokenId"] for nft in reply.body["nfts"]] == [str(i * 3) for i in range(20)]
    assert reply.body["hasMore"] is True


def test_refresh_queues_then_refuses_while_running(
    api: Api, seeded: None, db: psycopg.Connection[Any], cache: redis.Redis
) -> None:
    status = api("GET", f"/api/collection/{SEEDED}/refresh")
    assert status.body["canRefresh"] is True
    queued = api("POST", f"/api/collection/{SEEDED}/refresh")
    assert (queued.status, queued.body["status"]) == (202, "queued")
    assert queued.body["cooldownUntil"]
    again = api("POST", f"/api/collection/{SEEDED}/refresh")
    assert (again.status, again.body["code"]) == (429, "refresh_in_progress")
    assert int(again.headers["retry-after"]) > 0
    after = api("GET", f"/api/collection/{SEEDED}/refresh")
    assert (after.body["inProgress"], after.body["canRefresh"]) == (True, False)
    # When the ingestion finished, the cooldown still refuses
    db.execute("UPDATE collections SET ingestion_state = 'complete' WHERE contract_address = %s", (SEEDED,))
    cooled = api("POST", f"/api/collection/{SEEDED}/refresh")
    assert (cooled.status, cooled.body["code"]) == (429, "refresh_cooldown")
    # And a run that was killed long ago (state left "running") does not block refreshes forever
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")  # keep set_updated_at from stamping now()
        db.execute(
            "UPDATE collections SET ingestion_state = 'running', refresh_cooldown_until = now() - interval '1 s',"
            " updated_at = now() - interval '1 hour' WHERE contract_address = %s",
            (SEEDED,),
        )
    revived = api("POST", f"/api/collection/{SEEDED}/refresh")
    assert (revived.status, revived.body["status"]) == (202, "queued")
    # And the refresh lock was released on every path
    assert not cache.exists(f"such-market:durable:locks:refresh:{SEEDED}")


def test_the_first_refresh_of_a_never_seen_collection_is_queued(
    api: Api, db: psycopg.Connection[Any], alchemy_stub: AlchemyStub
) -> None:
    # Given a collection nobody asked for before
    # When its refresh is requested
    first = api("POST", f"/api/collection/{ERC721_CONTRACT}/refresh")
    # Then the ingestion it asked for is queued (once), with the body of any accepted refresh
    assert first.status == 202
    assert first.body == {"status": "queued", "contractAddress": ERC721_CONTRACT, "cooldownUntil": ANY}
    assert first.body["cooldownUntil"]
    requests = db.execute(
        "SELECT count(*) FROM cache_events_outbox WHERE detail_type = 'collection.ingest_requested'"
    ).fetchone()
    assert requests == (1,)
    # And while it is queued, another refresh is refused
    again = api("POST", f"/api/collection/{ERC721_CONTRACT}/refresh")
    assert (again.status, again.body["code"]) == (429, "refresh_in_progress")


def test_a_broken_token_says_so_without_the_upstream_text(api: Api, alchemy_stub: AlchemyStub) -> None:
    # Given a token whose metadata Alchemy could not read (its raw.error is the upstream's text)
    token_id = min(broken_token_ids(ERC721_CONTRACT), key=int)
    # When it is requested
    reply = api("GET", f"/api/collection/{ERC721_CONTRACT}/nfts/{token_id}")
    # Then the answer says the metadata could not be read, in our words
    assert reply.status == 200
    assert reply.body["metadataError"] == METADATA_ERROR
    assert not any(text in json.dumps(reply.body) for text in BROKEN_METADATA_ERRORS)


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("/api/collection/0x123", "invalid_address"),
        ("/api/collection/not-an-address/nfts", "invalid_address"),
        (f"/api/collection/{SEEDED}/nfts?page=-1", "invalid_page"),
        (f"/api/collection/{SEEDED}/nfts?page=abc", "invalid_page"),
        (f"/api/collection/{SEEDED}/nfts?pageSize=0", "invalid_page_size"),
        (f"/api/collection/{SEEDED}/nfts?pageSize=101", "invalid_page_size"),
        (f"/api/collection/{SEEDED}/nfts?cursor=%21%21", "invalid_cursor"),
        (f"/api/collection/{SEEDED}/nfts?trait.=x", "invalid_filter"),
        (f"/api/collection/{SEEDED}/nfts/12abc", "invalid_token_id"),
        (f"/api/collection/{SEEDED}/nfts/-1/owner", "invalid_token_id"),
        (f"/api/collection/{SEEDED}/nfts/owned", "invalid_address"),
        (f"/api/collection/{SEEDED}/nfts/owned?userAddress=0xzz", "invalid_address"),
        (f"/api/collection/{SEEDED}/nfts/owned?userAddress={HOLDER}&pageSize=500", "invalid_page_size"),
        ("/api/collection/0x1/traits", "invalid_address"),
        ("/api/collection/0x1/refresh", "invalid_address"),
    ],
)
def test_bad_input_is_400_with_the_error_shape(api: Api, target: str, code: str) -> None:
    reply = api("GET", target)
    assert reply.status == 400
    assert set(reply.body) == {"error", "code"}
    assert reply.body["code"] == code


def test_cache_down_is_served_from_postgres_as_bypass(api: Api, seeded: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    close_all()
    reply = api("GET", f"/api/collection/{SEEDED}/nfts?pageSize=5")
    assert (reply.status, reply.cache) == (200, "BYPASS")
    assert len(reply.body["nfts"]) == 5


def test_database_down_serves_kept_values_and_503_otherwise(
    api: Api, seeded: None, monkeypatch: pytest.MonkeyPatch, cache: redis.Redis
) -> None:
    # Given a cached page whose fresh time has passed, and a database that is down
    assert api("GET", f"/api/collection/{SEEDED}").status == 200
    key = f"such-market:collections:{{{SEEDED}}}:metadata"
    raw = cache.get(key)
    cache.set(key, raw[:3] + b"0" * 13 + raw[16:], px=60_000)  # fresh-until in the past, still kept
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/gone")
    close_all()
    # When they are requested, Then the kept value is served STALE, and what was never cached is a 503
    stale = api("GET", f"/api/collection/{SEEDED}")
    assert (stale.status, stale.cache) == (200, "STALE")
    missing = api("GET", f"/api/collection/{SEEDED}/traits")
    assert (missing.status, missing.body["code"]) == (503, "service_unavailable")
    assert int(missing.headers["retry-after"]) > 0


def test_upstream_failure_is_a_503_and_nothing_is_cached(
    api: Api, alchemy_stub: AlchemyStub, cache: redis.Redis, db: psycopg.Connection[Any]
) -> None:
    # Given an Alchemy that answers 5xx to everything
    alchemy_stub.server_error_every = 1
    # When a collection seen for the first time is requested
    failed = api("GET", f"/api/collection/{ERC721_CONTRACT}")
    # Then the answer is a 503 with Retry-After after bounded retries, and nothing was stored or cached
    assert (failed.status, failed.body["code"]) == (503, "service_unavailable")
    assert int(failed.headers["retry-after"]) > 0
    assert 1 < alchemy_stub.request_count("getContractMetadata") <= 3  # ALCHEMY_MAX_ATTEMPTS in lambda_env
    assert not cache.exists(f"such-market:collections:{{{ERC721_CONTRACT}}}:metadata")
    assert db.execute("SELECT count(*) FROM collections").fetchone() == (0,)
    # And once Alchemy recovers, the next request is a normal miss
    alchemy_stub.server_error_every = 0
    recovered = api("GET", f"/api/collection/{ERC721_CONTRACT}")
    assert (recovered.status, recovered.cache) == (200, "MISS")
