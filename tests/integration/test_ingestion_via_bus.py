"""End to end through the local bus: an outbox event reaches the ingestion function by the template's rule.

The real ``template.yaml`` drives the local EventBridge bus and the in-process invoker, with the
environment ``make dev`` gives the functions (``local.dev.function_environment``): real PostgreSQL and
Valkey, the Alchemy stub over HTTP, and the bus endpoint for every publisher.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.alchemy_stub import ERC721_CONTRACT, ERC721_TOKEN_COUNT, ERC721_WALLET_COUNT, AlchemyStub, trait_counts
from local.api import IncomingRequest, LocalApi
from local.bus import LocalEventBus
from local.dev import EVENT_BUS_NAME, function_environment
from local.invoker import Invoker
from local.services import free_port
from local.template import Template
from such_market.collections.refresh import LOST_INGESTION_ERROR
from such_market.config import EventSettings
from such_market.container import close_all
from such_market.events.models import CollectionIngestRequested, Event
from such_market.events.outbox import outbox_transaction
from such_market.events.publisher import EventPublisher
from tests.conftest import ADMIN_TOKEN, WEBHOOK_SIGNING_KEY, CacheServer
from tests.fixtures.seed import seed_indexed_collection
from tests.functions.conftest import Reply

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bus(
    lambda_env: dict[str, str],
    db_url: str,
    cache_server: CacheServer,
    alchemy_stub: AlchemyStub,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LocalEventBus]:
    """The local bus over the real template, every function seeing the environment of ``make dev``."""
    template = Template.load(ROOT / "template.yaml")
    with LocalEventBus(template, Invoker(template), bus_name=EVENT_BUS_NAME, retry_base_delay=0.01, quiet=True) as bus:
        environment = function_environment(  # noqa: S604 - "shell" is the user's environment, not a shell
            template,
            shell={"REDIS_CLUSTER": str(cache_server.cluster).lower()},
            database_url=db_url,
            redis_url=cache_server.url,
            bus_url=bus.url,
            admin_token=ADMIN_TOKEN,
            webhook_signing_key=WEBHOOK_SIGNING_KEY,
            alchemy_stub=alchemy_stub,
        )
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
        yield bus


def _call(api: LocalApi, method: str, target: str) -> Reply:
    response = api.handle(IncomingRequest(method=method, target=target, headers=[], body=b""))
    headers = {name.lower(): value for name, value in response.headers}
    return Reply(response.status, headers, json.loads(response.body) if response.body else None)


def test_an_ingest_request_from_the_outbox_ingests_the_collection(
    bus: LocalEventBus, db: psycopg.Connection[tuple[Any, ...]]
) -> None:
    # Given collection.ingest_requested for the stub's ERC-721 collection, written to the outbox and
    # published to the local bus
    publisher = EventPublisher(EventSettings(event_bus_name=EVENT_BUS_NAME, eventbridge_endpoint_url=bus.url))
    with outbox_transaction(db, publisher) as tx:
        tx.add(Event(CollectionIngestRequested(contract_address=ERC721_CONTRACT, reason="first_seen")))
    assert tx.publish_result is not None
    assert tx.publish_result.ok

    # When the bus has delivered it, and every event its consumers published in turn
    assert bus.drain(timeout=120)

    # Then the collection is completely ingested, with the stub's trait counts
    state = db.execute(
        "SELECT ingestion_state, nfts_indexed, owners_indexed FROM collections WHERE contract_address = %s",
        (ERC721_CONTRACT,),
    ).fetchone()
    assert state == ("complete", ERC721_TOKEN_COUNT, ERC721_WALLET_COUNT)
    traits: dict[str, dict[str, int]] = {}
    for trait_type, value, count in db.execute("SELECT trait_type, trait_value, token_count FROM collection_traits"):
        traits.setdefault(trait_type, {})[value] = count
    assert traits == trait_counts(ERC721_CONTRACT)
    # And its collection.refreshed was published to the bus (and delivered: nothing dead-lettered)
    outbox = db.execute("SELECT detail_type, published_at IS NOT NULL FROM cache_events_outbox ORDER BY id").fetchall()
    assert sorted(outbox) == [
        ("collection.ingest_requested", True),
        ("collection.refreshed", True),
        *[("ownership.changed", True)] * -(-ERC721_WALLET_COUNT // 1000),  # its holders, 1,000 per event
    ]
    assert bus.dead_letters == []


def test_an_ingestion_lost_while_the_cache_is_down_frees_the_refresh_at_once(
    bus: LocalEventBus, db: psycopg.Connection[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the stub's collection, indexed, and a cache that is down (nothing listens on its port)
    seed_indexed_collection(db, address=ERC721_CONTRACT, tokens=10, holder=lambda _: "0x" + "11" * 20)
    redis_url = os.environ["REDIS_URL"]
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    close_all()
    api = LocalApi(bus.template, bus.invoker, quiet=True)

    # When a refresh is accepted (the row lock decides without the cache) and its ingestion consumer
    # fails before the job starts (its idempotency records live in the cache), until the event is
    # dead-lettered
    accepted = _call(api, "POST", f"/api/collection/{ERC721_CONTRACT}/refresh")
    assert (accepted.status, accepted.body["status"]) == (202, "queued")
    assert bus.drain(timeout=60)
    assert [dead.event["detail-type"] for dead in bus.dead_letters] == ["collection.ingest_requested"]

    # Then the refresh is no longer reported queued: it failed, with a public error, and may start again
    status = _call(api, "GET", f"/api/collection/{ERC721_CONTRACT}/refresh")
    assert status.body["ingestion"]["state"] == "failed"
    assert status.body["ingestion"]["error"] == LOST_INGESTION_ERROR
    assert (status.body["inProgress"], status.body["canRefresh"]) == (False, True)
    again = _call(api, "POST", f"/api/collection/{ERC721_CONTRACT}/refresh")
    assert (again.status, again.body["status"]) == (202, "queued")
    assert bus.drain(timeout=60)

    # And once the cache is back, a new refresh runs to completion
    monkeypatch.setenv("REDIS_URL", redis_url)
    close_all()
    recovered = _call(api, "POST", f"/api/collection/{ERC721_CONTRACT}/refresh")
    assert (recovered.status, recovered.body["status"]) == (202, "queued")
    assert bus.drain(timeout=120)
    state = db.execute(
        "SELECT ingestion_state, ingestion_error, nfts_indexed FROM collections WHERE contract_address = %s",
        (ERC721_CONTRACT,),
    ).fetchone()
    assert state == ("complete", None, ERC721_TOKEN_COUNT)
