"""reverify against the Alchemy stub: stale rows are corrected with events, right rows are re-verified,
and a run is bounded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from local.alchemy_stub import ERC721_CONTRACT, ERC1155_CONTRACT, AlchemyStub, token_holders
from such_market.db.consistency import check_summaries
from such_market.events.publisher import EventPublisher
from such_market.ownership.verification import reverify
from such_market.upstream.alchemy import AlchemyClient
from tests.conftest import MotoBus
from tests.integration.ownership_helpers import Conn, address, moto_publisher, new_collection, outbox, ownership

STRANGER = address(0x5757)


@pytest.fixture
def publisher(moto_bus: MotoBus) -> EventPublisher:
    return moto_publisher()


@pytest.fixture
def alchemy(alchemy_stub: AlchemyStub) -> Iterator[AlchemyClient]:
    with AlchemyClient(api_key=alchemy_stub.api_key, base_url=alchemy_stub.base_url, max_attempts=2) as client:
        yield client


def own(db: Conn, collection: uuid.UUID, token: int, owner: str, *, balance: int = 1, age: str = "2 days") -> None:
    db.execute(
        "INSERT INTO nft_ownership (collection_id, token_id, owner_address, balance, last_verified_at) "
        "VALUES (%s, %s, %s, %s, now() - %s::interval)",
        (collection, token, owner, balance, age),
    )


def holder(token: int) -> str:
    return next(iter(token_holders(ERC721_CONTRACT)[str(token)]))


def test_stale_owner_is_corrected_and_emits(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, alchemy_stub: AlchemyStub
) -> None:
    # Given token 5 recorded with an owner the chain no longer reports, token 6 with the right owner
    collection = new_collection(db, ERC721_CONTRACT, "ERC721")
    own(db, collection, 5, STRANGER)
    own(db, collection, 6, holder(6))
    # When re-verification runs
    report = reverify(conn=db, alchemy=alchemy, publisher=publisher, batch_size=10, time_budget_seconds=30)
    # Then token 5 moved to the chain's owner, token 6 is unchanged but verified now
    assert (report.checked, report.corrected, report.unchanged, report.failed) == (2, 1, 1, 0)
    assert ownership(db) == {(ERC721_CONTRACT, 5, holder(5)): 1, (ERC721_CONTRACT, 6, holder(6)): 1}
    ages = db.execute("SELECT bool_and(last_verified_at > now() - interval '1 minute') FROM nft_ownership").fetchone()
    assert ages == (True,)
    events = [detail for kind, detail in outbox(db) if kind == "ownership.changed"]
    assert len(events) == 1
    assert events[0]["tokenIds"] == ["5"]
    assert set(events[0]["wallets"]) == {STRANGER, holder(5)}
    assert check_summaries(conn=db).ok
    # And ERC-721 needs one call per token (the token type is known)
    assert alchemy_stub.request_count("getOwnersForNFT") == 2
    assert alchemy_stub.request_count("getContractMetadata") == 0


def test_erc1155_balances_are_reconciled(db: Conn, alchemy: AlchemyClient, publisher: EventPublisher) -> None:
    collection = new_collection(db, ERC1155_CONTRACT, "ERC1155")
    truth = token_holders(ERC1155_CONTRACT)["3"]
    own(db, collection, 3, STRANGER, balance=9)
    first = next(iter(truth))
    own(db, collection, 3, first, balance=truth[first] + 1)
    reverify(conn=db, alchemy=alchemy, publisher=publisher, batch_size=5, time_budget_seconds=30)
    assert ownership(db) == {(ERC1155_CONTRACT, 3, owner): balance for owner, balance in truth.items()}
    assert check_summaries(conn=db).ok


def test_batch_is_bounded_oldest_first(db: Conn, alchemy: AlchemyClient, publisher: EventPublisher) -> None:
    collection = new_collection(db, ERC721_CONTRACT, "ERC721")
    for token in range(10):
        own(db, collection, token, holder(token), age=f"{10 + token} days")  # token 9 is the oldest
    report = reverify(conn=db, alchemy=alchemy, publisher=publisher, batch_size=3, time_budget_seconds=30)
    assert report.checked == 3
    fresh = db.execute(
        "SELECT token_id::int FROM nft_ownership WHERE last_verified_at > now() - interval '1 minute' ORDER BY 1"
    ).fetchall()
    assert fresh == [(7,), (8,), (9,)]
    assert outbox(db) == []  # nothing changed: no event


def test_upstream_outage_ends_the_run_early(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher, alchemy_stub: AlchemyStub
) -> None:
    collection = new_collection(db, ERC721_CONTRACT, "ERC721")
    own(db, collection, 1, STRANGER)
    alchemy_stub.server_error_every = 1
    report = reverify(conn=db, alchemy=alchemy, publisher=publisher, batch_size=3, time_budget_seconds=30)
    assert report.stopped_early
    assert report.failed == 1
    assert report.checked == 0
    assert ownership(db) == {(ERC721_CONTRACT, 1, STRANGER): 1}


def test_a_bulk_sync_counts_as_verifying_every_row_of_its_collection(
    db: Conn, alchemy: AlchemyClient, publisher: EventPublisher
) -> None:
    from such_market.collections.writes import replace_collection_owners
    from such_market.ownership.queries import stalest_tokens

    # Given tokens 0-4 stamped 30 days ago but bulk-synced 10 days ago (their rows were not rewritten), and
    # tokens 5-9 stamped individually since, 2-6 days ago
    collection = new_collection(db, ERC721_CONTRACT, "ERC721")
    replace_collection_owners(conn=db, collection_id=collection, owners=[(holder(t), t, 1) for t in range(10)])
    db.execute("UPDATE nft_ownership SET last_verified_at = now() - interval '30 days' WHERE token_id < 5")
    db.execute(
        "UPDATE nft_ownership SET last_verified_at = now() - (token_id - 3) * interval '1 day' WHERE token_id >= 5"
    )
    db.execute("UPDATE collection_owner_syncs SET verified_at = now() - interval '10 days'")
    # Then the synced rows count as verified 10 days ago: they come first, then the others oldest first
    picked = [token for _, _, token in stalest_tokens(conn=db, limit=10)]
    assert sorted(picked[:5]) == [0, 1, 2, 3, 4]
    assert picked[5:] == [9, 8, 7, 6, 5]
    assert {token for _, _, token in stalest_tokens(conn=db, limit=3, collection_id=collection)} <= {0, 1, 2, 3, 4}
    # And with a sync 3.5 days ago, the rows stamped before it (0-4, 7-9) count as verified then
    db.execute("UPDATE collection_owner_syncs SET verified_at = now() - interval '84 hours'")
    picked = [token for _, _, token in stalest_tokens(conn=db, limit=10)]
    assert sorted(picked[:8]) == [0, 1, 2, 3, 4, 7, 8, 9]
    assert picked[8:] == [6, 5]
    # And re-verifying them stamps their rows: they are the newest now
    reverify(conn=db, alchemy=alchemy, publisher=publisher, batch_size=8, time_budget_seconds=30)
    assert [token for _, _, token in stalest_tokens(conn=db, limit=2)] == [6, 5]
