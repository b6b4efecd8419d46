"""Rarity through the handlers: ingestion of the stub's collection stores the reference method's ranks for
the attributes Alchemy returned; GET …/nfts?sort=rarity|-rarity pages rarest or most common first (page
numbers, cursors, filters), cached under their own keys that collection invalidations clear; every NFT
object carries ``rarity``; any other sort is a 400 with the error shape."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ingest_collection
import psycopg
import pytest
import redis

from local.alchemy_stub import ERC721_CONTRACT, ERC721_TOKEN_COUNT, AlchemyStub, token_attributes
from such_market.cache.keys import CacheKeys
from tests.conftest import MotoBus
from tests.fixtures.open_rarity_reference import openrarity_metadata, reference_ranks
from tests.fixtures.seed import seed_indexed_collection
from tests.functions.conftest import Reply, load_event
from tests.functions.test_ingest_collection import IngestionContext

SEEDED = "0x" + "5e" * 20
HOLDER = "0x" + "11" * 20
Api = Callable[..., Reply]


@pytest.fixture
def seeded(db: psycopg.Connection[Any]) -> None:
    """100 tokens (ids 0, 3, 6, …), Color by index % 3, Size by index % 5 (S M L XL XXL)."""
    seed_indexed_collection(db, address=SEEDED, tokens=100, holder=lambda _: HOLDER, sizes=("S", "M", "L", "XL", "XXL"))


def stored_ranks(conn: psycopg.Connection[Any], address: str) -> dict[int, tuple[int, float]]:
    rows = conn.execute(
        "SELECT n.token_id, n.rarity_rank, n.rarity_score FROM nfts AS n"
        " JOIN collections AS c ON c.id = n.collection_id WHERE c.contract_address = %s",
        (address,),
    ).fetchall()
    return {int(token_id): (rank, score) for token_id, rank, score in rows}


def test_ingestion_stores_the_reference_ranks_of_what_alchemy_returned(
    lambda_env: dict[str, str], moto_bus: MotoBus, alchemy_stub: AlchemyStub
) -> None:
    event = load_event("event_collection_ingest_requested")
    event["detail"]["contractAddress"] = ERC721_CONTRACT
    result = ingest_collection.lambda_handler(event, IngestionContext())
    assert isinstance(result, dict)
    assert result["state"] == "complete"
    with psycopg.connect(lambda_env["DATABASE_URL"], autocommit=True) as conn:
        ranks = stored_ranks(conn, ERC721_CONTRACT)
    assert len(ranks) == ERC721_TOKEN_COUNT
    expected = reference_ranks(openrarity_metadata({t: token_attributes(ERC721_CONTRACT, t) for t in ranks}))
    for token_id, (rank, score) in expected.items():
        assert ranks[token_id][0] == rank, token_id
        assert math.isclose(ranks[token_id][1], score, rel_tol=1e-9)


def test_rarity_pages_rarest_and_most_common_first(api: Api, seeded: None, db: psycopg.Connection[Any]) -> None:
    ranks = stored_ranks(db, SEEDED)
    order = sorted(ranks, key=lambda token_id: (ranks[token_id][0], token_id))
    first = api("GET", f"/api/collection/{SEEDED}/nfts?sort=rarity&pageSize=10")
    assert (first.status, first.cache) == (200, "MISS")
    assert [int(nft["tokenId"]) for nft in first.body["nfts"]] == order[:10]
    assert first.body["nfts"][0]["rarity"] == {"rank": 1, "score": ranks[order[0]][1]}
    assert first.body["total"] == 100
    deep = api("GET", f"/api/collection/{SEEDED}/nfts?sort=rarity&page=9&pageSize=10")
    assert [int(nft["tokenId"]) for nft in deep.body["nfts"]] == order[90:]
    assert deep.body["hasMore"] is False
    after = api("GET", f"/api/collection/{SEEDED}/nfts?sort=rarity&pageSize=10&cursor={first.body['nextCursor']}")
    assert [int(nft["tokenId"]) for nft in after.body["nfts"]] == order[10:20]
    common = api("GET", f"/api/collection/{SEEDED}/nfts?sort=-rarity&pageSize=10")
    assert [int(nft["tokenId"]) for nft in common.body["nfts"]] == order[::-1][:10]
    assert common.body["nfts"][0]["rarity"]["rank"] == max(rank for rank, _ in ranks.values())
    # The token-order page of the same size is another key, and still in token order.
    by_token = api("GET", f"/api/collection/{SEEDED}/nfts?pageSize=10")
    assert (by_token.cache, [nft["tokenId"] for nft in by_token.body["nfts"]]) == (
        "MISS",
        [str(i * 3) for i in range(10)],
    )
    assert api("GET", f"/api/collection/{SEEDED}/nfts?sort=rarity&pageSize=10").cache == "HIT"


def test_filtered_rarity_page(api: Api, seeded: None, db: psycopg.Connection[Any]) -> None:
    ranks = stored_ranks(db, SEEDED)
    reds = [i * 3 for i in range(100) if i % 3 == 0]
    expected = sorted(reds, key=lambda token_id: (ranks[token_id][0], token_id))
    reply = api("GET", f"/api/collection/{SEEDED}/nfts?sort=rarity&pageSize=100&trait.Color=Red")
    assert [int(nft["tokenId"]) for nft in reply.body["nfts"]] == expected
    assert reply.body["total"] == len(reds)


def test_every_nft_object_carries_its_rarity(api: Api, seeded: None, db: psycopg.Connection[Any]) -> None:
    ranks = stored_ranks(db, SEEDED)
    page = api("GET", f"/api/collection/{SEEDED}/nfts?pageSize=5")
    assert [nft["rarity"] for nft in page.body["nfts"]] == [
        {"rank": ranks[i * 3][0], "score": ranks[i * 3][1]} for i in range(5)
    ]
    one = api("GET", f"/api/collection/{SEEDED}/nfts/9")
    assert one.body["rarity"] == {"rank": ranks[9][0], "score": ranks[9][1]}
    owned = api("GET", f"/api/collection/{SEEDED}/nfts/owned?userAddress={HOLDER}&pageSize=2")
    assert owned.body["nfts"][0]["rarity"] == {"rank": ranks[0][0], "score": ranks[0][1]}


def test_a_collection_invalidation_clears_the_rarity_pages(api: Api, seeded: None, cache: redis.Redis) -> None:
    from such_market.cache.staleness import invalidate_collection
    from such_market.runtime import ReadPathSettings, runtime_for

    target = f"/api/collection/{SEEDED}/nfts?sort=-rarity&pageSize=20"
    api("GET", target)
    key = CacheKeys("such-market").nft_page(SEEDED, 0, 20, None, "-rarity")
    assert key.endswith(":s:-rarity")
    assert cache.exists(key)
    invalidate_collection(runtime_for(ReadPathSettings).cache, SEEDED)  # what collection.updated runs
    assert not cache.exists(key)
    assert api("GET", target).cache == "MISS"


@pytest.mark.parametrize("sort", ["Rarity", "rank", "", "-tokenId", "rarity,tokenId"])
def test_any_other_sort_is_400_with_the_error_shape(api: Api, sort: str) -> None:
    reply = api("GET", f"/api/collection/{SEEDED}/nfts?sort={sort}")
    assert reply.status == 400
    assert reply.body == {"error": "invalid sort: expected one of tokenId, rarity, -rarity", "code": "invalid_sort"}
