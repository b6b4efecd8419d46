"""Issue 15, item 2 through the local API (real PostgreSQL, Valkey and the Alchemy stub): token and owner
misses pay the discovery throttle, cost one Alchemy listing each (no call per ERC-1155 holder), and a
token read on demand is answered but joins the collection's listing only through ingestion or a
transfer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import redis

from local.alchemy_stub import ERC721_CONTRACT, ERC1155_CONTRACT, ERC1155_TOKEN_COUNT, AlchemyStub, token_holders
from such_market.collections.ingestion import ingest_collection
from such_market.collections.writes import (
    CollectionMetadata,
    NftRecord,
    replace_collection_owners,
    set_ingestion_state,
    upsert_collection,
    upsert_nfts,
)
from such_market.config import EventSettings
from such_market.events.publisher import EventPublisher
from such_market.ownership.transfers import apply_transfers
from such_market.upstream.alchemy import AlchemyClient
from tests.conftest import MotoBus
from tests.fixtures.seed import seed_indexed_collection
from tests.functions.conftest import Reply
from tests.integration.ownership_helpers import ZERO, transfer

SEEDED_TOKENS = 50  # ids 0, 3, …, 147 of the stub's ERC-721 collection, which has ids 0…9,999
HOLDER = "0x" + "11" * 20
Call = Callable[..., Reply]
Conn = psycopg.Connection[Any]


@pytest.fixture
def call(lambda_env: dict[str, str]) -> Call:
    """Call the local API (routes from template.yaml) from a given source IP."""
    from local.api import IncomingRequest, LocalApi
    from local.invoker import Invoker
    from local.template import Template

    template = Template.load()
    local = LocalApi(template, Invoker(template), quiet=True)

    def call(target: str, *, source_ip: str = "203.0.113.7") -> Reply:
        request = IncomingRequest(method="GET", target=target, headers=[], body=b"", source_ip=source_ip)
        response = local.handle(request)
        decoded = {name.lower(): value for name, value in response.headers}
        return Reply(response.status, decoded, json.loads(response.body) if response.body else None)

    return call


@pytest.fixture
def publisher(moto_bus: MotoBus) -> EventPublisher:
    return EventPublisher(EventSettings(event_bus_name=moto_bus.name, eventbridge_endpoint_url=None))


@pytest.fixture
def seeded(db: Conn) -> None:
    """The stub's ERC-721 collection, indexed as if its ingestion had seen only 50 of its tokens."""
    seed_indexed_collection(db, address=ERC721_CONTRACT, tokens=SEEDED_TOKENS, holder=lambda _: HOLDER)


def seed_items(db: Conn, tokens: int) -> uuid.UUID:
    """The stub's ERC-1155 collection, indexed with its first ``tokens`` tokens and no owner stored yet."""
    row = upsert_collection(
        conn=db, metadata=CollectionMetadata(contract_address=ERC1155_CONTRACT, name="Items", token_type="ERC1155")
    )
    upsert_nfts(conn=db, collection_id=row.id, nfts=[NftRecord(token_id=i) for i in range(1, tokens + 1)])
    set_ingestion_state(conn=db, collection_id=row.id, state="complete")
    return row.id


@pytest.fixture
def items(db: Conn) -> uuid.UUID:
    """The stub's ERC-1155 collection with all its 50 tokens listed and no owner stored yet."""
    return seed_items(db, ERC1155_TOKEN_COUNT)


def source(index: int) -> str:
    return f"198.51.100.{index % 250 + 1}" if index < 250 else f"192.0.2.{index % 250 + 1}"


def listing(call: Call) -> tuple[int, list[str]]:
    """The collection's total and the token ids of its first page of 100 (served, not cached)."""
    page = call(f"/api/collection/{ERC721_CONTRACT}/nfts?pageSize=99")
    assert page.status == 200
    return page.body["total"], [nft["tokenId"] for nft in page.body["nfts"]]


def stored_tokens(db: Conn) -> tuple[int, int, int]:
    """(nfts rows, nft_traits rows, collection_traits token counts) of the ERC-721 collection."""
    row = db.execute(
        "SELECT (SELECT count(*) FROM nfts n WHERE n.collection_id = c.id),"
        " (SELECT count(*) FROM nft_traits t WHERE t.collection_id = c.id),"
        " (SELECT coalesce(sum(token_count), 0) FROM collection_traits t WHERE t.collection_id = c.id)"
        " FROM collections c WHERE c.contract_address = %s",
        (ERC721_CONTRACT,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


# -- token misses -----------------------------------------------------------------------------------------
def test_token_misses_pay_the_discovery_throttle(call: Call, seeded: None, alchemy_stub: AlchemyStub) -> None:
    # When one source asks for 40 token ids the listing does not hold
    replies = [call(f"/api/collection/{ERC721_CONTRACT}/nfts/{5000 + index}") for index in range(40)]

    # Then only its burst reached Alchemy; the rest were refused with 429 and Retry-After
    assert alchemy_stub.request_count("getNFTMetadata") == 10
    assert [reply.status for reply in replies[:10]] == [200] * 10
    refused = replies[10:]
    assert {(reply.status, reply.body["code"]) for reply in refused} == {(429, "discovery_rate_limited")}
    assert all(int(reply.headers["retry-after"]) >= 1 for reply in refused)
    # And listed tokens and answers already cached cost no token
    assert call(f"/api/collection/{ERC721_CONTRACT}/nfts/3").status == 200
    assert call(f"/api/collection/{ERC721_CONTRACT}/nfts/5000").cache == "HIT"
    # And the throttle is the one first-seen collections use
    assert call(f"/api/collection/0x{0xDEAD:040x}").body["code"] == "discovery_rate_limited"
    assert alchemy_stub.request_count() == 10


def test_a_token_read_on_demand_is_answered_but_does_not_join_the_listing(
    call: Call, seeded: None, db: Conn, alchemy_stub: AlchemyStub
) -> None:
    before = listing(call), stored_tokens(db)
    traits_before = call(f"/api/collection/{ERC721_CONTRACT}/traits").body

    # When 20 callers ask for 20 ids the ingestion never saw, and Alchemy knows them
    replies = [call(f"/api/collection/{ERC721_CONTRACT}/nfts/{1000 + i}", source_ip=source(i)) for i in range(20)]

    # Then each is answered with Alchemy's token
    assert [(reply.status, reply.body["tokenId"]) for reply in replies] == [(200, str(1000 + i)) for i in range(20)]
    assert all(reply.body["title"] for reply in replies)
    # And the listing, its total, its stored tokens and its facets are what the ingestion left
    assert (listing(call), stored_tokens(db)) == before
    assert before[0][0] == SEEDED_TOKENS
    assert call(f"/api/collection/{ERC721_CONTRACT}/traits").body == traits_before
    # And asking again is answered from the cache, without another call
    assert call(f"/api/collection/{ERC721_CONTRACT}/nfts/1000", source_ip=source(0)).cache == "HIT"
    assert alchemy_stub.request_count("getNFTMetadata") == 20


def test_a_transfer_lists_the_token_and_its_metadata_is_read_once(
    call: Call, seeded: None, db: Conn, *, cache: redis.Redis, alchemy_stub: AlchemyStub, publisher: EventPublisher
) -> None:
    # Given a token read on demand (not listed)
    assert call(f"/api/collection/{ERC721_CONTRACT}/nfts/1000").status == 200
    assert listing(call)[0] == SEEDED_TOKENS

    # When transfers mint it and another token nobody read yet
    result = apply_transfers(
        conn=db,
        transfers=[transfer(ERC721_CONTRACT, 1000, ZERO, HOLDER), transfer(ERC721_CONTRACT, 1001, ZERO, HOLDER)],
        publisher=publisher,
    )
    assert result.applied == 2

    # Then both joined the listing, in token order, and the collection's keys were announced stale
    total, ids = listing(call)
    assert total == SEEDED_TOKENS + 2
    assert ids[-2:] == ["1000", "1001"]
    updated = db.execute(
        "SELECT detail->>'reason' FROM cache_events_outbox WHERE detail_type = 'collection.updated'"
    ).fetchall()
    assert updated == [("tokens_listed",)]
    # And the first read of the minted token reads its metadata once and stores it
    cache.flushdb()
    alchemy_stub.reset_counters()
    reply = call(f"/api/collection/{ERC721_CONTRACT}/nfts/1001")
    assert (reply.status, reply.body["title"]) == (200, "Such Punks #1001")
    title = db.execute("SELECT title FROM nfts WHERE token_id = 1001").fetchone()
    assert title == ("Such Punks #1001",)
    cache.flushdb()
    assert call(f"/api/collection/{ERC721_CONTRACT}/nfts/1001").body["title"] == "Such Punks #1001"
    assert alchemy_stub.request_count("getNFTMetadata") == 1


def test_ingestion_lists_a_token_read_on_demand(
    call: Call, db: Conn, alchemy_stub: AlchemyStub, publisher: EventPublisher
) -> None:
    # Given the ERC-1155 collection indexed with its first 10 tokens, and token 30 read on demand
    seed_items(db, 10)
    assert call(f"/api/collection/{ERC1155_CONTRACT}/nfts/30").status == 200
    assert db.execute("SELECT count(*) FROM nfts WHERE token_id = 30").fetchone() == (0,)

    # When the collection is ingested
    with AlchemyClient(api_key=alchemy_stub.api_key, base_url=alchemy_stub.base_url) as alchemy:
        report = ingest_collection(conn=db, alchemy=alchemy, publisher=publisher, address=ERC1155_CONTRACT, reason="t")

    # Then every token it lists, token 30 included, is in the listing
    assert report.state == "complete"
    page = call(f"/api/collection/{ERC1155_CONTRACT}/nfts?pageSize=99")
    assert page.body["total"] == ERC1155_TOKEN_COUNT
    assert "30" in [nft["tokenId"] for nft in page.body["nfts"]]


# -- owner misses -----------------------------------------------------------------------------------------
def test_erc1155_owner_misses_cost_one_listing_each_and_are_not_repeated(
    call: Call, items: uuid.UUID, db: Conn, alchemy_stub: AlchemyStub
) -> None:
    holders = token_holders(ERC1155_CONTRACT)

    # When 50 callers each ask for the owners of one of the 50 tokens, twice
    first = [call(f"/api/collection/{ERC1155_CONTRACT}/nfts/{i}/owner", source_ip=source(i)) for i in range(1, 51)]
    again = [call(f"/api/collection/{ERC1155_CONTRACT}/nfts/{i}/owner", source_ip=source(i)) for i in range(1, 51)]

    # Then each distinct token cost one getOwnersForNFT page, and nothing per holder
    assert alchemy_stub.request_counts() == {"getOwnersForNFT": ERC1155_TOKEN_COUNT}
    # And every answer names the token's holders; balances we do not hold are null, not guessed
    for token_id, reply in enumerate(first, start=1):
        assert reply.status == 200
        assert {owner["address"] for owner in reply.body["owners"]} == set(holders[str(token_id)])
        assert {owner["balance"] for owner in reply.body["owners"]} == {None}
    assert {reply.cache for reply in again} == {"HIT"}
    # And no guessed balance was stored
    assert db.execute("SELECT count(*) FROM nft_ownership").fetchone() == (0,)


def test_erc1155_stale_owners_are_verified_with_their_stored_balances(
    call: Call, items: uuid.UUID, db: Conn, cache: redis.Redis, alchemy_stub: AlchemyStub
) -> None:
    # Given the owners an ingestion stored (with balances), verified two hours ago
    holders = token_holders(ERC1155_CONTRACT)
    owners = [(owner, int(token), balance) for token, held in holders.items() for owner, balance in held.items()]
    replace_collection_owners(conn=db, collection_id=items, owners=owners)
    db.execute("UPDATE nft_ownership SET last_verified_at = now() - interval '2 hours'")
    db.execute("UPDATE collection_owner_syncs SET verified_at = now() - interval '2 hours'")

    # When token 7's owners are asked for
    reply = call(f"/api/collection/{ERC1155_CONTRACT}/nfts/7/owner")

    # Then one listing verified them, with the stored balances, and stored them as verified
    expected = {owner: str(balance) for owner, balance in holders["7"].items()}
    assert {owner["address"]: owner["balance"] for owner in reply.body["owners"]} == expected
    assert reply.body["cached"] is False
    assert alchemy_stub.request_counts() == {"getOwnersForNFT": 1}
    cache.flushdb()
    assert call(f"/api/collection/{ERC1155_CONTRACT}/nfts/7/owner").body["cached"] is True
    assert alchemy_stub.request_counts() == {"getOwnersForNFT": 1}


def test_owner_misses_pay_the_discovery_throttle(call: Call, seeded: None, db: Conn, alchemy_stub: AlchemyStub) -> None:
    # Given stored owners of token 3 that are no longer fresh
    db.execute("UPDATE nft_ownership SET last_verified_at = now() - interval '2 hours'")
    db.execute("UPDATE collection_owner_syncs SET verified_at = now() - interval '2 hours'")

    # When one source asks for the owners of 20 tokens we hold nothing of
    replies = [call(f"/api/collection/{ERC721_CONTRACT}/nfts/{5000 + i}/owner") for i in range(20)]

    # Then only its burst reached Alchemy; the rest were refused with 429 and Retry-After
    assert alchemy_stub.request_counts() == {"getOwnersForNFT": 10}
    assert [reply.status for reply in replies[:10]] == [200] * 10
    assert {(reply.status, reply.body["code"]) for reply in replies[10:]} == {(429, "discovery_rate_limited")}
    assert all(int(reply.headers["retry-after"]) >= 1 for reply in replies[10:])
    # And a token whose (stale) owners we hold is served from them meanwhile, labelled with their age
    stale = call(f"/api/collection/{ERC721_CONTRACT}/nfts/3/owner")
    assert (stale.status, stale.body["owner"], stale.body["cached"]) == (200, HOLDER, True)
    assert alchemy_stub.request_counts() == {"getOwnersForNFT": 10}


# -- pages of a collection not indexed yet ----------------------------------------------------------------
def test_pages_read_from_alchemy_while_indexing_pay_the_discovery_throttle(
    call: Call, alchemy_stub: AlchemyStub
) -> None:
    # Given the stub's collection seen for the first time (one discovery token spent; ingestion not run)
    assert call(f"/api/collection/{ERC721_CONTRACT}").body["indexing"] is True
    # When one source asks for 30 distinct pages the ingestion has not committed
    replies = [call(f"/api/collection/{ERC721_CONTRACT}/nfts?page={100 + index}") for index in range(30)]
    # Then only the rest of its burst reached Alchemy; the others were refused with 429 and Retry-After
    assert alchemy_stub.request_count("getNFTsForContract") == 9
    assert [reply.status for reply in replies[:9]] == [200] * 9
    assert {(reply.status, reply.body["code"]) for reply in replies[9:]} == {(429, "discovery_rate_limited")}
    assert all(int(reply.headers["retry-after"]) >= 1 for reply in replies[9:])
