"""The ingestion handler with the sample event, as Lambda calls it: real PostgreSQL, Valkey, Alchemy stub.

The function reads its settings from the environment (``ALCHEMY_BASE_URL`` points at the running stub),
records idempotency in the real Valkey and publishes to a moto bus.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import ingest_collection
import psycopg
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

from local.alchemy_stub import ERC721_CONTRACT, ERC721_TOKEN_COUNT, AlchemyStub, trait_counts
from such_market.collections.refresh import LOST_INGESTION_ERROR, release_lost_ingestion
from such_market.runtime import ReadPathSettings, runtime_for
from such_market.upstream.errors import UpstreamUnavailable
from tests.conftest import MotoBus
from tests.fixtures.seed import seed_indexed_collection
from tests.functions.conftest import FakeContext, Reply, load_event

SAMPLE = "event_collection_ingest_requested"


class IngestionContext(FakeContext):
    """A context with the remaining time of a fresh 900 s invocation."""

    memory_limit_in_mb = 1024

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000


@pytest.fixture
def env(lambda_env: dict[str, str], moto_bus: MotoBus, alchemy_stub: AlchemyStub) -> Iterator[AlchemyStub]:
    """The handler's environment (``lambda_env``: the stub's URL and key), with a mocked bus (faults cleared
    after the test)."""
    yield alchemy_stub
    alchemy_stub.server_error_every = 0
    alchemy_stub.reset_counters()


@pytest.fixture
def db(lambda_env: dict[str, str]) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(lambda_env["DATABASE_URL"], autocommit=True) as conn:
        yield conn


def erc721_event() -> dict[str, Any]:
    event = load_event(SAMPLE)
    event["detail"]["contractAddress"] = ERC721_CONTRACT
    return event


def ingestion_state(db: psycopg.Connection[tuple[Any, ...]], address: str) -> tuple[Any, ...] | None:
    return db.execute(
        "SELECT ingestion_state, nfts_indexed, owners_indexed, ingestion_error FROM collections "
        "WHERE contract_address = %s",
        (address,),
    ).fetchone()


def refreshed_events(db: psycopg.Connection[tuple[Any, ...]]) -> int:
    row = db.execute("SELECT count(*) FROM cache_events_outbox WHERE detail_type = 'collection.refreshed'").fetchone()
    return int(row[0]) if row else 0


def test_the_sample_event_for_an_address_without_a_collection_ends_failed(
    env: AlchemyStub, db: psycopg.Connection[tuple[Any, ...]]
) -> None:
    # Given the sample event, whose address holds no collection on the stub
    event = load_event(SAMPLE)

    # When it is handled
    result = ingest_collection.lambda_handler(event, IngestionContext())

    # Then the run reports the failure without raising (nothing to retry), and stores nothing
    assert isinstance(result, dict)
    assert (result["state"], result["contractAddress"]) == ("failed", event["detail"]["contractAddress"])
    assert ingestion_state(db, event["detail"]["contractAddress"]) is None


def test_the_event_ingests_the_collection(
    env: AlchemyStub, db: psycopg.Connection[tuple[Any, ...]], moto_bus: MotoBus
) -> None:
    # Given a collection.ingest_requested event for the stub's ERC-721 collection
    # When it is handled
    result = ingest_collection.lambda_handler(erc721_event(), IngestionContext())

    # Then the collection is complete, with its traits, and collection.refreshed reached the bus
    assert isinstance(result, dict)
    assert (result["state"], result["nfts"]) == ("complete", ERC721_TOKEN_COUNT)
    state = ingestion_state(db, ERC721_CONTRACT)
    assert state is not None
    assert state[:2] == ("complete", ERC721_TOKEN_COUNT)
    traits: dict[str, dict[str, int]] = {}
    for trait_type, value, count in db.execute("SELECT trait_type, trait_value, token_count FROM collection_traits"):
        traits.setdefault(trait_type, {})[value] = count
    assert traits == trait_counts(ERC721_CONTRACT)
    # (with ownership.changed for the wallets that now hold some of it: 1,000 per event)
    delivered = sorted(event["detail-type"] for event in moto_bus.received())
    assert delivered == ["collection.refreshed", "ownership.changed", "ownership.changed", "ownership.changed"]


def test_a_duplicate_delivery_runs_once(env: AlchemyStub, db: psycopg.Connection[tuple[Any, ...]]) -> None:
    # Given an event that was handled already
    event = erc721_event()
    first = ingest_collection.lambda_handler(event, IngestionContext())
    requests = env.request_count()

    # When EventBridge delivers it again
    second = ingest_collection.lambda_handler(event, IngestionContext())

    # Then the stored result is returned without calling Alchemy or ingesting again
    assert second == first
    assert env.request_count() == requests
    assert refreshed_events(db) == 1


def test_an_upstream_failure_fails_the_invocation_and_the_retry_runs_again(
    env: AlchemyStub, db: psycopg.Connection[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an upstream that answers 503 to everything
    monkeypatch.setenv("ALCHEMY_MAX_ATTEMPTS", "2")
    env.server_error_every = 1
    event = erc721_event()

    # When the event is handled, the invocation fails (Lambda retries it, then dead-letters it)
    with pytest.raises(UpstreamUnavailable):
        ingest_collection.lambda_handler(event, IngestionContext())

    # Then no collection was stored as complete
    assert ingestion_state(db, ERC721_CONTRACT) is None
    assert refreshed_events(db) == 0

    # And when the upstream recovers, the retried delivery of the same event ingests the collection
    env.server_error_every = 0
    result = ingest_collection.lambda_handler(event, IngestionContext())
    assert isinstance(result, dict)
    assert result["state"] == "complete"
    assert refreshed_events(db) == 1


def test_a_failed_ingestion_is_reported_without_the_upstream_text(
    env: AlchemyStub, api: Callable[..., Reply], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a collection seen once (queued for ingestion), and an upstream answering 503 with a text body
    monkeypatch.setenv("ALCHEMY_MAX_ATTEMPTS", "2")
    assert api("GET", f"/api/collection/{ERC721_CONTRACT}").status == 200
    env.server_error_every = 1

    # When its ingestion fails (raised, or returned with a retry scheduled)
    with contextlib.suppress(UpstreamUnavailable):
        ingest_collection.lambda_handler(erc721_event(), IngestionContext())

    # Then the refresh status names the failure generically: the provider and the status, never its text
    status = api("GET", f"/api/collection/{ERC721_CONTRACT}/refresh")
    assert status.body["ingestion"]["state"] == "failed"
    assert status.body["ingestion"]["error"] == "the NFT data provider failed (HTTP 503)"
    assert "overloaded" not in json.dumps(status.body)


def test_only_the_request_whose_job_never_started_is_released(
    env: AlchemyStub, db: psycopg.Connection[tuple[Any, ...]]
) -> None:
    # Given a collection queued by a refresh just now (its cooldown running)
    seed_indexed_collection(db, address=ERC721_CONTRACT, tokens=3, holder=lambda _: "0x" + "11" * 20)
    db.execute(
        "UPDATE collections SET ingestion_state = 'queued', last_refresh_at = now(),"
        " refresh_cooldown_until = now() + interval '5 minutes' WHERE contract_address = %s",
        (ERC721_CONTRACT,),
    )
    runtime = runtime_for(ReadPathSettings)
    older, current = erc721_event(), erc721_event()
    older["detail"]["occurredAt"] = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    current["detail"]["occurredAt"] = datetime.now(UTC).isoformat()
    # When deliveries fail before the job starts: one of an older request, one refused because another
    # delivery of the event is running, Then neither releases the state
    assert not release_lost_ingestion(runtime, older, ConnectionError("cache down"))
    assert not release_lost_ingestion(runtime, current, IdempotencyAlreadyInProgressError("running"))
    assert ingestion_state(db, ERC721_CONTRACT) == ("queued", 3, 3, None)
    # And when the current request's delivery fails, the state is failed, publicly, and the cooldown lifted
    assert release_lost_ingestion(runtime, current, ConnectionError("cache down"))
    assert ingestion_state(db, ERC721_CONTRACT) == ("failed", 3, 3, LOST_INGESTION_ERROR)
    assert db.execute(
        "SELECT refresh_cooldown_until FROM collections WHERE contract_address = %s", (ERC721_CONTRACT,)
    ).fetchone() == (None,)
    # And a run that started is never touched
    assert not release_lost_ingestion(runtime, current, ConnectionError("cache down"))
