"""The ingestion job against real PostgreSQL, the Alchemy stub over HTTP and a moto EventBridge bus.

Issue 9: a failed run is retried with backoff and resumes where it stopped, with true counters (item 6);
a run that changes holdings announces them with ``ownership.changed`` (7); the trait-bitmap build does not
degrade on a collection loaded since the last ANALYZE, and is bounded in time (8).

Every assertion compares what the database holds with the stub's ground truth (tokens, traits, broken
metadata, holders and balances) and checks that the ownership summaries stay exact. Waits between
Alchemy retries are recorded instead of slept (the client's ``sleep`` seam), so fault tests stay fast.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import orjson
import psycopg
import pytest

from local.alchemy_stub import (
    COLLECTIONS,
    ERC721_CONTRACT,
    ERC721_TOKEN_COUNT,
    ERC721_WALLET_COUNT,
    ERC1155_CONTRACT,
    ERC1155_TOKEN_COUNT,
    NOT_A_CONTRACT,
    AlchemyStub,
    broken_token_ids,
    distinct_owners,
    token_holders,
    trait_counts,
)
from such_market.collections import writes
from such_market.collections.ingestion import (
    MAX_ATTEMPTS,
    NOT_A_CONTRACT_ERROR,
    TIME_BUDGET_ERROR,
    IngestionReport,
    ingest_collection,
)
from such_market.collections.queries import CollectionRow, get_collection, get_nft_page, get_traits
from such_market.collections.retries import RETRY_REASON, requeue_due_ingestions
from such_market.collections.writes import (
    CollectionMetadata,
    NftRecord,
    assign_positions,
    rebuild_traits,
    upsert_collection,
    upsert_nfts,
)
from such_market.config import EventSettings
from such_market.db.consistency import check_summaries
from such_market.events.publisher import EventPublisher
from such_market.upstream.alchemy import DEFAULT_RANGE_CONCURRENCY, MAX_PAGE_SIZE, AlchemyClient
from such_market.upstream.errors import UpstreamUnavailable
from tests.conftest import MotoBus
from tests.fixtures.seed import seed_indexed_collection

Conn = psycopg.Connection[tuple[Any, ...]]
NFT_PAGES = ERC721_TOKEN_COUNT // 100
OWNER_PAGES = -(-ERC721_WALLET_COUNT // 1000)
ERC721_REQUESTS = 1 + NFT_PAGES + OWNER_PAGES  # metadata, token pages, holder pages


@pytest.fixture
def fresh_stub(alchemy_stub: AlchemyStub) -> Iterator[AlchemyStub]:
    """The session's stub with counters reset and no fault injection (restored after the test)."""
    yield alchemy_stub
    alchemy_stub.latency_ms = 0
    alchemy_stub.rate_limit_every = 0
    alchemy_stub.server_error_every = 0
    alchemy_stub.retry_after_seconds = 1
    alchemy_stub.reset_counters()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def alchemy(fresh_stub: AlchemyStub, sleeps: list[float]) -> Iterator[AlchemyClient]:
    with AlchemyClient(api_key=fresh_stub.api_key, base_url=fresh_stub.base_url, sleep=sleeps.append) as client:
        yield client


@pytest.fixture
def publisher(moto_bus: MotoBus) -> EventPublisher:
    return EventPublisher(EventSettings(event_bus_name=moto_bus.name, eventbridge_endpoint_url=None))


def ingest(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, address: str, **options: Any
) -> IngestionReport:
    return ingest_collection(conn=db, alchemy=alchemy, publisher=publisher, address=address, reason="test", **options)


def collection(db: Conn, address: str) -> CollectionRow:
    row = get_collection(conn=db, address=address)
    assert row is not None
    return row


def stored_traits(db: Conn, address: str) -> dict[str, dict[str, int]]:
    traits: dict[str, dict[str, int]] = {}
    for trait_type, value, count in db.execute(
        "SELECT t.trait_type, t.trait_value, t.token_count FROM collection_traits t "
        "JOIN collections c ON c.id = t.collection_id WHERE c.contract_address = %s",
        (address,),
    ):
        traits.setdefault(trait_type, {})[value] = count
    return traits


def stored_holders(db: Conn, address: str) -> dict[str, dict[str, int]]:
    holders: dict[str, dict[str, int]] = {}
    for token_id, owner, balance in db.execute(
        "SELECT o.token_id::text, o.owner_address, o.balance::bigint FROM nft_ownership o "
        "JOIN collections c ON c.id = o.collection_id WHERE c.contract_address = %s",
        (address,),
    ):
        holders.setdefault(token_id, {})[owner] = balance
    return holders


def stored_broken(db: Conn, address: str) -> frozenset[str]:
    rows = db.execute(
        "SELECT n.token_id::text FROM nfts n JOIN collections c ON c.id = n.collection_id "
        "WHERE c.contract_address = %s AND n.metadata_error IS NOT NULL",
        (address,),
    ).fetchall()
    return frozenset(token_id for (token_id,) in rows)


def nft_digest(db: Conn, address: str) -> tuple[int, str]:
    """(row count, md5 over every stored token column that ingestion writes, ranks included)."""
    row = db.execute(
        "SELECT count(*), md5(string_agg(concat_ws('|', n.token_id, n.position, n.title, n.image_url, "
        "n.thumbnail_url, n.metadata::text, n.attributes::text, n.metadata_error), ',' ORDER BY n.token_id)) "
        "FROM nfts n JOIN collections c ON c.id = n.collection_id WHERE c.contract_address = %s",
        (address,),
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def outbox_events(db: Conn, detail_type: str) -> list[tuple[dict[str, Any], bool]]:
    """(detail, published?) of every outbox row of ``detail_type``."""
    rows = db.execute(
        "SELECT detail, published_at IS NOT NULL FROM cache_events_outbox WHERE detail_type = %s ORDER BY id",
        (detail_type,),
    ).fetchall()
    return [(detail, published) for detail, published in rows]


@contextlib.contextmanager
def rewritten(stub: AlchemyStub, method: str, change: Callable[[str, dict[str, Any]], None]) -> Iterator[None]:
    """The stub's 200 answers to ``method`` pass through ``change(target, body)`` before they are sent."""
    original = stub.handle

    def handle(target: str) -> tuple[int, bytes, dict[str, str]]:
        status, body, headers = original(target)
        if status == 200 and f"/{method}?" in target:
            payload = orjson.loads(body)
            change(target, payload)
            body = orjson.dumps(payload)
        return status, body, headers

    stub.handle = handle  # type: ignore[method-assign]
    try:
        yield
    finally:
        stub.handle = original  # type: ignore[method-assign]


def known_collection(db: Conn, address: str) -> CollectionRow:
    """A collection row as the read path leaves it when it queues the first ingestion."""
    row = upsert_collection(conn=db, metadata=CollectionMetadata(contract_address=address, token_type="ERC721"))
    db.execute("UPDATE collections SET ingestion_state = 'queued' WHERE id = %s", (row.id,))
    return row


def test_the_erc721_collection_is_ingested_completely(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, fresh_stub: AlchemyStub, moto_bus: MotoBus
) -> None:
    # Given the 10,000-token ERC-721 collection, never seen before
    # When it is ingested
    report = ingest(db, alchemy, publisher, ERC721_CONTRACT)

    # Then the report counts every token, broken token, holder and page
    assert report.state == "complete"
    assert report.error is None
    assert report.nfts == ERC721_TOKEN_COUNT
    assert report.broken == len(broken_token_ids(ERC721_CONTRACT))
    assert report.owners == ERC721_WALLET_COUNT == len(distinct_owners(ERC721_CONTRACT))
    assert report.token_owner_rows == ERC721_TOKEN_COUNT
    assert report.pages == NFT_PAGES
    # And every token is stored, ranked 0..9,999 in token order
    count, _ = nft_digest(db, ERC721_CONTRACT)
    assert count == ERC721_TOKEN_COUNT
    ranks = db.execute("SELECT count(*) FROM nfts WHERE position = token_id").fetchone()
    assert ranks == (ERC721_TOKEN_COUNT,)
    # And the trait facets equal the stub's ground truth exactly
    assert stored_traits(db, ERC721_CONTRACT) == trait_counts(ERC721_CONTRACT)
    # And exactly the broken tokens carry their metadata error
    assert stored_broken(db, ERC721_CONTRACT) == broken_token_ids(ERC721_CONTRACT)
    assert broken_token_ids(ERC721_CONTRACT)
    # And every token has exactly its one stub owner, and the summaries agree
    assert stored_holders(db, ERC721_CONTRACT) == token_holders(ERC721_CONTRACT)
    assert check_summaries(conn=db).ok
    # And the collection is complete with its counters and its metadata
    row = collection(db, ERC721_CONTRACT)
    assert (row.ingestion_state, row.nfts_indexed, row.owners_indexed) == (
        "complete",
        ERC721_TOKEN_COUNT,
        ERC721_WALLET_COUNT,
    )
    assert (row.name, row.symbol, row.token_type, row.total_supply) == ("Such Punks", "SUCH", "ERC721", "10000")
    assert row.ingestion_error is None
    assert row.ingestion_started_at is not None
    assert row.ingestion_finished_at is not None
    # And collection.refreshed went through the outbox to the bus
    ((detail, published),) = outbox_events(db, "collection.refreshed")
    assert (detail["contractAddress"], detail["reason"], published) == (ERC721_CONTRACT, "test", True)
    received = moto_bus.received()
    (delivered,) = [message for message in received if message["detail-type"] == "collection.refreshed"]
    assert moto_bus.received_ids() == []  # exactly one delivery
    assert delivered["detail"] == detail
    # And ownership.changed names every wallet that now holds some of it (1,000 wallets per event)
    changed = [message["detail"] for message in received if message["detail-type"] == "ownership.changed"]
    assert len(changed) == -(-ERC721_WALLET_COUNT // 1000)
    assert {wallet for detail in changed for wallet in detail["wallets"]} == distinct_owners(ERC721_CONTRACT)
    # And it took one request per page, no more
    assert fresh_stub.request_count() == ERC721_REQUESTS


def test_dense_token_ids_are_listed_in_parallel_ranges_with_one_call_per_page(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, fresh_stub: AlchemyStub
) -> None:
    # Given the 10,000-token collection (ids 0..9,999, totalSupply 10000) behind 20 ms of upstream latency
    fresh_stub.latency_ms = 20

    # When it is ingested
    report = ingest(db, alchemy, publisher, ERC721_CONTRACT)

    # Then its token pages were read several at a time, within the bound (the pageKey chain reads one)
    assert 1 < fresh_stub.peak_in_flight("getNFTsForContract") <= DEFAULT_RANGE_CONCURRENCY
    # And with one request per page, no more
    assert fresh_stub.request_count("getNFTsForContract") == report.pages == NFT_PAGES
    # And every token is stored once, with the facets of the whole collection
    assert report.state == "complete"
    assert nft_digest(db, ERC721_CONTRACT)[0] == ERC721_TOKEN_COUNT
    assert stored_traits(db, ERC721_CONTRACT) == trait_counts(ERC721_CONTRACT)
    assert stored_broken(db, ERC721_CONTRACT) == broken_token_ids(ERC721_CONTRACT)


def test_without_a_stated_supply_the_page_key_chain_is_followed(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, fresh_stub: AlchemyStub
) -> None:
    # Given a contract whose metadata states no supply
    fresh_stub.latency_ms = 5
    with rewritten(fresh_stub, "getContractMetadata", lambda _, body: body.update(totalSupply=None)):
        # When it is ingested
        report = ingest(db, alchemy, publisher, ERC721_CONTRACT)

    # Then its pages were read one after the other, along the page keys, and all of them
    assert fresh_stub.peak_in_flight("getNFTsForContract") == 1
    assert fresh_stub.request_count("getNFTsForContract") == NFT_PAGES
    assert report.state == "complete"
    assert nft_digest(db, ERC721_CONTRACT)[0] == ERC721_TOKEN_COUNT


@pytest.mark.parametrize("case", [(5_000, NFT_PAGES), (20_000, 200)], ids=["undercount", "overcount"])
def test_a_stated_supply_that_is_wrong_loses_no_token(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, fresh_stub: AlchemyStub, case: tuple[int, int]
) -> None:
    supply, token_requests = case
    # Given a contract whose stated supply undercounts (burns) or overcounts its 10,000 tokens
    with rewritten(fresh_stub, "getContractMetadata", lambda _, body: body.update(totalSupply=str(supply))):
        # When it is ingested
        report = ingest(db, alchemy, publisher, ERC721_CONTRACT)

    # Then every token is stored (past an undercount the last range follows the page keys)
    assert report.state == "complete"
    assert nft_digest(db, ERC721_CONTRACT)[0] == ERC721_TOKEN_COUNT
    assert stored_traits(db, ERC721_CONTRACT) == trait_counts(ERC721_CONTRACT)
    # And each request was one page (an overcount costs one empty page per 100 ids it claims)
    assert fresh_stub.request_count("getNFTsForContract") == report.pages == token_requests


def test_the_erc1155_collection_is_ingested_with_balances(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher
) -> None:
    # Given the ERC-1155 collection whose tokens have several holders each
    # When it is ingested
    report = ingest(db, alchemy, publisher, ERC1155_CONTRACT)

    # Then every (token, holder) row carries the stub's balance and the summaries agree
    expected = token_holders(ERC1155_CONTRACT)
    assert report.state == "complete"
    assert stored_holders(db, ERC1155_CONTRACT) == expected
    assert any(len(holders) > 1 for holders in expected.values())
    assert any(balance > 1 for holders in expected.values() for balance in holders.values())
    assert report.token_owner_rows == sum(len(holders) for holders in expected.values())
    assert check_summaries(conn=db).ok
    # And tokens, traits and counters are right
    assert stored_traits(db, ERC1155_CONTRACT) == trait_counts(ERC1155_CONTRACT)
    row = collection(db, ERC1155_CONTRACT)
    assert (row.ingestion_state, row.token_type, row.nfts_indexed, row.owners_indexed) == (
        "complete",
        "ERC1155",
        ERC1155_TOKEN_COUNT,
        len(distinct_owners(ERC1155_CONTRACT)),
    )


def test_an_address_without_an_nft_contract_fails_without_raising(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, fresh_stub: AlchemyStub
) -> None:
    # Given a queued collection whose address turns out to hold no contract
    known_collection(db, NOT_A_CONTRACT)

    # When it is ingested
    report = ingest(db, alchemy, publisher, NOT_A_CONTRACT)

    # Then the run ends failed with a clear error after one request, and nothing is retried
    assert (report.state, report.error) == ("failed", NOT_A_CONTRACT_ERROR)
    row = collection(db, NOT_A_CONTRACT)
    assert (row.ingestion_state, row.ingestion_error) == ("failed", NOT_A_CONTRACT_ERROR)
    assert fresh_stub.request_counts() == {"getContractMetadata": 1}
    assert outbox_events(db, "collection.refreshed") == []


def test_an_unknown_address_without_an_nft_contract_leaves_no_row(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher
) -> None:
    # Given an address never seen, holding no contract
    # When it is ingested
    report = ingest(db, alchemy, publisher, NOT_A_CONTRACT)

    # Then the run fails and no collection row is created for it
    assert report.state == "failed"
    assert get_collection(conn=db, address=NOT_A_CONTRACT) is None


def test_rate_limiting_is_retried_and_the_requests_stay_bounded(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, fresh_stub: AlchemyStub, sleeps: list[float]
) -> None:
    # Given an upstream that answers every 7th request with 429 Retry-After: 1
    fresh_stub.rate_limit_every = 7

    # When the ERC-721 collection is ingested
    report = ingest(db, alchemy, publisher, ERC721_CONTRACT)

    # Then it completes with the same data as without rate limiting
    assert report.state == "complete"
    assert stored_traits(db, ERC721_CONTRACT) == trait_counts(ERC721_CONTRACT)
    assert stored_holders(db, ERC721_CONTRACT) == token_holders(ERC721_CONTRACT)
    assert check_summaries(conn=db).ok
    # And each 429 cost exactly one retry, honouring Retry-After: the call that met it waited at least
    # Retry-After, and the parallel token listing held its other calls for the rest of that wait
    rejected = fresh_stub.request_count() // 7
    assert rejected > 0
    assert fresh_stub.request_count() == ERC721_REQUESTS + rejected
    assert sum(delay >= 1 for delay in sleeps) >= rejected
    assert all(0 < delay <= 1 + 4 for delay in sleeps)  # Retry-After plus at most the backoff cap


def test_an_upstream_that_keeps_failing_fails_the_run_and_schedules_a_retry(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, fresh_stub: AlchemyStub
) -> None:
    # Given a queued collection and an upstream answering 503 to every request
    known_collection(db, ERC721_CONTRACT)
    fresh_stub.server_error_every = 1

    # When it is ingested, the run fails with a retry scheduled (the sweep retries it, not Lambda)
    report = ingest(db, alchemy, publisher, ERC721_CONTRACT)
    assert (report.state, report.retry_in_seconds is not None) == ("failed", True)

    # Then the collection is failed with a public error (the provider and status, never the upstream's
    # text or the key), after bounded attempts
    row = collection(db, ERC721_CONTRACT)
    assert row.ingestion_state == "failed"
    assert row.ingestion_error == "the NFT data provider failed (HTTP 503)"
    assert row.ingestion_finished_at is not None
    assert row.ingestion_retry_at is not None
    assert fresh_stub.request_count() == alchemy.max_attempts
    # And nothing claims completion
    assert row.nfts_indexed == 0
    assert outbox_events(db, "collection.refreshed") == []


def test_a_failure_after_tokens_were_written_invalidates_the_collection(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, fresh_stub: AlchemyStub
) -> None:
    # Given an upstream that fails every holder page once every token page has been served
    original = fresh_stub.handle

    def failing_owner_pages(target: str) -> tuple[int, bytes, dict[str, str]]:
        if "/getOwnersForContract" not in target:
            return original(target)
        deadline = time.monotonic() + 30
        while fresh_stub.request_count("getNFTsForContract") < NFT_PAGES and time.monotonic() < deadline:
            time.sleep(0.005)
        return 503, b"Service Unavailable", {"Content-Type": "text/plain"}

    fresh_stub.handle = failing_owner_pages  # type: ignore[method-assign]
    try:
        # When the collection is ingested
        report = ingest(db, alchemy, publisher, ERC721_CONTRACT)
    finally:
        fresh_stub.handle = original  # type: ignore[method-assign]

    # Then the run is failed, not complete, and no ownership was written
    assert report.state == "failed"
    row = collection(db, ERC721_CONTRACT)
    assert row.ingestion_state == "failed"
    assert row.ingestion_error == "the NFT data provider failed (HTTP 503)"
    assert stored_holders(db, ERC721_CONTRACT) == {}
    assert outbox_events(db, "collection.refreshed") == []
    # And collection.updated drops whatever the cache held of the collection
    ((detail, _),) = outbox_events(db, "collection.updated")
    assert (detail["contractAddress"], detail["reason"]) == (ERC721_CONTRACT, "ingestion_failed")


def test_an_erc721_token_listed_under_two_holders_is_read_again(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, fresh_stub: AlchemyStub
) -> None:
    # Given a holder listing that shows one token under a second holder too (it moved mid-listing)
    truth = token_holders(ERC721_CONTRACT)

    def add_a_moved_token(target: str, payload: dict[str, Any]) -> None:
        if "pageKey=" in target:
            return
        first = payload["owners"][0]
        moved = next(token for token, holders in truth.items() if first["ownerAddress"].lower() not in holders)
        first["tokenBalances"].append({"tokenId": moved, "balance": "1"})

    # When the collection is ingested
    with rewritten(fresh_stub, "getOwnersForContract", add_a_moved_token):
        report = ingest(db, alchemy, publisher, ERC721_CONTRACT)

    # Then that token was read again on its own, and every token has its one true owner
    assert report.state == "complete"
    assert fresh_stub.request_count("getOwnersForNFT") == 1
    assert stored_holders(db, ERC721_CONTRACT) == truth
    assert check_summaries(conn=db).ok


def test_a_holder_listing_without_balances_keeps_the_stored_ownership(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, fresh_stub: AlchemyStub
) -> None:
    # Given a completely ingested collection
    ingest(db, alchemy, publisher, ERC721_CONTRACT)

    def drop_balances(target: str, payload: dict[str, Any]) -> None:
        for owner in payload["owners"]:
            owner.pop("tokenBalances", None)

    # When it is ingested again while the holder listing comes without balances
    with rewritten(fresh_stub, "getOwnersForContract", drop_balances):
        report = ingest(db, alchemy, publisher, ERC721_CONTRACT)

    # Then the run fails without wiping the ownership it had
    assert (report.state, report.error) == ("failed", "the holder listing carried no token balances")
    assert collection(db, ERC721_CONTRACT).ingestion_state == "failed"
    assert stored_holders(db, ERC721_CONTRACT) == token_holders(ERC721_CONTRACT)
    assert check_summaries(conn=db).ok


def test_the_time_budget_stops_the_run_cleanly(db: Conn, alchemy: AlchemyClient, publisher: EventPublisher) -> None:
    # Given a run with no time to spend after the metadata
    # When the ERC-721 collection is ingested
    report = ingest(db, alchemy, publisher, ERC721_CONTRACT, time_budget_seconds=0.0)

    # Then it stops, failed, with a clear error, and does not stay running
    assert (report.state, report.error) == ("failed", TIME_BUDGET_ERROR)
    row = collection(db, ERC721_CONTRACT)
    assert (row.ingestion_state, row.ingestion_error) == ("failed", TIME_BUDGET_ERROR)
    assert outbox_events(db, "collection.refreshed") == []


def test_reingestion_converges_to_the_same_rows(db: Conn, alchemy: AlchemyClient, publisher: EventPublisher) -> None:
    # Given a completely ingested collection
    ingest(db, alchemy, publisher, ERC721_CONTRACT)
    digest = nft_digest(db, ERC721_CONTRACT)
    # And drift since: a token the upstream does not list, a lost owner row, a wrong facet count
    collection_id = collection(db, ERC721_CONTRACT).id
    db.execute(
        "INSERT INTO nfts (collection_id, token_id, title, attributes) "
        'VALUES (%s, 123456, \'ghost\', \'[{"trait_type": "Body", "value": "Ghost"}]\')',
        (collection_id,),
    )
    db.execute("INSERT INTO nft_traits VALUES (%s, 123456, 'Body', 'Ghost')", (collection_id,))
    db.execute("DELETE FROM nft_ownership WHERE collection_id = %s AND token_id = 42", (collection_id,))
    db.execute("UPDATE collection_traits SET token_count = 1 WHERE collection_id = %s", (collection_id,))

    # When it is ingested again
    report = ingest(db, alchemy, publisher, ERC721_CONTRACT)

    # Then it holds exactly what the first run stored
    assert report.state == "complete"
    assert nft_digest(db, ERC721_CONTRACT) == digest
    assert stored_traits(db, ERC721_CONTRACT) == trait_counts(ERC721_CONTRACT)
    assert stored_holders(db, ERC721_CONTRACT) == token_holders(ERC721_CONTRACT)
    assert check_summaries(conn=db).ok
    row = collection(db, ERC721_CONTRACT)
    assert (row.ingestion_state, row.nfts_indexed, row.owners_indexed) == (
        "complete",
        ERC721_TOKEN_COUNT,
        ERC721_WALLET_COUNT,
    )
    assert len(outbox_events(db, "collection.refreshed")) == 2


def test_a_run_of_a_collection_already_being_ingested_is_skipped(
    db: Conn, db_url: str, alchemy: AlchemyClient, publisher: EventPublisher, fresh_stub: AlchemyStub
) -> None:
    # Given another run holding the collection's ingestion lock
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (0x5C4D_1001, ERC721_CONTRACT))

        # When the collection is ingested
        report = ingest(db, alchemy, publisher, ERC721_CONTRACT)

    # Then this run does nothing
    assert report.state == "skipped"
    assert fresh_stub.request_count() == 0
    assert get_collection(conn=db, address=ERC721_CONTRACT) is None


# -- issue 9: retries and resumption (6), ownership.changed (7), the bitmap build (8) ----------------
PAGES_BEFORE_OUTAGE = 35


@pytest.fixture
def outage_after_some_pages(fresh_stub: AlchemyStub) -> Iterator[dict[str, bool]]:
    """getNFTsForContract answers 503 for every page after the first ``PAGES_BEFORE_OUTAGE``, until healed.

    The outage starts at a token id, not at a request count: the parallel range listing has several pages
    in flight, so which of them a count-based outage refuses depends on the threads' timing.
    """
    state = {"down": True}
    original = fresh_stub.handle
    outage_from = COLLECTIONS[ERC721_CONTRACT].first_token_id + PAGES_BEFORE_OUTAGE * MAX_PAGE_SIZE

    def handle(target: str) -> tuple[int, bytes, dict[str, str]]:
        path, _, query = target.partition("?")
        if state["down"] and path.endswith("/getNFTsForContract"):
            (start_token,) = parse_qs(query).get("startToken", ["0"])
            if int(start_token, 0) >= outage_from:
                return 503, b"Service Unavailable", {"Content-Type": "text/plain"}
        return original(target)

    fresh_stub.handle = handle  # type: ignore[method-assign]
    try:
        yield state
    finally:
        fresh_stub.handle = original  # type: ignore[method-assign]


def stored_count(db: Conn, address: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM nfts n JOIN collections c ON c.id = n.collection_id WHERE c.contract_address = %s",
        (address,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_failed_first_ingestion_is_retried_with_backoff_and_resumes_where_it_stopped(
    db: Conn,
    alchemy: AlchemyClient,
    publisher: EventPublisher,
    fresh_stub: AlchemyStub,
    outage_after_some_pages: dict[str, bool],
) -> None:
    # Given Alchemy going down in the middle of a first ingestion
    # When the collection is ingested
    report = ingest(db, alchemy, publisher, ERC721_CONTRACT, batch_tokens=500)

    # Then the run fails without raising, with a retry scheduled about a minute later
    assert report.state == "failed"
    assert report.retry_in_seconds is not None
    assert 50 <= report.retry_in_seconds <= 70
    row = collection(db, ERC721_CONTRACT)
    assert (row.ingestion_state, row.ingestion_attempts, row.indexed) == ("failed", 1, False)
    assert row.ingestion_retry_at is not None
    assert timedelta(seconds=50) <= row.ingestion_retry_at - datetime.now(UTC) <= timedelta(seconds=70)
    # And its counter says what is really stored, and where the listing goes on
    stored = stored_count(db, ERC721_CONTRACT)
    assert stored > 0
    assert row.nfts_indexed == stored
    assert row.ingestion_resume_key is not None
    assert row.ingestion_listed_through is not None
    assert outbox_events(db, "collection.refreshed") == []

    # When the sweep runs before the retry is due, nothing is queued
    assert requeue_due_ingestions(conn=db, publisher=publisher) == []
    # When it is due, the collection is queued again with a retry event, once
    db.execute("UPDATE collections SET ingestion_retry_at = now() - interval '1 s' WHERE id = %s", (row.id,))
    assert requeue_due_ingestions(conn=db, publisher=publisher) == [ERC721_CONTRACT]
    assert requeue_due_ingestions(conn=db, publisher=publisher) == []
    assert collection(db, ERC721_CONTRACT).ingestion_state == "queued"
    ((detail, _),) = outbox_events(db, "collection.ingest_requested")
    assert (detail["contractAddress"], detail["reason"]) == (ERC721_CONTRACT, RETRY_REASON)

    # When Alchemy is back and the retry runs
    outage_after_some_pages["down"] = False
    fresh_stub.reset_counters()
    retried = ingest_collection(
        conn=db, alchemy=alchemy, publisher=publisher, address=ERC721_CONTRACT, reason=RETRY_REASON, batch_tokens=500
    )

    # Then it completes, listing only the pages after the committed ones
    assert retried.state == "complete"
    assert fresh_stub.request_count("getNFTsForContract") < NFT_PAGES - 10
    # And the data is the collection's, whole
    assert stored_traits(db, ERC721_CONTRACT) == trait_counts(ERC721_CONTRACT)
    assert stored_holders(db, ERC721_CONTRACT) == token_holders(ERC721_CONTRACT)
    assert check_summaries(conn=db).ok
    done = collection(db, ERC721_CONTRACT)
    assert (done.ingestion_state, done.nfts_indexed, done.ingestion_attempts) == ("complete", 10_000, 0)
    assert done.indexed
    assert (done.ingestion_retry_at, done.ingestion_resume_key, done.ingestion_listed_through) == (None, None, None)


def test_token_batches_are_ranked_as_they_are_written_not_at_the_finish(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, outage_after_some_pages: dict[str, bool]
) -> None:
    # Given Alchemy going down in the middle of a first ingestion (so the finishing transaction never runs)
    # When the collection is ingested
    report = ingest(db, alchemy, publisher, ERC721_CONTRACT, batch_tokens=500)

    # Then every committed token batch already holds its token-order rank (issue 18: ranking overlaps the
    # listing instead of lengthening the finish), dense from 0 in token order
    assert report.state == "failed"
    rows = db.execute(
        "SELECT n.token_id, n.position FROM nfts n JOIN collections c ON c.id = n.collection_id"
        " WHERE c.contract_address = %s ORDER BY n.token_id",
        (ERC721_CONTRACT,),
    ).fetchall()
    assert len(rows) >= 500
    assert [position for _, position in rows] == list(range(len(rows)))
    # And rarity waits for the finish, which needs every token
    unranked = db.execute(
        "SELECT count(*) FROM nfts n JOIN collections c ON c.id = n.collection_id"
        " WHERE c.contract_address = %s AND n.rarity_rank IS NULL",
        (ERC721_CONTRACT,),
    ).fetchone()
    assert unranked == (len(rows),)


def test_an_ingestion_that_keeps_failing_stops_retrying_and_raises(
    db: Conn,
    alchemy: AlchemyClient,
    publisher: EventPublisher,
    outage_after_some_pages: dict[str, bool],
) -> None:
    # Given a collection whose ingestion already failed all but its last attempt
    ingest(db, alchemy, publisher, ERC721_CONTRACT, batch_tokens=500)
    db.execute("UPDATE collections SET ingestion_attempts = %s", (MAX_ATTEMPTS - 1,))

    # When the retry fails again, the failure is raised (Lambda's retries, then the dead-letter queue)
    with pytest.raises(UpstreamUnavailable):
        ingest_collection(conn=db, alchemy=alchemy, publisher=publisher, address=ERC721_CONTRACT, reason=RETRY_REASON)

    # Then no further retry is scheduled
    row = collection(db, ERC721_CONTRACT)
    assert (row.ingestion_state, row.ingestion_attempts, row.ingestion_retry_at) == ("failed", MAX_ATTEMPTS, None)
    assert row.nfts_indexed == stored_count(db, ERC721_CONTRACT)


def test_a_reingestion_that_moves_a_token_announces_both_wallets(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, fresh_stub: AlchemyStub
) -> None:
    # Given a completely ingested collection
    ingest(db, alchemy, publisher, ERC721_CONTRACT)
    db.execute("DELETE FROM cache_events_outbox")
    # And since then token 7 moved to a new wallet
    old_owner = next(iter(token_holders(ERC721_CONTRACT)["7"]))
    new_owner = "0x" + "ab" * 20

    def move_token_7(target: str, payload: dict[str, Any]) -> None:
        for owner in payload["owners"]:
            owner["tokenBalances"] = [held for held in owner["tokenBalances"] if int(held["tokenId"]) != 7]
        if "pageKey=" not in target:
            payload["owners"].append({"ownerAddress": new_owner, "tokenBalances": [{"tokenId": "7", "balance": "1"}]})

    # When it is ingested again
    with rewritten(fresh_stub, "getOwnersForContract", move_token_7):
        report = ingest(db, alchemy, publisher, ERC721_CONTRACT)

    # Then ownership.changed names exactly the two wallets whose holdings changed, with the refresh
    assert report.state == "complete"
    changed = [detail for detail, _ in outbox_events(db, "ownership.changed")]
    assert [(detail["contractAddress"], sorted(detail["wallets"])) for detail in changed] == [
        (ERC721_CONTRACT, sorted([old_owner, new_owner]))
    ]
    assert len(outbox_events(db, "collection.refreshed")) == 1
    assert check_summaries(conn=db).ok


def _load_after_analyze(db: Conn, tokens: int) -> uuid.UUID:
    """A collection loaded (and ranked) after the tables were analyzed holding only another collection:
    the statistics know nothing of its collection_id."""
    seed_indexed_collection(db, address="0x" + "5e" * 20, tokens=500, holder=lambda _: "0x" + "11" * 20)
    db.execute("ANALYZE nfts")
    db.execute("ANALYZE nft_traits")
    db.execute("ANALYZE collection_traits")
    row = upsert_collection(
        conn=db, metadata=CollectionMetadata(contract_address="0x" + "ee" * 20, name="late", token_type="ERC721")
    )
    records = [
        NftRecord(
            token_id=token_id,
            attributes=[
                {"trait_type": "Color", "value": f"c{token_id % 7}"},
                {"trait_type": "Size", "value": f"s{token_id % 5}"},
                {"trait_type": "Hat", "value": f"h{token_id % 3}"},
            ],
        )
        for token_id in range(tokens)
    ]
    upsert_nfts(conn=db, collection_id=row.id, nfts=records, rank=False)
    assign_positions(conn=db, collection_id=row.id)
    return row.id


def _join_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _join_nodes(child)


def test_the_bitmap_build_hash_joins_a_collection_the_statistics_do_not_know(db: Conn) -> None:
    # Given a collection loaded after the last ANALYZE (the statistics estimate "1 row" for it)
    collection_id = _load_after_analyze(db, tokens=3000)

    # When the bitmap build's statement is planned the way rebuild_traits runs it
    params = {"collection_id": collection_id}
    with db.transaction():
        db.execute(writes._SET_PLAN_SETTINGS, {"nestloop": "off", "timeout": "30s"})
        ((plan,),) = db.execute("EXPLAIN (FORMAT JSON) " + writes._REBUILD_BITMAPS, params).fetchall()
    nodes = list(_join_nodes(plan[0]["Plan"]))

    # Then nft_traits and nfts are joined by hash (or merge), never by a loop scanning the collection per row
    def scans(node: dict[str, Any]) -> set[str]:
        return {child.get("Relation Name", "") for child in _join_nodes(node)}

    trait_joins = [node for node in nodes if "Join Type" in node and {"nft_traits", "nfts"} <= scans(node)]
    innermost = min(trait_joins, key=lambda node: len(list(_join_nodes(node))))
    assert innermost["Node Type"] in {"Hash Join", "Merge Join"}

    # And the build and the facets are right
    rebuild_traits(conn=db, collection_id=collection_id)
    facets = get_traits(conn=db, collection_id=collection_id)
    assert {
        value.value: value.count for facet in facets.traits if facet.trait_type == "Hat" for value in facet.values
    } == {
        "h0": 1000,
        "h1": 1000,
        "h2": 1000,
    }
    stamped = db.execute(
        "SELECT count(*) FROM collection_traits ct JOIN collection_trait_generations g USING (collection_id) "
        "WHERE ct.collection_id = %s AND ct.positions_generation = g.generation",
        (collection_id,),
    ).fetchone()
    assert stamped == (15,)


def test_a_bitmap_build_that_runs_out_of_time_does_not_fail_the_facets(
    db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a bitmap build allowed no time at all
    collection_id = _load_after_analyze(db, tokens=3000)
    monkeypatch.setattr(writes, "BITMAP_BUILD_TIMEOUT_MS", 1)

    # When the facets are rebuilt (inside a caller's transaction, as the ingestion's finish does)
    with db.transaction():
        db.execute("SET LOCAL statement_timeout = '120s'")
        rebuild_traits(conn=db, collection_id=collection_id)
        timeout = db.execute("SELECT current_setting('statement_timeout')").fetchone()

    # Then the facets are exact, the caller's settings are intact, and filtered totals are counted exactly
    assert timeout == ("2min",)
    facets = get_traits(conn=db, collection_id=collection_id)
    assert sum(value.count for facet in facets.traits for value in facet.values) == 9000
    page = get_nft_page(conn=db, collection_id=collection_id, page=0, page_size=10, filters={"Hat": ("h1",)})
    assert page.total == 1000


def test_counters_are_the_stored_tokens_while_running(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, outage_after_some_pages: dict[str, bool]
) -> None:
    # Given a run that fails after some batches
    ingest(db, alchemy, publisher, ERC721_CONTRACT, batch_tokens=1000)
    # Then nftsIndexed is the stored count, not the run's idea of it
    row = get_collection(conn=db, address=ERC721_CONTRACT)
    assert row is not None
    assert row.nfts_indexed == stored_count(db, ERC721_CONTRACT) == 3000
