"""The cache warmer through the local API and its scheduled invocation: traffic recorded by the read
functions picks the collections and first-page sizes; only entries expiring before the next run are
refreshed; a collection not indexed (or unknown) is skipped without any Alchemy call; bad bodies → 400."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import redis
import warm_cache

from local.alchemy_stub import ERC721_CONTRACT, AlchemyStub
from such_market.cache import entries
from such_market.container import close_all
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.seed import seed_indexed_collection
from tests.functions.conftest import FakeContext, Reply, load_event

BUSY = "0x" + "b1" * 20
QUIET = "0x" + "b2" * 20
ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"), ("content-type", "application/json"))
WARM = "/api/admin/cache/warm"
Call = Callable[..., Reply]


@pytest.fixture
def seeded(db: psycopg.Connection[Any]) -> None:
    for address in (BUSY, QUIET):
        seed_indexed_collection(db, address=address, tokens=200, holder=lambda _: "0x" + "11" * 20)


def warm(api: Call, body: object) -> Reply:
    return api("POST", WARM, ADMIN, json.dumps(body).encode())


def fresh_until(cache: redis.Redis, key: str) -> int | None:
    raw: bytes | None = cache.get(key)  # type: ignore[assignment]
    return None if raw is None else entries.decode(raw)[1]


def test_the_busiest_collections_are_warmed_at_the_requested_page_sizes(
    api: Call, cache: redis.Redis, seeded: None
) -> None:
    # Given traffic: BUSY's metadata 3 times and its first page at size 50 twice, a deeper page, QUIET's traits once
    for _ in range(3):
        assert api("GET", f"/api/collection/{BUSY.upper().replace('0X', '0x')}").status == 200
    for _ in range(2):
        assert api("GET", f"/api/collection/{BUSY}/nfts?pageSize=50").status == 200
    assert api("GET", f"/api/collection/{BUSY}/nfts?page=1&pageSize=10").status == 200
    assert api("GET", f"/api/collection/{QUIET}/traits").status == 200
    close_all()  # the read containers end: their traffic is flushed
    metadata = f"such-market:collections:{{{BUSY}}}:metadata"
    before = fresh_until(cache, metadata)
    # When the warmer runs for the top collection
    reply = warm(api, {"topN": 1})
    # Then it chose BUSY; the metadata (hot tier: expires before the next run) and the traits (not cached) were
    # filled, the first page at size 50 (fresh for the warm tier) was left alone, and no page 0 of size 10 exists
    assert reply.status == 200, reply.body
    assert [item["contractAddress"] for item in reply.body["collections"]] == [BUSY]
    assert (reply.body["warmed"], reply.body["skipped"], reply.body["failed"]) == (2, 1, 0)
    assert reply.body["tookMs"] >= 0
    assert reply.body["stoppedEarly"] is False
    assert before is not None
    assert fresh_until(cache, metadata) not in {None, before}
    assert cache.exists(f"such-market:collections:{{{BUSY}}}:traits")
    assert not cache.exists(f"such-market:collections:{{{BUSY}}}:nfts:page:0:size:10")
    # And a reader now hits what the warmer stored
    assert api("GET", f"/api/collection/{BUSY}/traits").cache == "HIT"


def test_a_collection_not_indexed_or_unknown_is_skipped_without_alchemy(
    api: Call, alchemy_stub: AlchemyStub, seeded: None
) -> None:
    # Given a collection seen once (stored, its ingestion queued: not indexed) and an address never seen
    assert api("GET", f"/api/collection/{ERC721_CONTRACT}").status == 200
    unknown = "0x" + "0f" * 20
    calls = alchemy_stub.request_count()
    # When the warmer is asked for both and an indexed one
    reply = warm(api, {"contractAddresses": [ERC721_CONTRACT, unknown, QUIET]})
    # Then the first two are skipped with their reason, QUIET is warmed, and Alchemy was not called
    assert reply.status == 200, reply.body
    reasons = {item["contractAddress"]: item["skippedReason"] for item in reply.body["collections"]}
    assert reasons == {ERC721_CONTRACT.lower(): "not_indexed", unknown: "unknown", QUIET: None}
    assert reply.body["warmed"] == 3  # QUIET: metadata, traits, first page at the default size
    assert alchemy_stub.request_count() == calls


def test_the_scheduled_run_warms_the_top_collections(
    lambda_env: dict[str, str], context: FakeContext, api: Call, seeded: None
) -> None:
    assert api("GET", f"/api/collection/{QUIET}/nfts").status == 200
    close_all()
    report = warm_cache.lambda_handler(load_event("warm_cache_scheduled"), context)
    assert [item["contractAddress"] for item in report["collections"]] == [QUIET]
    assert report["warmed"] == 2
    assert report["failed"] == 0


def test_the_scheduled_run_reaps_indexes_whose_keys_all_expired(
    lambda_env: dict[str, str], context: FakeContext, cache: redis.Redis
) -> None:
    # Given a wallet's index on the registry whose only key expired long ago (its horizon is past)
    from such_market.cache.keys import CacheKeys

    keys = CacheKeys("such-market")
    wallet_index = keys.owned_index(QUIET, "0x" + "77" * 20)
    cache.zadd(wallet_index, {keys.owned(QUIET, "0x" + "77" * 20, 0, 20): 1000})
    cache.zadd(keys.index_registry(), {wallet_index: 2000})
    # When the scheduled run goes
    report = warm_cache.lambda_handler(load_event("warm_cache_scheduled"), context)
    # Then the index is gone and forgotten, and the run says so
    assert report["reaped"] == {"indexesVisited": 1, "indexesForgotten": 1, "keysDeleted": 0, "finished": True}
    assert not cache.exists(wallet_index)
    assert cache.zscore(keys.index_registry(), wallet_index) is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "invalid_body"),
        (b"[]", "invalid_body"),
        (b'{"topN": 0}', "invalid_top_n"),
        (b'{"topN": 101}', "invalid_top_n"),
        (b'{"topN": true}', "invalid_top_n"),
        (b'{"topN": null}', "invalid_top_n"),
        (b'{"contractAddresses": null}', "invalid_body"),
        (b'{"contractAddresses": []}', "invalid_body"),
        (b'{"contractAddresses": ["0x123"]}', "invalid_address"),
        (b'{"contractAddresses": ["0x' + b"ab" * 20 + b'"], "topN": 3}', "invalid_body"),
        (b'{"extra": 1}', "invalid_body"),
    ],
)
def test_bad_bodies_are_400(api: Call, body: bytes, code: str) -> None:
    reply = api("POST", WARM, ADMIN, body)
    assert (reply.status, reply.body["code"]) == (400, code)
