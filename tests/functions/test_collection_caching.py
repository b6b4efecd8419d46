"""Issue 9, items 6, 10, 11 and 14 through the local API (real PostgreSQL, Valkey and the Alchemy stub):
incomplete answers say so and are cached briefly; only pages many clients share are cached; first-seen
discovery is throttled per source IP and overall; the Valkey we run has a memory bound and an eviction
policy."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import redis

from local.alchemy_stub import ERC721_CONTRACT, AlchemyStub, broken_token_ids
from local.services import VALKEY_MAXMEMORY_POLICY, Services, free_port
from such_market.container import close_all
from such_market.validation import encode_cursor
from tests.fixtures.seed import seed_indexed_collection
from tests.functions.conftest import Reply

SEEDED = "0x" + "5e" * 20
BRIEF_MAX_MS = 70_000  # Tier.BRIEF: 30 s ±10 %, kept twice as long for STALE
WARM_MIN_MS = 1_600_000  # Tier.WARM: 1800 s -10 %

Call = Callable[..., Reply]


@pytest.fixture
def call(lambda_env: dict[str, str]) -> Call:
    """Call the local API (routes from template.yaml) from a given source IP."""
    from local.api import IncomingRequest, LocalApi
    from local.invoker import Invoker
    from local.template import Template

    template = Template.load()
    local = LocalApi(template, Invoker(template), quiet=True)

    def call(method: str, target: str, *, source_ip: str = "203.0.113.7") -> Reply:
        request = IncomingRequest(method=method, target=target, headers=[], body=b"", source_ip=source_ip)
        response = local.handle(request)
        decoded = {name.lower(): value for name, value in response.headers}
        return Reply(response.status, decoded, json.loads(response.body) if response.body else None)

    return call


def page_key(address: str, page: int, size: int) -> str:
    return f"such-market:collections:{{{address}}}:nfts:page:{page}:size:{size}"


# -- item 6: nothing partial served as truth --------------------------------------------------------------
def test_a_collection_never_indexed_completely_is_labelled_and_cached_briefly(
    call: Call, db: psycopg.Connection[Any], cache: redis.Redis, alchemy_stub: AlchemyStub
) -> None:
    # Given the stub's collection seen for the first time (its ingestion queued, not run)
    first = call("GET", f"/api/collection/{ERC721_CONTRACT}")
    assert (first.status, first.body["indexing"]) == (200, True)
    assert 0 < cache.pttl(f"such-market:collections:{{{ERC721_CONTRACT}}}:metadata") <= BRIEF_MAX_MS
    # And a reader that fetched the page after token 149 (stored, out of order)
    cursor = call("GET", f"/api/collection/{ERC721_CONTRACT}/nfts?cursor={encode_cursor(149)}")
    assert [nft["tokenId"] for nft in cursor.body["nfts"]][:2] == ["150", "151"]
    # And a first ingestion that failed (the tables hold a partial index)
    db.execute("UPDATE collections SET ingestion_state = 'failed' WHERE contract_address = %s", (ERC721_CONTRACT,))
    cache.flushdb()

    # When page 0, the traits and the metadata are read
    page = call("GET", f"/api/collection/{ERC721_CONTRACT}/nfts?page=0")
    traits = call("GET", f"/api/collection/{ERC721_CONTRACT}/traits")
    metadata = call("GET", f"/api/collection/{ERC721_CONTRACT}")

    # Then the page is the collection's first (from Alchemy), with its true total, labelled indexing
    assert [nft["tokenId"] for nft in page.body["nfts"]] == [str(token) for token in range(20)]
    assert (page.body["total"], page.body["indexing"]) == (10_000, True)
    assert (traits.body["indexing"], metadata.body["indexing"]) == (True, True)
    # And every one of them is cached only briefly
    for key in (
        page_key(ERC721_CONTRACT, 0, 20),
        f"such-market:collections:{{{ERC721_CONTRACT}}}:traits",
        f"such-market:collections:{{{ERC721_CONTRACT}}}:metadata",
    ):
        assert 0 < cache.pttl(key) <= BRIEF_MAX_MS, key


# -- item 14: raw.error answers are cached briefly -----------------------------------------------------
def test_a_token_whose_metadata_failed_upstream_is_cached_briefly(
    call: Call, db: psycopg.Connection[Any], cache: redis.Redis, alchemy_stub: AlchemyStub
) -> None:
    # Given the stub's collection, indexed, with a broken token and a good one
    call("GET", f"/api/collection/{ERC721_CONTRACT}")
    db.execute(
        "UPDATE collections SET ingestion_state = 'complete', ingestion_completed_at = now() "
        "WHERE contract_address = %s",
        (ERC721_CONTRACT,),
    )
    broken = min(int(token) for token in broken_token_ids(ERC721_CONTRACT))
    good = broken + 1

    # When both are read
    bad = call("GET", f"/api/collection/{ERC721_CONTRACT}/nfts/{broken}")
    fine = call("GET", f"/api/collection/{ERC721_CONTRACT}/nfts/{good}")

    # Then the broken one is cached briefly, the good one for the warm tier
    assert bad.body["metadataError"] is not None
    assert fine.body["metadataError"] is None
    assert 0 < cache.pttl(f"such-market:collections:{{{ERC721_CONTRACT}}}:nft:{broken}") <= BRIEF_MAX_MS
    assert cache.pttl(f"such-market:collections:{{{ERC721_CONTRACT}}}:nft:{good}") >= WARM_MIN_MS


# -- item 10: only shared pages are cached -------------------------------------------------------------
@pytest.fixture
def seeded(db: psycopg.Connection[Any]) -> None:
    seed_indexed_collection(db, address=SEEDED, tokens=3000, holder=lambda _: "0x" + "11" * 20)


def cached_page_keys(cache: redis.Redis) -> list[bytes]:
    return [
        key for key in cache.scan_iter(match=f"such-market:collections:{{{SEEDED}}}:nfts:*") if b":lease" not in key
    ]


def test_distinct_cursors_do_not_fill_the_cache(call: Call, seeded: None, cache: redis.Redis) -> None:
    # When 200 distinct valid cursors are read at pageSize=100 (each twice)
    for index in range(200):
        target = f"/api/collection/{SEEDED}/nfts?pageSize=100&cursor={encode_cursor(index * 3 + 1)}"
        replies = [call("GET", target) for _ in range(2)]
        assert [reply.status for reply in replies] == [200, 200]
        assert [reply.cache for reply in replies] == ["BYPASS", "BYPASS"]  # never cached
    # Then none of them is stored
    assert cached_page_keys(cache) == []
    assert cache.info("memory")["used_memory"] < 5_000_000

    # When a page hands out its cursor, the page after it (a page boundary) is shared and cached
    page0 = call("GET", f"/api/collection/{SEEDED}/nfts?pageSize=20")
    cursor = page0.body["nextCursor"]
    assert [call("GET", f"/api/collection/{SEEDED}/nfts?pageSize=20&cursor={cursor}").cache for _ in range(2)] == [
        "MISS",
        "HIT",
    ]
    # And page numbers: shared ones cached, deep ones and odd sizes served without the cache (BYPASS)
    assert [call("GET", f"/api/collection/{SEEDED}/nfts?page=3").cache for _ in range(2)] == ["MISS", "HIT"]
    assert [call("GET", f"/api/collection/{SEEDED}/nfts?page=60").cache for _ in range(2)] == ["BYPASS", "BYPASS"]
    assert [call("GET", f"/api/collection/{SEEDED}/nfts?pageSize=7").cache for _ in range(2)] == ["BYPASS", "BYPASS"]
    # And filters: one value of one type on page 0 is a facet click (cached); combinations are served
    one = f"/api/collection/{SEEDED}/nfts?trait.Color=red"
    two = f"/api/collection/{SEEDED}/nfts?trait.Color=red&trait.Color=blue"
    assert [call("GET", one).cache for _ in range(2)] == ["MISS", "HIT"]
    assert [call("GET", two).cache for _ in range(2)] == ["BYPASS", "BYPASS"]


def test_the_local_valkey_has_a_memory_bound_and_evicts_only_keys_with_a_ttl(
    services: Services, cache: redis.Redis
) -> None:
    if os.environ.get("REDIS_URL"):
        pytest.skip("an external Valkey: its configuration is its owner's")
    assert cache.config_get("maxmemory-policy")["maxmemory-policy"] == VALKEY_MAXMEMORY_POLICY == "volatile-lru"
    assert int(cache.config_get("maxmemory")["maxmemory"]) > 0


# -- item 11: discovery is throttled --------------------------------------------------------------------
def random_address(index: int) -> str:
    return f"0x{0xDEAD0000 + index:040x}"


def test_first_seen_discovery_is_throttled_per_source_ip_and_overall(
    call: Call, seeded: None, alchemy_stub: AlchemyStub
) -> None:
    # When one source asks for 40 addresses nobody asked for before
    replies = [call("GET", f"/api/collection/{random_address(index)}") for index in range(40)]

    # Then only its burst reached Alchemy; the rest were refused with 429 and Retry-After
    assert alchemy_stub.request_count("getContractMetadata") == 10
    assert [reply.status for reply in replies[:10]] == [404] * 10
    refused = replies[10:]
    assert {reply.status for reply in refused} == {429}
    assert {reply.body["code"] for reply in refused} == {"discovery_rate_limited"}
    assert all(int(reply.headers["retry-after"]) >= 1 for reply in refused)
    # And the negative cache still answers the addresses it knows, without a token
    assert call("GET", f"/api/collection/{random_address(0)}").status == 404
    # And known collections are not throttled at all
    assert call("GET", f"/api/collection/{SEEDED}").status == 200
    # And another source has its own bucket
    assert call("GET", f"/api/collection/{random_address(100)}", source_ip="198.51.100.1").status == 404
    assert alchemy_stub.request_count("getContractMetadata") == 11


def test_discovery_stays_bounded_while_the_cache_is_down(
    call: Call, alchemy_stub: AlchemyStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cache that is down
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    close_all()
    # When one source asks for 15 new addresses
    statuses = [call("GET", f"/api/collection/{random_address(index)}").status for index in range(15)]
    # Then the container's own buckets bound it the same way
    assert statuses == [404] * 10 + [429] * 5
    assert alchemy_stub.request_count("getContractMetadata") == 10


# -- issue 15, item 1: what any caller can vary at will is kept only briefly ------------------------------
def test_answers_a_caller_can_vary_at_will_are_kept_briefly_and_real_ones_for_their_tier(
    call: Call, db: psycopg.Connection[Any], cache: redis.Redis
) -> None:
    # Given an indexed collection whose tokens are all held by one wallet
    holder = "0x" + "11" * 20
    seed_indexed_collection(db, address=SEEDED, tokens=30, holder=lambda _: holder)
    stranger = "0x" + "77" * 20
    # When a random wallet's tokens, a page past the end and a filter matching nothing are read
    owned = call("GET", f"/api/collection/{SEEDED}/nfts/owned?userAddress={stranger}")
    past_end = call("GET", f"/api/collection/{SEEDED}/nfts?page=3")
    no_match = call("GET", f"/api/collection/{SEEDED}/nfts?trait.Color=Nothing")
    assert (owned.body["nfts"], past_end.body["nfts"], no_match.body["nfts"]) == ([], [], [])
    # Then each is kept no longer than a not-found
    owned_key = f"such-market:collections:{{{SEEDED}}}:owned:{{{stranger}}}:page:0:size:20"
    assert 0 < cache.pttl(owned_key) <= BRIEF_MAX_MS
    assert 0 < cache.pttl(page_key(SEEDED, 3, 20)) <= BRIEF_MAX_MS
    filtered = list(cache.scan_iter(match=f"such-market:collections:{{{SEEDED}}}:nfts:page:0:*:f:*"))
    assert filtered
    assert all(0 < cache.pttl(key) <= BRIEF_MAX_MS for key in filtered if not key.endswith(b":lease"))
    # And the holder's tokens and a real page keep their tiers (hot: 300 s, warm: 1800 s, kept twice as long)
    call("GET", f"/api/collection/{SEEDED}/nfts/owned?userAddress={holder}")
    call("GET", f"/api/collection/{SEEDED}/nfts?page=0")
    assert cache.pttl(f"such-market:collections:{{{SEEDED}}}:owned:{{{holder}}}:page:0:size:20") > BRIEF_MAX_MS
    assert cache.pttl(page_key(SEEDED, 0, 20)) >= WARM_MIN_MS
